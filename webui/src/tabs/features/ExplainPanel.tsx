import { Sparkles, X } from 'lucide-react';
import { useEffect, useRef, useState } from 'react';

import { apiGet, apiPost, apiRequest, errorMessage } from '../../api/client';
import type { Accepted, ExplainRequest, ExplainResult, Job, LabelingView } from '../../api/types';
import { isActive } from '../../api/types';
import { Field, inputClass, NumberInput, PrimaryButton, SecondaryButton, selectClass } from '../../components/Form';
import { ProgressBar } from '../../components/ProgressBar';
import { useToast } from '../../components/Toasts';
import { useFieldValidity } from '../../hooks/useFieldValidity';
import { useJobs } from '../../hooks/useJobs';
import { useModels } from '../../hooks/useModels';

const KIND = 'features.explain';

/** The newest explain job of this SAE: a run started here, or before the page was (re)loaded. */
function latestRun(jobs: Job[], trainingId: string): Job | undefined {
  return jobs.find((j) => j.kind === KIND && j.target?.id === trainingId);
}

/** A run that stopped before it was done: cancelled, failed, or stopped at its cap on calls. */
function unfinished(job: Job): boolean {
  if (job.status === 'cancelled' || job.status === 'failed') return true;
  return job.status === 'completed' && (job.result as ExplainResult | null)?.stopped === 'cap';
}

/**
 * Explain features with a language model, then score each explanation by detection and fuzzing: the provider
 * settings, a run over the top features, its live progress, cancel, and "Continue", which posts the same request
 * again (features already done are cached server-side, so it resumes where the run stopped).
 */
