import { useEffect, useRef, useState } from 'react';

import { apiPost, errorMessage } from '../../api/client';
import type { Accepted, Dataset, Model } from '../../api/types';
import { isActive } from '../../api/types';
import { Field, NumberInput, PrimaryButton, selectClass } from '../../components/Form';
import { Modal } from '../../components/Modal';
import { ProgressBar } from '../../components/ProgressBar';
import { SPECIAL_TOKENS_DEFAULT, SpecialTokensField, specialTokensBody, specialTokensValid } from '../../components/SpecialTokens';
import { useToast } from '../../components/Toasts';
import { useFieldValidity } from '../../hooks/useFieldValidity';
import { useJobs } from '../../hooks/useJobs';
import { ExtractTemplates, type ExtractSettings } from './ExtractTemplates';

// "MLP Input + Output" is what a transcoder trains on.
const TYPES = [['residual', 'Residual Stream'], ['mlp', 'MLP Output'], ['attention', 'Attention Output'],
  ['mlp_in,mlp', 'MLP Input + Output (transcoders)']] as const;
const HOOK_LABELS: Record<string, string> = { residual: 'Residual Stream', mlp: 'MLP Output', attention: 'Attention Output',
  mlp_in: 'MLP Input' };

/** The choices, plus a template's combination when it is none of them (e.g. residual + MLP + attention). */
const typeOptions = (current: string): (readonly [string, string])[] => (TYPES.some(([v]) => v === current) ? [...TYPES]
  : [...TYPES, [current, current.split(',').map((h) => HOOK_LABELS[h] ?? h).join(' + ')]]);

