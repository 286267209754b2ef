import { ChevronDown, ChevronUp } from 'lucide-react';
import { useState } from 'react';

import { apiPost } from '../../api/client';
import type { Accepted } from '../../api/types';
import { DownloadCard } from '../../components/DownloadCard';
import { Field, HfTokenInput, inputClass, NumberInput } from '../../components/Form';
import { useFieldValidity } from '../../hooks/useFieldValidity';
import { useRequest } from '../../hooks/useRequest';

/** "Download from HuggingFace": repository and token, with split/config/limit under Advanced. */
export function DownloadForm({ onStarted }: { onStarted: () => void }) {
  const [repo, setRepo] = useState('');
  const [token, setToken] = useState('');
  const [advanced, setAdvanced] = useState(false);
  const [split, setSplit] = useState('train');
  const [config, setConfig] = useState('');
  const [column, setColumn] = useState('text');
  const [maxSamples, setMaxSamples] = useState<number | null>(null);  // null: the whole split
  const fields = useFieldValidity();
  const { busy, run } = useRequest('Download not started');

  const submit = () => run(async () => {
    const body: Record<string, unknown> = { repo_id: repo.trim(), split: split.trim() || 'train',
                                            text_column: column.trim() || 'text' };
    if (token) body.hf_token = token;
    if (config.trim()) body.config = config.trim();
    if (maxSamples !== null) body.max_samples = maxSamples;
    await apiPost<Accepted>('/api/datasets/download', body);
    setRepo('');
    setToken('');
    onStarted();
  });

  return (
    <DownloadCard title="Download from HuggingFace" testId="datasets-download-form" ready={!!repo.trim() && fields.valid} busy={busy}
                  onSubmit={() => void submit()} button="Download Dataset from HuggingFace"
                  buttonTestId="dataset-download-button">
      <Field label="Dataset Repository" htmlFor="dataset-repo">
        <input id="dataset-repo" data-testid="dataset-repo-input" className={inputClass} value={repo}
               placeholder="e.g., roneneldan/TinyStories" autoComplete="off" spellCheck={false}
               onChange={(e) => setRepo(e.target.value)} />
      </Field>
      <Field label="Access Token (optional, for gated datasets)" htmlFor="dataset-token">
        <HfTokenInput id="dataset-token" testId="dataset-token-input" value={token} onChange={setToken} />
      </Field>
      <button type="button" data-testid="dataset-advanced-toggle" onClick={() => setAdvanced(!advanced)}
              aria-expanded={advanced}
              className="flex items-center gap-1 text-sm text-slate-400 hover:text-slate-200 transition-colors">
        {advanced ? <ChevronUp className="w-4 h-4" /> : <ChevronDown className="w-4 h-4" />} Advanced
      </button>
      {advanced && (
        <div className="grid grid-cols-1 md:grid-cols-2 gap-4" data-testid="dataset-advanced">
          <Field label="Split" htmlFor="dataset-split" hint="e.g. train, validation, train[:10%]">
            <input id="dataset-split" data-testid="dataset-split-input" className={inputClass} value={split}
                   onChange={(e) => setSplit(e.target.value)} />
          </Field>
          <Field label="Configuration (optional)" htmlFor="dataset-config" hint="the dataset's subset name, if it has several">
            <input id="dataset-config" data-testid="dataset-config-input" className={inputClass} value={config}
                   onChange={(e) => setConfig(e.target.value)} />
          </Field>
          <Field label="Text column" htmlFor="dataset-column">
            <input id="dataset-column" data-testid="dataset-column-input" className={inputClass} value={column}
                   onChange={(e) => setColumn(e.target.value)} />
          </Field>
          <Field label="Max samples (optional)" htmlFor="dataset-max" hint="streams only this many rows">
            <NumberInput id="dataset-max" testId="dataset-max-samples-input" optional integer min={1} value={maxSamples}
                         onChange={setMaxSamples} onValidity={fields.track('max_samples')} />
          </Field>
        </div>
      )}
    </DownloadCard>
  );
}