export function ExplainPanel({ trainingId, onDone }: { trainingId: string; onDone: () => void }) {
  const [settings, setSettings] = useState<LabelingView | null>(null);
  const [key, setKey] = useState('');
  const [top, setTop] = useState(50);
  const fields = useFieldValidity();  // the number fields: Save and Explain wait while one cannot be sent
  const [score, setScore] = useState(true);
  const [redo, setRedo] = useState(false);
  const [starting, setStarting] = useState(false);
  const lastRequest = useRef<ExplainRequest | null>(null);
  const { jobs, cancel } = useJobs();
  const { models } = useModels();
  const { push } = useToast();
  const job = latestRun(jobs, trainingId);
  const running = job !== undefined && isActive(job.status);
  const seen = useRef<string | null>(null);

  useEffect(() => { apiGet<LabelingView>('/api/settings/labeling').then(setSettings).catch(() => undefined); }, []);
  // When a run ends the browser reloads: it now shows the explanations and their scores.
  useEffect(() => {
    if (!job) return;
    if (isActive(job.status)) {
      if (seen.current === null) seen.current = '';  // a run already going when the panel opened: its end is news
      return;
    }
    const ending = `${job.id}:${job.status}`;
    if (seen.current === null) { seen.current = ending; return; } // a run that ended before this panel opened
    if (seen.current === ending) return;
    seen.current = ending;
    if (job.status === 'completed') push({ type: 'success', title: 'Features explained', message: job.message });
    else if (job.status === 'failed') push({ type: 'error', title: 'Explaining failed', message: job.error?.message ?? job.status });
    onDone();
  }, [job?.id, job?.status]); // eslint-disable-line react-hooks/exhaustive-deps

  if (!settings) return null;
  const set = (change: Partial<LabelingView>) => setSettings({ ...settings, ...change });
  const save = async () => {
    try {
      const { has_api_key: _, ...values } = settings;
      setSettings((await apiRequest<LabelingView>('/api/settings/labeling', { method: 'PUT',
        body: { ...values, ...(key ? { api_key: key } : {}) } })).data);
      setKey('');
      push({ type: 'success', title: 'Explainer settings saved', message: settings.provider });
    } catch (err) {
      push({ type: 'error', title: 'Not saved', message: errorMessage(err) });
    }
  };
  const post = async (request: ExplainRequest) => {
    setStarting(true);
    try {
      await apiPost<Accepted>(`/api/training/${trainingId}/features/explain`, request);
      lastRequest.current = request;
      seen.current = '';  // this run's end is news
    } catch (err) {
      push({ type: 'error', title: 'Explaining not started', message: errorMessage(err) });
    } finally {
      setStarting(false);
    }
  };
  // Continue: the request this panel sent, else the features the stopped run named (a run from before a reload).
  const again = (): ExplainRequest => {
    if (lastRequest.current) return { ...lastRequest.current, redo: false };
    const params = (job?.params ?? {}) as { features?: number[]; score?: boolean };
    return params.features?.length ? { features: params.features, top, score: params.score ?? true, redo: false }
      : { top, score, redo: false };
  };
  const result = job && !running ? (job.result as ExplainResult | null) : null;
  const ready = models.filter((m) => m.status === 'ready');
  return (
    <div className="space-y-4 border border-slate-800 rounded-lg p-4" data-testid="explain-panel">
      <div>
        <h4 className="font-semibold">Explain &amp; score</h4>
        <p className="text-sm text-slate-400">A language model explains each feature from its top and range examples;
          a judge then reads the explanation and scores it by detection and fuzzing on held-out contexts.</p>
      </div>
      <div className="grid grid-cols-1 md:grid-cols-4 gap-3">
        <Field label="Explainer" htmlFor="explain-provider">
          <select id="explain-provider" data-testid="explain-provider" className={selectClass} value={settings.provider}
                  onChange={(e) => set({ provider: e.target.value as LabelingView['provider'] })}>
            <option value="none">None (labels from the evidence)</option>
            <option value="local">A model on this appliance</option>
            <option value="openai">OpenAI-compatible endpoint</option>
          </select>
        </Field>
        {settings.provider === 'local' && (
          <Field label="Local model" htmlFor="explain-local-model" hint="ideally instruction-tuned; loaded within the memory budget">
            <select id="explain-local-model" data-testid="explain-local-model" className={selectClass}
                    value={settings.local_model_id ?? ''} onChange={(e) => set({ local_model_id: e.target.value || null })}>
              <option value="">This SAE's model</option>
              {ready.map((m) => <option key={m.id} value={m.id}>{m.name}</option>)}
            </select>
          </Field>
        )}
        {settings.provider === 'openai' && (
          <>
            <Field label="Endpoint" htmlFor="explain-endpoint">
              <input id="explain-endpoint" data-testid="explain-endpoint" className={inputClass} placeholder="http://127.0.0.1:8080/v1"
                     value={settings.endpoint ?? ''} onChange={(e) => set({ endpoint: e.target.value || null })} />
            </Field>
            <Field label="Model" htmlFor="explain-model">
              <input id="explain-model" data-testid="explain-model" className={inputClass} value={settings.model ?? ''}
                     onChange={(e) => set({ model: e.target.value || null })} />
            </Field>
            <Field label="API key" htmlFor="explain-key" hint={settings.has_api_key ? 'a key is saved (write-only)' : 'optional'}>
              <input id="explain-key" data-testid="explain-key" type="password" className={inputClass} value={key} autoComplete="off"
                     onChange={(e) => setKey(e.target.value)} />
            </Field>
          </>
        )}
      </div>
      {settings.provider !== 'none' && (
        <div className="grid grid-cols-1 md:grid-cols-4 gap-3">
          {settings.provider === 'openai' && (
            <Field label="Concurrency" htmlFor="explain-concurrency" hint="features in flight at once">
              <NumberInput id="explain-concurrency" testId="explain-concurrency" integer min={1} max={32}
                           value={settings.concurrency} onChange={(v) => set({ concurrency: v })}
                           onValidity={fields.track('concurrency')} />
            </Field>
          )}
          <Field label="Max calls per run" htmlFor="explain-max-calls" hint="the run stops there; Continue resumes it">
            <NumberInput id="explain-max-calls" testId="explain-max-calls" integer min={1} max={1_000_000}
                         value={settings.max_calls} onChange={(v) => set({ max_calls: v })}
                         onValidity={fields.track('max_calls')} />
          </Field>
          <Field label="Explainer examples" htmlFor="explain-explainer-examples" hint="its strongest, and as many across its range">
            <NumberInput id="explain-explainer-examples" testId="explain-explainer-examples" integer min={1} max={20}
                         value={settings.examples} onChange={(v) => set({ examples: v })}
                         onValidity={fields.track('examples')} />
          </Field>
          <Field label="Examples per class" htmlFor="explain-examples" hint="held-out contexts the judge sees, per class">
            <NumberInput id="explain-examples" testId="explain-examples" integer min={1} max={50}
                         value={settings.examples_per_class} onChange={(v) => set({ examples_per_class: v })}
                         onValidity={fields.track('examples_per_class')} />
          </Field>
        </div>
      )}
      <div className="flex flex-wrap items-end gap-3">
        <SecondaryButton data-testid="explain-save" disabled={!fields.valid} onClick={() => void save()}>
          Save settings</SecondaryButton>
        <Field label="Features (best scored first)" htmlFor="explain-top">
          <NumberInput id="explain-top" testId="explain-top" integer min={1} max={50000} value={top}
                       inputClassName={`${inputClass.replace('w-full ', '')} w-28`}
                       onChange={setTop} onValidity={fields.track('top')} />
        </Field>
        <label className="flex items-center gap-2 text-sm text-slate-300 pb-2">
          <input type="checkbox" checked={score} onChange={(e) => setScore(e.target.checked)} /> score by detection and fuzzing</label>
        <label className="flex items-center gap-2 text-sm text-slate-300 pb-2">
          <input type="checkbox" checked={redo} onChange={(e) => setRedo(e.target.checked)} /> redo cached ones</label>
        <div className="w-56">
          <PrimaryButton data-testid="explain-start" disabled={settings.provider === 'none' || running || !fields.valid}
                         busy={starting}
                         icon={<Sparkles className="w-4 h-4" />} onClick={() => void post({ top, score, redo })}>Explain &amp; Score</PrimaryButton>
        </div>
      </div>
      {job && running && (
        <div data-testid="explain-progress" className="flex items-center gap-3">
          <div className="flex-1"><ProgressBar value={job.progress} label={job.message || 'Explaining...'} showPercent /></div>
          {job.actions?.includes('cancel') && (
            <button type="button" aria-label="Cancel explaining" title="Cancel" data-testid="explain-cancel"
                    onClick={() => void cancel(job.id).catch((err) => push({ type: 'error', title: 'Not cancelled', message: errorMessage(err) }))}
                    className="p-1 text-slate-400 hover:text-red-400"><X className="w-5 h-5" /></button>
          )}
        </div>
      )}
      {job && !running && (
        <div data-testid="explain-result" className="text-sm space-y-2">
          <p className={job.status === 'completed' ? 'text-slate-300' : 'text-yellow-400'}>
            Last run {job.status === 'completed' && result?.stopped === 'cap' ? 'stopped at its cap on calls' : job.status}
            {job.status === 'failed' && job.error ? `: ${job.error.message}` : ''}</p>
          {result && <ResultSummary result={result} />}
          {unfinished(job) && (
            <SecondaryButton data-testid="explain-continue" disabled={starting || settings.provider === 'none'}
                             onClick={() => void post(again())}>Continue</SecondaryButton>
          )}
        </div>
      )}
    </div>
  );
}

function ResultSummary({ result }: { result: ExplainResult }) {
  const failed = Object.entries(result.failed ?? {}).filter(([, n]) => n > 0);
  return (
    <p className="text-slate-400" data-testid="explain-summary">
      {result.requested} requested • {result.explained} explained • {result.scored} scored • {result.cached} cached
      • {result.calls} calls{failed.length > 0 && ` • failed: ${failed.map(([state, n]) => `${n} ${state}`).join(', ')}`}
      {result.explainer && <span className="text-slate-500"> • {result.explainer}</span>}
    </p>
  );
}
