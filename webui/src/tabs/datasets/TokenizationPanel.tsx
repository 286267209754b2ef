import { CircleCheck } from 'lucide-react';
import { useEffect, useState } from 'react';

import { apiGet, apiPost, errorMessage } from '../../api/client';
import type { Accepted, Dataset, TokenizeSettings, TokenizerInfo, TokenPreview } from '../../api/types';
import { isActive } from '../../api/types';
import { Field, inputClass, NumberInput, PrimaryButton, SecondaryButton, selectClass } from '../../components/Form';
import { ProgressBar } from '../../components/ProgressBar';
import { useToast } from '../../components/Toasts';
import { ToggleRow } from '../../components/Toggle';
import { TokenChip } from '../../components/TokenChip';
import { useFieldValidity } from '../../hooks/useFieldValidity';
import { useJobs } from '../../hooks/useJobs';
import { useRequest } from '../../hooks/useRequest';
import { formatNumber } from './format';

const DEFAULTS: TokenizeSettings = {
  tokenizer: 'demo', max_length: 512, padding: 'max_length', truncation: 'longest_first',
  add_special_tokens: true, return_attention_mask: true,
};

/** Chips show whitespace and newlines visibly, as tokenizer viewers do. */
const visible = (text: string) => text.replace(/ /g, '·').replace(/\n/g, '↵').replace(/\t/g, '→') || '∅';

