import { useEffect, useState } from 'react';

import { apiGet, apiPost, errorMessage } from '../../api/client';
import type { Accepted, Capabilities, Precision } from '../../api/types';
import { DownloadCard } from '../../components/DownloadCard';
import { Field, HfTokenInput, inputClass, selectClass } from '../../components/Form';
import { useToast } from '../../components/Toasts';
import { useRequest } from '../../hooks/useRequest';
import { PRECISION_LABELS } from './format';

export function ModelDownloadForm({ onStarted }: { onStarted: () => void }) {
  const [repo, setRepo] = useState('');
  const [token, setToken] = useState('');
  const [precision, setPrecision] = useState<Precision>('fp32');
  const [caps, setCaps] = useState<Capabilities | null>(null);
  const { busy, run } = useRequest('Download not started');
  const { push } = useToast();

  useEffect(() => {
    apiGet<Capabilities>('/api/models/capabilities').then(setCaps)
      .catch((err) => push({ type: 'error', title: 'Capabilities unavailable', message: errorMessage(err) }));
  }, [push]);

  const submit = () => run(async () => {
    await apiPost<Accepted>('/api/models/download', { repo_id: repo.trim(), precision, ...(token ? { hf_token: token } : {}) });
    setRepo('');
    setToken('');
    onStarted();
  });

  return (
    <DownloadCard testId="models-download-form" ready={!!repo.trim()} busy={busy} onSubmit={() => void submit()}
                  button="Download Model from HuggingFace" buttonTestId="model-download-button">
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
        <HfTokenInput id="model-token" testId="model-token-input" value={token} onChange={setToken} />
      </Field>
    </DownloadCard>
  );
}
