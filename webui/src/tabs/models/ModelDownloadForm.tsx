import { Download } from 'lucide-react';
import { useEffect, useState } from 'react';

import { apiGet, apiPost, errorMessage } from '../../api/client';
import type { Accepted, Capabilities, Precision } from '../../api/types';
import { Card } from '../../components/Card';
import { Field, inputClass, PrimaryButton, selectClass } from '../../components/Form';
import { useToast } from '../../components/Toasts';
import { PRECISION_LABELS } from './format';

export function ModelDownloadForm({ onStarted }: { onStarted: () => void }) {
  const [repo, setRepo] = useState('');
  const [token, setToken] = useState('');
  const [precision, setPrecision] = useState<Precision>('fp32');
  const [caps, setCaps] = useState<Capabilities | null>(null);
  const [busy, setBusy] = useState(false);
  const { push } = useToast();

  useEffect(() => {
    apiGet<Capabilities>('/api/models/capabilities').then(setCaps)
      .catch((err) => push({ type: 'error', title: 'Capabilities unavailable', message: errorMessage(err) }));
  }, [push]);

  const submit = async () => {
    setBusy(true);
    try {
      await apiPost<Accepted>('/api/models/download', { repo_id: repo.trim(), precision, ...(token ? { hf_token: token } : {}) });
      setRepo('');
      setToken('');
      onStarted();
    } catch (err) {
      push({ type: 'error', title: 'Download not started', message: errorMessage(err) });
    } finally {
      setBusy(false);
    }
  };

  return (
    <Card testId="models-download-form">
      <form className="space-y-4" onSubmit={(e) => { e.preventDefault(); if (repo.trim()) void submit(); }}>
        <div className="grid grid-cols-1 md:grid-cols-2 gap-4">
          <Field label="HuggingFace Model Repository" htmlFor="model-repo">
            <input id="model-repo" data-testid="model-repo-input" className={inputClass} value={repo} spellCheck={false}
                   placeholder="e.g., TinyLlama/TinyLlama-1.1B" autoComplete="off" onChange={(e) => setRepo(e.target.value)} />
          </Field>
          <Field label="Quantization Format" htmlFor="model-precision"
                 hint={caps?.precisions.find((p) => p.name === precision)?.reason}>
            <select id="model-precision" data-testid="model-precision-select" className={selectClass} value={precision}
                    onChange={(e) => setPrecision(e.target.value as Precision)}>
              {(caps?.precisions ?? []).map((p) => (
                <option key={p.name} value={p.name} disabled={!p.supported} title={p.reason}>
                  {PRECISION_LABELS[p.name]}{p.supported ? '' : ' — not on this device'}
                </option>
              ))}
            </select>
          </Field>
        </div>
        <Field label={<>Access Token <span className="text-slate-500">(optional, for gated models)</span></>}
               htmlFor="model-token" hint="Required for gated models like Llama, Gemma, or other restricted access models">
          <input id="model-token" data-testid="model-token-input" type="password" className={`${inputClass} font-mono`}
                 value={token} placeholder="hf_xxxxxxxxxxxxxxxxxxxx" autoComplete="off" onChange={(e) => setToken(e.target.value)} />
        </Field>
        <PrimaryButton type="submit" data-testid="model-download-button" disabled={!repo.trim()} busy={busy}
                       icon={<Download className="w-5 h-5" aria-hidden="true" />}>
          Download Model from HuggingFace
        </PrimaryButton>
      </form>
    </Card>
  );
}