export function TokenizationPanel({ dataset, onChanged }: { dataset: Dataset; onChanged: () => void }) {
  const current = dataset.tokenizations?.[0] ?? null;
  const [settings, setSettings] = useState<TokenizeSettings>(current?.settings ?? DEFAULTS);
  const [tokenizers, setTokenizers] = useState<TokenizerInfo[]>([]);
  const [text, setText] = useState('');
  const fields = useFieldValidity();
  const [preview, setPreview] = useState<TokenPreview | null>(null);
  // A run in progress (the API offers to cancel it) is followed through its job.
  const [jobId, setJobId] = useState<string | null>(current?.actions.includes('cancel') ? current.job_id : null);
  const { byId } = useJobs();
  const { push } = useToast();
  const { busy: starting, run } = useRequest('Tokenization not started');
  const job = jobId ? byId[jobId] : undefined;
  const working = starting || (jobId !== null && (!job || isActive(job.status)));

  useEffect(() => {
    apiGet<TokenizerInfo[]>('/api/tokenizers').then(setTokenizers)
      .catch((err) => push({ type: 'error', title: 'Tokenizers unavailable', message: errorMessage(err) }));
  }, [push]);

  // When the run ends, say how it went and refresh the dataset (its statistics changed).
  useEffect(() => {
    if (!job || isActive(job.status)) return;
    setJobId(null);
    onChanged();
    if (job.status === 'completed') push({ type: 'success', title: 'Dataset tokenized', message: dataset.name });
    else push({ type: 'error', title: 'Tokenization failed', message: job.error?.message ?? job.status });
  }, [job, dataset.name, onChanged, push]);

  const set = <K extends keyof TokenizeSettings>(key: K, value: TokenizeSettings[K]) =>
    setSettings((s) => ({ ...s, [key]: value }));

  const runPreview = async () => {
    try {
      setPreview(await apiPost<TokenPreview>('/api/tokenize/preview', {
        text, tokenizer: settings.tokenizer, max_length: settings.max_length,
        truncation: settings.truncation === 'only_second' ? 'longest_first' : settings.truncation,
        add_special_tokens: settings.add_special_tokens,
      }));
    } catch (err) {
      push({ type: 'error', title: 'Preview failed', message: errorMessage(err) });
    }
  };

  const apply = () => run(async () => {
    const accepted = await apiPost<Accepted>(`/api/datasets/${dataset.id}/tokenize`, settings);
    setJobId(accepted.job_id);
    onChanged();
  });

  return (
    <div className="space-y-4" data-testid="dataset-tokenization">
      <h3 className="text-lg font-semibold">Tokenization Configuration</h3>
      {current && (
        <p className="text-sm text-slate-400" data-testid="tokenization-status" data-status={current.status}>
          {current.status === 'ready' && current.stats
            ? `Tokenized with ${current.tokenizer}: ${formatNumber(current.stats.total_tokens)} tokens, `
              + `${formatNumber(current.stats.truncated_samples)} samples truncated.`
            : current.status === 'error' ? `Last run failed: ${current.error ?? ''}` : 'Tokenizing...'}
        </p>
      )}
      <Field label="Tokenizer" htmlFor="tokenizer">
        <select id="tokenizer" data-testid="tokenizer-select" className={selectClass} value={settings.tokenizer}
                onChange={(e) => set('tokenizer', e.target.value)}>
          {tokenizers.map((t) => (
            <option key={t.id} value={t.id}>{t.name} · {t.vocab_size.toLocaleString('en-US')} tokens</option>
          ))}
        </select>
      </Field>
      <Field label="Max Sequence Length" htmlFor="max-length">
        <NumberInput id="max-length" testId="max-length-input" integer min={1} max={4096} value={settings.max_length}
                     onChange={(v) => set('max_length', v)} onValidity={fields.track('max_length')} />
      </Field>
      <Field label="Padding Strategy" htmlFor="padding">
        <select id="padding" data-testid="padding-select" className={selectClass} value={settings.padding}
                onChange={(e) => set('padding', e.target.value as TokenizeSettings['padding'])}>
          <option value="max_length">Max Length (pad to max_length)</option>
          <option value="longest">Longest (pad to longest in batch)</option>
          <option value="do_not_pad">Do Not Pad</option>
        </select>
      </Field>
      <Field label="Truncation Strategy" htmlFor="truncation">
        <select id="truncation" data-testid="truncation-select" className={selectClass} value={settings.truncation}
                onChange={(e) => set('truncation', e.target.value as TokenizeSettings['truncation'])}>
          <option value="longest_first">Longest First</option>
          <option value="only_first">Only First Sequence</option>
          <option value="only_second">Only Second Sequence</option>
          <option value="do_not_truncate">Do Not Truncate</option>
        </select>
      </Field>
      <ToggleRow label="Add Special Tokens" checked={settings.add_special_tokens}
                 onChange={(v) => set('add_special_tokens', v)} />
      <ToggleRow label="Return Attention Mask" checked={settings.return_attention_mask}
                 onChange={(v) => set('return_attention_mask', v)} />

      <div className="border-t border-slate-800 pt-4 space-y-4">
        <h3 className="text-lg font-semibold">Preview</h3>
        <textarea data-testid="preview-text" rows={3} className={inputClass} value={text}
                  placeholder="Enter text to preview tokenization..." onChange={(e) => setText(e.target.value)} />
        <SecondaryButton data-testid="preview-button" disabled={!text || !fields.valid} onClick={() => void runPreview()}>
          Tokenize Preview
        </SecondaryButton>
        {preview && (
          <div className="bg-slate-800/50 rounded-lg p-4" data-testid="preview-result">
            <div className="flex flex-wrap gap-1">
              {preview.tokens.map((t, i) => (
                <span key={i} data-testid="preview-chip" data-token-id={t.id}>
                  <TokenChip variant="plain" token={t.special ? t.text : visible(t.text)} title={`id ${t.id}`} />
                </span>
              ))}
            </div>
            <div className="text-xs text-slate-400 mt-2" data-testid="preview-count">
              {preview.count} tokens{preview.truncated ? ` (truncated at ${settings.max_length})` : ''}
            </div>
          </div>
        )}
      </div>

      <div className="border-t border-slate-800 pt-4 space-y-3">
        {working && job && <ProgressBar value={job.progress} label={job.message} showPercent size="sm" />}
        <PrimaryButton data-testid="tokenize-apply" busy={working} busyLabel="Processing Dataset..."
                       disabled={!dataset.actions.includes('tokenize') || !fields.valid}
                       icon={<CircleCheck className="w-5 h-5" aria-hidden="true" />} onClick={() => void apply()}>
          Apply &amp; Tokenize Dataset
        </PrimaryButton>
      </div>
    </div>
  );
}
