import { Search, X, Zap } from 'lucide-react';
import { useCallback, useEffect, useMemo, useState } from 'react';

import { apiGet, apiPost } from '../../api/client';
import type { Accepted, FeatureExtraction, Training } from '../../api/types';
import { Card, PageTitle } from '../../components/Card';
import { EmptyState } from '../../components/EmptyState';
import { Field, NumberInput, PrimaryButton } from '../../components/Form';
import { MetricTile } from '../../components/MetricTile';
import { ProgressBar } from '../../components/ProgressBar';
import { finishedSaes, nameIn, SaeSelect } from '../../components/SaeSelect';
import {
  describeExcluded, SPECIAL_TOKENS_DEFAULT, SpecialTokensField, specialTokensBody, specialTokensValid,
} from '../../components/SpecialTokens';
import { useDatasets } from '../../hooks/useDatasets';
import { useEventStream } from '../../hooks/useEventStream';
import { useFieldValidity } from '../../hooks/useFieldValidity';
import { useJobs } from '../../hooks/useJobs';
import { useModels, useTrainings } from '../../hooks/useModels';
import { useRequest } from '../../hooks/useRequest';
import { FeatureBrowser } from './FeatureBrowser';
import { CorrelationMatrix } from './CorrelationMatrix';
import { FeatureMap } from './FeatureMap';
import { FeatureModal } from './FeatureModal';
import { ExplainPanel } from './ExplainPanel';
import { GroupFilter } from './groups';

// A summary's figures are null for an extraction made before they were measured.
const pct = (v: number | null | undefined, digits: number) => (v == null ? '—' : `${(100 * v).toFixed(digits)}%`);
const count = (v: number | null | undefined) => (v == null ? '—' : v.toLocaleString('en-US'));

/** Which tokens the statistics left out, and at how many positions (none: an extraction that kept them). */
function leftOut(summary: NonNullable<FeatureExtraction['summary']>): string {
  const ids = summary.excluded_token_ids ?? [];
  if (ids.length === 0) return `${describeExcluded(ids)}: every position counts`;
  return `${describeExcluded(ids)} • ${count(summary.excluded_positions ?? 0)} positions not counted`;
}

/** Which features carry a score and why the others do not: a score needs evidence. */
function support(summary: NonNullable<FeatureExtraction['summary']>): string {
  if (summary.min_active_samples == null) return 'Extracted before scores had a support floor: extract again to score features';
  return `${count(summary.scored)} features scored, ${count(summary.too_rare)} too rare to score (a score needs `
    + `≥ ${summary.min_active_samples} active samples and ≥ ${summary.min_held_out_positives} held-out positives)`
    + `${summary.score_interval ? ` • intervals: ${summary.score_interval}` : ''}`;
}

export function FeaturesTab() {
  const { trainings, loaded } = useTrainings();
  const { models } = useModels();
  const { datasets } = useDatasets();
  const finished = finishedSaes(trainings);
  const [chosenId, setChosenId] = useState('');
  const training: Training | undefined = finished.find((t) => t.id === chosenId) ?? finished[0];

  return (
    <div data-testid="tab-features" className="space-y-6">
      <PageTitle>Feature Discovery</PageTitle>
      {loaded && finished.length === 0 ? (
        <EmptyState icon={Search} iconClassName="text-emerald-400" title="No completed trainings yet"
                    description="Complete a training job to discover features." />
      ) : training && (
        <>
          <SaeSelect title="Select Training Job to Analyze" testId="features-training"
                     selectTestId="features-training-select" label="Training" saes={finished} chosen={training}
                     onChoose={setChosenId} models={models} datasets={datasets}
                     suffix={(t) => ` • Started ${new Date(t.created_at).toLocaleDateString()}`}
                     facts={[['Model', nameIn(models, training.model_id)],
                       ['Dataset', nameIn(datasets, training.dataset_id)], ['Encoder', training.encoder_type]]} />
          <ExtractionCard key={training.id} training={training} />
        </>
      )}
    </div>
  );
}

