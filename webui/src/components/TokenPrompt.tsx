import { KeyRound, LoaderCircle } from 'lucide-react';
import { useState } from 'react';
import type { FormEvent } from 'react';

import { Modal } from './Modal';

/** Asks for the appliance's access token (MISTUDIO_TOKEN) after a 401; it is kept only in a cookie. */
export function TokenPrompt({ onSubmit }: { onSubmit: (token: string) => Promise<string | null> }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!token.trim() || busy) return;
    setBusy(true);
    setError(null);
    const problem = await onSubmit(token);
    setBusy(false);
    if (problem) setError(problem);
  };

  return (
    <Modal title="Access token required" size="md" dismissible={false} titleClassName="text-xl font-semibold"
           testId="token-prompt">
      <form onSubmit={submit} className="space-y-4">
        <p className="text-sm text-slate-400">
          This appliance is protected by an access token (<span className="font-mono">MISTUDIO_TOKEN</span>).
          Enter it to connect. It is kept in a cookie for this site only.
        </p>
        <div>
          <label htmlFor="access-token" className="block text-sm font-medium text-slate-300 mb-2">Access Token</label>
          <input id="access-token" type="password" autoFocus autoComplete="current-password" value={token}
                 onChange={(e) => setToken(e.target.value)}
                 className="w-full px-4 py-2 bg-slate-900 border border-slate-700 rounded-lg font-mono text-sm focus:outline-none focus:border-emerald-500" />
          {error && <p className="mt-2 text-sm text-red-400" role="alert">{error}</p>}
        </div>
        <button type="submit" disabled={!token.trim() || busy}
                className="w-full px-6 py-3 bg-emerald-600 hover:bg-emerald-700 disabled:bg-slate-700 disabled:cursor-not-allowed rounded-lg flex items-center justify-center gap-2 transition-colors font-medium">
          {busy ? <LoaderCircle className="w-5 h-5 animate-spin" /> : <KeyRound className="w-5 h-5" />}
          Connect
        </button>
      </form>
    </Modal>
  );
}