/** The activation-extraction dialog: layers (up to the model's layer count), hook, dataset and sizes. */
export function ExtractModal({ model, datasets, onClose }: { model: Model; datasets: Dataset[]; onClose: () => void }) {
  const ready = datasets.filter((d) => d.status === 'ready');
  const layers = model.layers ?? 0;
  const [datasetId, setDatasetId] = useState(ready[0]?.id ?? '');
  const [selected, setSelected] = useState<number[]>(() => [...new Set([0, Math.floor(layers / 2), layers - 1])]
    .filter((l) => l >= 0));
  const [hookType, setHookType] = useState<string>('residual');
  const [batchSize, setBatchSize] = useState(32);
  const [maxSamples, setMaxSamples] = useState(1000);
  const [contextLength, setContextLength] = useState(128);
  const fields = useFieldValidity();
  const [special, setSpecial] = useState(SPECIAL_TOKENS_DEFAULT);
  const [jobId, setJobId] = useState<string | null>(null);
  const [starting, setStarting] = useState(false);
  const { byId } = useJobs();
  const { push } = useToast();
  const job = jobId ? byId[jobId] : undefined;
  const running = starting || (jobId !== null && (!job || isActive(job.status)));

  const close = useRef(onClose);
  close.current = onClose;
  const handled = useRef<string | null>(null);
  // Once per job: a toast, and on success the dialog closes itself a second later, long
  // enough to see the bar reach 100%.
  useEffect(() => {
    if (!job || isActive(job.status) || handled.current === job.id) return;
    handled.current = job.id;
    if (job.status === 'completed') {
      push({ type: 'success', title: 'Activations extracted', message: job.message });
      window.setTimeout(() => close.current(), 1000);
    } else if (job.status === 'cancelled') {
      push({ type: 'info', title: 'Extraction cancelled', message: 'Nothing was kept' });
      setJobId(null);
    } else {
      push({ type: 'error', title: 'Extraction failed', message: job.error?.message ?? job.status });
      setJobId(null);
    }
  }, [job, push]);

  const settings = (): ExtractSettings => ({ layers: selected, hookTypes: hookType.split(','), batchSize, maxSamples,
                                             contextLength });
  const applyTemplate = (s: ExtractSettings): string[] => {
    setSelected(s.layers);
    setHookType(s.hookTypes.join(','));
    setBatchSize(s.batchSize);
    setContextLength(s.contextLength);
    if (s.maxSamples !== null) {
      setMaxSamples(s.maxSamples);
      return [];
    }
    // "Every sample": this dataset's count, shown in the field like any other number.
    const count = ready.find((d) => d.id === datasetId)?.num_samples;
    if (!count) return [];
    setMaxSamples(count);
    return [`The template reads every sample: Max Samples is this dataset's ${count.toLocaleString('en-US')}`];
  };

  const toggle = (layer: number) => setSelected((s) => (s.includes(layer) ? s.filter((l) => l !== layer) : [...s, layer].sort((a, b) => a - b)));

  const start = async () => {
    setStarting(true);
    try {
      const accepted = await apiPost<Accepted>(`/api/models/${model.id}/extract-activations`, {
        dataset_id: datasetId, layers: selected, hook_types: hookType.split(','), batch_size: batchSize, max_samples: maxSamples,
        context_length: contextLength, ...specialTokensBody(special),
      });
      setJobId(accepted.job_id);
    } catch (err) {
      push({ type: 'error', title: 'Extraction not started', message: errorMessage(err) });
    } finally {
      setStarting(false);
    }
  };

  return (
    <Modal testId="extract-modal" title="Extract Activations" titleClassName="text-2xl font-bold text-emerald-400"
           subtitle={model.name} onClose={onClose} size="3xl" blur maxHeight="80vh"
           footer={(
             <PrimaryButton data-testid="extract-start" disabled={!selected.length || !datasetId || !specialTokensValid(special) || !fields.valid} busy={running}
                            busyLabel="Extracting..." onClick={() => void start()}>
               Start Extraction
             </PrimaryButton>
           )}>
      <div className="space-y-4">
        <ExtractTemplates model={model} current={settings} onApply={applyTemplate} />
        <Field label="Select Dataset" htmlFor="extract-dataset">
          <select id="extract-dataset" data-testid="extract-dataset" className={selectClass} value={datasetId}
                  onChange={(e) => setDatasetId(e.target.value)}>
            {ready.length === 0 && <option value="">No ready datasets</option>}
            {ready.map((d) => <option key={d.id} value={d.id}>{d.name} ({(d.num_samples ?? 0).toLocaleString('en-US')} samples)</option>)}
          </select>
        </Field>
        <div>
          <div className="flex items-center justify-between mb-2">
            <span className="text-sm font-medium text-slate-300">Select Layers</span>
            <div className="flex gap-2 text-sm">
              <button type="button" className="px-2 py-1 bg-slate-800 hover:bg-slate-700 rounded"
                      onClick={() => setSelected(Array.from({ length: layers }, (_, i) => i))}>Select All</button>
              <button type="button" className="px-2 py-1 bg-slate-800 hover:bg-slate-700 rounded"
                      onClick={() => setSelected([])}>Deselect All</button>
            </div>
          </div>
          <div className="grid grid-cols-6 gap-2" data-testid="extract-layers">
            {Array.from({ length: layers }, (_, i) => (
              <button key={i} type="button" aria-pressed={selected.includes(i)} data-testid="extract-layer" onClick={() => toggle(i)}
                      className={`px-3 py-2 rounded font-mono text-sm transition-colors ${
                        selected.includes(i) ? 'bg-emerald-600 text-white' : 'bg-slate-800 text-slate-300 hover:bg-slate-700'}`}>
                L{i}
              </button>
            ))}
          </div>
        </div>
        <Field label="Activation Type" htmlFor="extract-type">
          <select id="extract-type" data-testid="extract-type" className={selectClass} value={hookType}
                  onChange={(e) => setHookType(e.target.value)}>
            {typeOptions(hookType).map(([value, label]) => <option key={value} value={value}>{label}</option>)}
          </select>
        </Field>
        <div className="grid grid-cols-3 gap-4">
          <Field label="Batch Size" htmlFor="extract-batch">
            <NumberInput id="extract-batch" testId="extract-batch" integer min={1} max={512} value={batchSize}
                         onChange={setBatchSize} onValidity={fields.track('batch')} />
          </Field>
          <Field label="Max Samples" htmlFor="extract-max">
            <NumberInput id="extract-max" testId="extract-max-samples" integer min={1} max={100_000_000}
                         value={maxSamples} onChange={setMaxSamples} onValidity={fields.track('max')} />
          </Field>
          <Field label="Context Length" htmlFor="extract-context">
            <NumberInput id="extract-context" testId="extract-context" integer min={2} max={32768} value={contextLength}
                         onChange={setContextLength} onValidity={fields.track('context')} />
          </Field>
        </div>
        <SpecialTokensField testId="extract-special" value={special} onChange={setSpecial} />
        {jobId && job && (
          <div className="border border-slate-800 rounded-lg p-4" data-testid="extract-progress">
            <ProgressBar value={job.progress} label="Extracting Activations..." showPercent />
            <p className="text-xs text-slate-500 mt-2">{job.message}</p>
          </div>
        )}
      </div>
    </Modal>
  );
}