function ExtractionCard({ training }: { training: Training }) {
  const [extraction, setExtraction] = useState<FeatureExtraction | null | undefined>(undefined);
  const [samples, setSamples] = useState(2000);
  const [topK, setTopK] = useState(20);
  const fields = useFieldValidity();
  const [special, setSpecial] = useState(SPECIAL_TOKENS_DEFAULT);
  const [open, setOpen] = useState<number | null>(null);
  const [view, setView] = useState<'table' | 'map'>('table');
  const [reloadKey, setReloadKey] = useState(0);
  const [explaining, setExplaining] = useState(false);
  const [group, setGroup] = useState<number | null>(null);  // a Matryoshka SAE's prefix group; null: all
  const { byId, cancel } = useJobs();
  const { subscribe } = useEventStream();
  const { run } = useRequest('Extraction not started');
  const { run: runCancel } = useRequest('Not cancelled');

  const load = useCallback(() => {
    apiGet<FeatureExtraction>(`/api/training/${training.id}/features/summary`).then(setExtraction)
      .catch(() => setExtraction(null));
  }, [training.id]);
  useEffect(load, [load]);
  useEffect(() => subscribe('features.updated', (event) => {
    if (event.data.training_id === training.id) load();
  }), [subscribe, training.id, load]);
  const jobId = extraction?.job_id ?? null;
  const job = jobId ? byId[jobId] : undefined;
  useEffect(() => {
    if (job && (job.status === 'failed' || job.status === 'cancelled')) load();
  }, [job?.status, load]); // eslint-disable-line react-hooks/exhaustive-deps

  const start = () => run(async () => {
    await apiPost<Accepted>('/api/features/extract', { training_id: training.id, eval_samples: samples,
      top_k_examples: topK, ...specialTokensBody(special) });
    load();
  });

  const summary = extraction?.summary;
  // The status says what to show; which buttons exist comes from the API (`actions`).
  const can = (action: string) => extraction?.actions.includes(action) ?? false;
  const extracting = extraction?.status === 'extracting';
  const form = useMemo(() => (
    <div className="space-y-4" data-testid="features-extract-form">
      <p className="text-slate-400">Training complete. Extract interpretable features from the trained encoder.</p>
      {!training.dataset_id && <p className="text-sm text-yellow-400">This SAE was imported: extract its features with
        POST /api/features/extract and a dataset_id.</p>}
      <div className="grid grid-cols-2 gap-4 max-w-md">
        <Field label="Evaluation Samples" htmlFor="features-samples">
          <NumberInput id="features-samples" testId="features-samples" integer min={8} max={1_000_000} value={samples}
                       onChange={setSamples} onValidity={fields.track('samples')} />
        </Field>
        <Field label="Top-K Examples per Feature" htmlFor="features-topk">
          <NumberInput id="features-topk" testId="features-topk" integer min={1} max={200} value={topK}
                       onChange={setTopK} onValidity={fields.track('topk')} />
        </Field>
      </div>
      <div className="max-w-xl">
        <SpecialTokensField testId="features-special" value={special} onChange={setSpecial} />
      </div>
      {extraction?.status === 'error' && <p className="text-sm text-red-400">Last extraction failed: {extraction.error}</p>}
      <PrimaryButton data-testid="features-extract" icon={<Zap className="w-5 h-5" />}
                     disabled={!training.dataset_id || (extraction != null && !can('extract')) || !specialTokensValid(special)
                       || !fields.valid}
                     onClick={() => void start()}>
        {summary ? 'Extract Again' : 'Extract Features'}
      </PrimaryButton>
    </div>
  ), [samples, topK, special, training, extraction, summary, run, fields.valid]); // eslint-disable-line react-hooks/exhaustive-deps

  return (
    <Card title="Feature Extraction & Analysis" testId="features-card">
      {extraction === undefined ? null : extracting ? (
        <div data-testid="features-extracting">
          <div className="flex items-center gap-3">
            <ProgressBar className="flex-1" value={job?.progress ?? 0} label="Extracting features..." showPercent />
            {can('cancel') && jobId && (
              <button type="button" aria-label="Cancel extraction" title="Cancel" data-testid="features-cancel"
                      onClick={() => void runCancel(() => cancel(jobId))}
                      className="p-1 self-end text-slate-400 hover:text-red-400 transition-colors">
                <X className="w-5 h-5" />
              </button>
            )}
          </div>
          <p className="text-xs text-slate-500 mt-2">{job?.message || 'Processing activation patterns...'}</p>
        </div>
      ) : extraction?.status === 'ready' && summary ? (
        <div className="space-y-4">
          <div className="grid grid-cols-3 gap-4" data-testid="features-summary">
            <MetricTile label="Features Found" value={count(summary.alive)} color="emerald"
                        caption={`of ${count(summary.features)} latents; ${count(summary.dead)} never fired`} />
            <MetricTile label="Interpretable" value={pct(summary.interpretable_share, 1)} color="blue"
                        caption={`of ${count(summary.scored)} scored features, score ≥ 0.5: top tokens predict where it fires`} />
            <MetricTile label="Activation Rate" value={pct(summary.activation_rate, 2)} color="purple"
                        caption={`mean over live features, ${count(summary.tokens)} tokens`} />
          </div>
          <p className="text-xs text-slate-500" data-testid="features-special-summary">{leftOut(summary)}</p>
          <p className="text-xs text-slate-500" data-testid="features-support-summary">{support(summary)}</p>
          <div className="flex items-center justify-between border-t border-slate-800 pt-4">
            <div className="flex gap-2" role="tablist">
              {(['table', 'map'] as const).map((v) => (
                <button key={v} type="button" role="tab" aria-selected={view === v} data-testid={`features-view-${v}`}
                        onClick={() => setView(v)}
                        className={`px-3 py-1 rounded text-sm ${view === v ? 'bg-emerald-600 text-white' : 'bg-slate-800 text-slate-300'}`}>
                  {v === 'table' ? 'Browser' : 'Map (UMAP)'}</button>
              ))}
            </div>
            <div className="flex gap-4 items-center">
              {extraction.matryoshka_widths && (
                <GroupFilter widths={extraction.matryoshka_widths} value={group} onChange={setGroup} />
              )}
              {can('explain') && (
                <button type="button" data-testid="explain-toggle" onClick={() => setExplaining(!explaining)}
                        className="text-sm text-slate-400 hover:text-slate-200">
                  {explaining ? '▾' : '▸'} Explain &amp; score with a language model</button>
              )}
              {can('extract') && (
                <details className="text-sm">
                  <summary className="cursor-pointer text-slate-400">Extract again</summary>
                  <div className="mt-2">{form}</div>
                </details>
              )}
            </div>
          </div>
          {explaining && can('explain') && <ExplainPanel trainingId={training.id} onDone={() => setReloadKey((k) => k + 1)} />}
          {view === 'table'
            ? <FeatureBrowser trainingId={training.id} reloadKey={reloadKey} onOpen={setOpen} group={group}
                              widths={extraction.matryoshka_widths ?? null} />
            : (
              <div className="space-y-6">
                <FeatureMap trainingId={training.id} onOpen={setOpen} group={group} />
                <CorrelationMatrix trainingId={training.id} onOpen={setOpen} />
              </div>
            )}
        </div>
      ) : form}
      {open !== null && (
        <FeatureModal trainingId={training.id} index={open} onClose={() => setOpen(null)} onOpen={setOpen}
                      widths={extraction?.matryoshka_widths ?? null}
                      onChanged={() => setReloadKey((k) => k + 1)} />
      )}
    </Card>
  );
}
