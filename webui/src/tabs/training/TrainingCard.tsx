import { Activity, CircleCheck, CircleX, Download, FlaskConical, LoaderCircle, Pause, Play, RotateCcw, Square, Trash2 } from 'lucide-react';
import { type ReactNode, useCallback, useEffect, useLayoutEffect, useRef, useState } from 'react';

import { apiDelete, apiGet, apiPost, errorMessage } from '../../api/client';
import type { CheckpointInfo, EventOf, Evaluation, MetricRow, Training } from '../../api/types';
import { LineChart } from '../../components/LineChart';
import { MetricTile } from '../../components/MetricTile';
import { ProgressBar, formatPercent } from '../../components/ProgressBar';
import { describeExcluded } from '../../components/SpecialTokens';
import { useToast } from '../../components/Toasts';
import { useEventStream } from '../../hooks/useEventStream';

const PILL: Record<Training['status'], [string, string]> = {
  queued: ['Initializing', 'bg-slate-800 text-slate-300'], running: ['Training', 'bg-emerald-900/30 text-emerald-400'],
  paused: ['Paused', 'bg-yellow-900/30 text-yellow-400'], completed: ['Completed', 'bg-emerald-900/30 text-emerald-400'],
  stopped: ['Stopped', 'bg-slate-800 text-slate-300'], failed: ['Failed', 'bg-red-900/30 text-red-400'],
  cancelled: ['Cancelled', 'bg-slate-800 text-slate-400'],
};

function StatusIcon({ status }: { status: Training['status'] }) {
  if (status === 'running') return <Activity className="w-5 h-5 text-emerald-400 animate-pulse" aria-hidden="true" />;
  if (status === 'queued') return <LoaderCircle className="w-5 h-5 text-blue-400 animate-spin" aria-hidden="true" />;
  if (status === 'paused') return <Pause className="w-5 h-5 text-yellow-400" aria-hidden="true" />;
  if (status === 'completed') return <CircleCheck className="w-5 h-5 text-emerald-400" aria-hidden="true" />;
  return <CircleX className="w-5 h-5 text-slate-400" aria-hidden="true" />;
}

/** The metrics row a logged step's `training.progress` carries; null for a progress note without one. */
function metricRow(data: EventOf<'training.progress'>['data']): MetricRow | null {
  if (data.step == null || data.tokens == null) return null;
  return { step: data.step, tokens: data.tokens, loss: data.loss ?? null, mse: data.mse ?? null,
           sparsity_loss: data.sparsity_loss ?? null, l0: data.l0 ?? null, dead_latents: data.dead_latents ?? null,
           explained_variance: data.explained_variance ?? null, learning_rate: data.learning_rate ?? null,
           activations_per_s: data.activations_per_s ?? null, memory_mb: data.memory_mb, eta_s: data.eta_s,
           sparsity_coefficient: data.sparsity_coefficient ?? null };
}

/** What the run leaves out; a streamed one learns the tokenizer's special tokens only once it starts. */
function specialTokens({ config, excluded_token_ids: ids }: Training): string {
  if (!config.exclude_special_tokens || config.excluded_token_ids !== undefined) return describeExcluded(ids);
  return config.special_token_ids ? describeExcluded(config.special_token_ids)
    : 'special tokens left out: the tokenizer\'s, found when the run starts';
}

/** The SAE's width as built: d_sae latents, and the expansion factor that is (d_sae / d_in) when known. */
export function describeWidth({ d_sae, d_in, expansion_factor }: Training): string {
  const latents = `${(d_sae ?? 0).toLocaleString('en-US')} latents`;
  return expansion_factor != null && d_in != null ? `${latents} (${expansion_factor}× d_in ${d_in})` : latents;
}

const fmt = (v: number | null | undefined, digits: number) => (v === null || v === undefined ? null : v.toFixed(digits));

/** How many latents fire at each log10 frequency on held-out tokens (plus those that never fire). */
function DensityHistogram({ evaluation }: { evaluation: Evaluation }) {
  const hist = evaluation.density_histogram;
  if (!hist) return null;
  const peak = Math.max(1, ...hist.counts, evaluation.never_fired ?? 0);
  const bar = (count: number, key: string, title: string, color: string) => (
    <div key={key} title={title} className="flex-1 flex flex-col justify-end h-full">
      <div className={`${color} rounded-t`} style={{ height: `${(100 * count) / peak}%` }} />
    </div>
  );
  return (
    <div data-testid="density-histogram">
      <div className="text-sm text-slate-400 mb-1">Feature density (log10 firing frequency on held-out tokens)</div>
      <div className="flex items-end gap-px h-24 bg-slate-950 rounded p-2">
        {bar(evaluation.never_fired ?? 0, 'never', `never fired: ${evaluation.never_fired ?? 0}`, 'bg-red-500')}
        {hist.counts.map((count, i) => bar(count, String(i),
          `10^${hist.log10_edges[i]} to 10^${hist.log10_edges[i + 1]}: ${count} latents`, 'bg-purple-500'))}
      </div>
      <div className="flex justify-between text-xs text-slate-500 mt-1">
        <span>never</span><span>10^{hist.log10_edges[0]}</span><span>10^-3</span><span>1</span>
      </div>
    </div>
  );
}

const LOG_LINES = 200;

/** The newest log lines, following the newest as they arrive like a terminal, unless the reader has
scrolled up (scrolling back to the bottom follows again). */
function LogLines({ rows, children }: { rows: MetricRow[]; children: (row: MetricRow) => ReactNode }) {
  const box = useRef<HTMLDivElement>(null);
  const follow = useRef(true);
  const newest = rows.length ? rows[rows.length - 1].step : null;
  useLayoutEffect(() => {
    const el = box.current;
    if (el && follow.current) el.scrollTop = el.scrollHeight;
  }, [newest]);
  const onScroll = () => {
    const el = box.current;
    if (el) follow.current = el.scrollHeight - el.scrollTop - el.clientHeight < 4;
  };
  return (
    <div ref={box} onScroll={onScroll} className="max-h-48 overflow-y-auto" data-testid="training-log-lines">
      {rows.slice(-LOG_LINES).map((m) => <div key={m.step} className="text-slate-300" data-testid="log-line">{children(m)}</div>)}
    </div>
  );
}

export function TrainingCard({ training, title, onChanged }: { training: Training; title: string; onChanged: () => void }) {
  const [metrics, setMetrics] = useState<MetricRow[]>([]);
  const [showMetrics, setShowMetrics] = useState(false);
  const [showCheckpoints, setShowCheckpoints] = useState(false);
  const [fill, setFill] = useState<string | null>(null);
  const [checkpoints, setCheckpoints] = useState<CheckpointInfo[]>([]);
  const { subscribe } = useEventStream();
  const { push } = useToast();
  const latest = metrics[metrics.length - 1] ?? training.latest;
  const imported = training.config.source === 'imported';
  // Which buttons show comes from the API (`actions`, by the training's status), not from rules kept here.
  const can = (action: string) => training.actions.includes(action);

  const loadMetrics = useCallback(() => {
    apiGet<MetricRow[]>(`/api/training/${training.id}/metrics`).then(setMetrics).catch(() => undefined);
  }, [training.id]);
  const loadCheckpoints = useCallback(() => {
    apiGet<CheckpointInfo[]>(`/api/training/${training.id}/checkpoints`).then(setCheckpoints).catch(() => undefined);
  }, [training.id]);

  useEffect(() => { loadMetrics(); loadCheckpoints(); }, [loadMetrics, loadCheckpoints, training.status]);
  useEffect(() => subscribe('training.checkpoint', (event) => {
    if (event.data.training_id === training.id) loadCheckpoints();
  }), [subscribe, training.id, loadCheckpoints]);
  useEffect(() => subscribe('training.progress', (event) => {
    const { data } = event;
    if (data.training_id !== training.id) return;
    // A streamed run's model filling a buffer (minutes on a large model): its note shows until the fill ends.
    setFill(data.fill_total != null && data.fill_tokens !== data.fill_total ? data.message : null);
    const row = metricRow(data);
    if (row === null) return;
    setMetrics((rows) => (rows.length && rows[rows.length - 1].step >= row.step ? rows : [...rows, row]));
  }), [subscribe, training.id]);

  const act = async (path: string, method: 'POST' | 'DELETE' = 'POST', body?: unknown) => {
    try {
      if (method === 'POST') await apiPost(path, body);
      else await apiDelete(path);
      loadCheckpoints();
      loadMetrics();
      onChanged();
    } catch (err) {
      push({ type: 'error', title: 'Not done', message: errorMessage(err) });
    }
  };

  const [label, pill] = PILL[training.status];
  const steps = training.total_steps;
  const series = (key: keyof MetricRow, color: string) => [{ name: key, color,
    points: metrics.filter((m) => typeof m[key] === 'number').map((m) => [m.step, m[key] as number] as [number, number]) }];
  // Target-L0 mode: L0 is charted against the target, and the coefficient the controller adapts beside it.
  const targetL0 = typeof training.config.hyperparameters?.target_l0 === 'number'
    ? training.config.hyperparameters.target_l0 as number : null;
  const last = metrics[metrics.length - 1];
  const targetSeries = targetL0 === null || !metrics.length ? []
    : [{ name: 'target L0', color: '#94a3b8', points: [[0, targetL0], [last.step, targetL0]] as [number, number][] }];
  const charts: [keyof MetricRow, string, string][] = [['loss', 'Loss Curve', '#34d399'], ['l0', 'L0 Sparsity', '#60a5fa'],
    ['dead_latents', 'Dead Latents', '#f87171'], ['explained_variance', 'Explained Variance', '#c084fc'],
    ...(targetL0 !== null ? [['sparsity_coefficient', 'Sparsity Coefficient (adapted to the target L0)', '#fbbf24']] as
      [keyof MetricRow, string, string][] : [])];
  return (
    <div className="bg-slate-900/50 border border-slate-800 rounded-lg p-6 space-y-4" data-testid="training-card"
         data-training-id={training.id} data-status={training.status}>
      <div className="flex items-start justify-between gap-4">
        <div>
          <h3 className="text-lg font-semibold">{title}</h3>
          <p className="text-sm text-slate-400">Encoder: {training.encoder_type} • Layer {training.layer} {training.hook_type}
            {training.d_sae != null && <span data-testid="training-width">{' '}• {describeWidth(training)}</span>}
            {' '}• Started: {new Date(training.created_at).toLocaleTimeString()}</p>
          {!imported && (
            <p className="text-xs text-slate-500" data-testid="training-special">
              {specialTokens(training)}</p>
          )}
        </div>
        <div className="flex items-center gap-2">
          <StatusIcon status={training.status} />
          <span className={`px-3 py-1 rounded-full text-sm ${pill}`} data-testid="training-status">{label}</span>
        </div>
      </div>
      {fill && (training.status === 'queued' || training.status === 'running') && (
        <p className="text-sm text-blue-300" data-testid="training-fill">{fill}</p>
      )}
      {imported && (
        <p className="text-sm text-slate-400" data-testid="training-imported">
          Imported SAE: {training.config.d_sae?.toLocaleString('en-US')} latents, {training.encoder_type}, from{' '}
          {training.config.origin}. Evaluate it with POST /api/training/{training.id}/evaluate and a dataset_id.</p>
      )}
      {!imported && training.status !== 'queued' && training.status !== 'stopped' && (
        <div>
          <div className="flex items-center justify-between mb-2 text-sm">
            <span className="text-slate-400">Training Progress</span>
            <span className="text-emerald-400 font-medium tabular-nums" data-testid="training-percent">
              {formatPercent(training.status === 'completed' ? 1 : (latest?.step ?? training.step) / steps)}</span>
          </div>
          <ProgressBar value={training.status === 'completed' ? 1 : (latest?.step ?? training.step) / steps} />
        </div>
      )}
      {!imported && <div className="grid grid-cols-4 gap-4">
        <div data-testid="tile-loss"><MetricTile label="Loss" value={fmt(latest?.loss, 4)} color="emerald" /></div>
        <div data-testid="tile-l0"><MetricTile label="L0 Sparsity" value={fmt(latest?.l0, 1)} color="blue" /></div>
        <div data-testid="tile-dead"><MetricTile label="Dead Latents" value={latest?.dead_latents ?? null} color="red" /></div>
        <div data-testid="tile-ev"><MetricTile label="Explained Variance" value={fmt(latest?.explained_variance, 3)} color="purple" /></div>
      </div>}
      {training.evaluation && (
        <p className="text-sm text-slate-300" data-testid="training-evaluation">
          {training.evaluation.explained_variance !== undefined
            && `Held-out: explained variance ${fmt(training.evaluation.explained_variance, 3)} • L0 ${fmt(training.evaluation.l0, 1)}`}
          {training.evaluation.imported && training.evaluation.ce_loss_recovered === undefined && 'Imported SAE'}
          {training.evaluation.ce_loss_recovered !== undefined && training.evaluation.ce_loss_recovered !== null
            && ` • CE loss recovered ${fmt(training.evaluation.ce_loss_recovered, 3)} • KL ${fmt(training.evaluation.kl_divergence, 4)}`}
        </p>
      )}
      {training.evaluation?.density_histogram && <DensityHistogram evaluation={training.evaluation} />}
      <div className="flex gap-2">
        <button type="button" data-testid="toggle-metrics" onClick={() => setShowMetrics(!showMetrics)}
                className="px-4 py-2 bg-slate-800 hover:bg-slate-700 rounded-lg text-sm">
          {showMetrics ? 'Hide Live Metrics' : 'Show Live Metrics'}</button>
        <button type="button" data-testid="toggle-checkpoints" onClick={() => setShowCheckpoints(!showCheckpoints)}
                className="px-4 py-2 bg-slate-800 hover:bg-slate-700 rounded-lg text-sm">
          Checkpoints ({checkpoints.length})</button>
        {can('export') && training.evaluation && (
          <a href={`/api/training/${training.id}/export`} data-testid="training-export" download
             className="px-4 py-2 bg-slate-800 hover:bg-slate-700 rounded-lg text-sm flex items-center gap-2">
            <Download className="w-4 h-4" /> Export (SAELens)</a>
        )}
      </div>
      {showMetrics && (
        <div className="grid grid-cols-1 md:grid-cols-2 gap-4" data-testid="training-charts">
          {charts.map(([key, name, color]) => (
            <div key={key} data-testid={`chart-${key}`}>
              <div className="text-sm text-slate-400 mb-1">
                {key === 'l0' && targetL0 !== null ? `L0 Sparsity (target ${targetL0})` : name}</div>
              <LineChart series={key === 'l0' ? [...series(key, color), ...targetSeries] : series(key, color)}
                         windowS={Math.max(1, latest?.step ?? 1)} unit="" xAxis="step"
                         max={key === 'explained_variance' ? 1 : undefined} />
            </div>
          ))}
          <div className="md:col-span-2 bg-slate-950 rounded-lg p-3 font-mono text-xs" data-testid="training-logs">
            <div className="flex justify-between mb-2 text-slate-400"><span>Training Logs</span>
              {training.status === 'running' && <span className="text-emerald-400">Live</span>}</div>
            <LogLines rows={metrics}>{(m) => (
              <>
                Step {m.step}: loss={fmt(m.loss, 4)} mse={fmt(m.mse, 4)} L0={fmt(m.l0, 1)} dead={m.dead_latents}
                {' '}EV={fmt(m.explained_variance, 3)} lr={m.learning_rate?.toExponential(2)}
                {m.sparsity_coefficient != null && targetL0 !== null && ` coef=${m.sparsity_coefficient.toPrecision(3)}`}
                {' '}{Math.round(m.activations_per_s ?? 0)} act/s
                {m.memory_mb ? ` ${Math.round(m.memory_mb)} MB` : ''}
              </>
            )}</LogLines>
          </div>
        </div>
      )}
      {showCheckpoints && (
        <div className="border border-slate-800 rounded-lg p-4" data-testid="training-checkpoints">
          <div className="flex items-center justify-between mb-3">
            <span className="font-medium">Checkpoint Management</span>
            <button type="button" data-testid="checkpoint-save" disabled={!can('save_checkpoint')}
                    onClick={() => void act(`/api/training/${training.id}/checkpoints`)}
                    className="px-3 py-1 bg-emerald-600 hover:bg-emerald-700 disabled:opacity-50 rounded text-sm">Save Now</button>
          </div>
          <div className="space-y-2 max-h-48 overflow-y-auto">
            {checkpoints.length === 0 && <p className="text-sm text-slate-500">No checkpoints saved yet</p>}
            {checkpoints.map((c) => (
              <div key={c.step} className="flex items-center justify-between p-2 bg-slate-800/30 rounded" data-testid="checkpoint-row">
                <div><div className="font-medium">Step {c.step}</div>
                  <div className="text-xs text-slate-400" data-testid="checkpoint-loss">Loss: {fmt(c.loss, 4) ?? '—'}
                    {/* A checkpoint saved before they recorded their loss: the one logged nearest to it. */}
                    {c.loss != null && c.loss_step != null && ` (logged at step ${c.loss_step})`}
                    {' '}• {new Date(c.saved_at).toLocaleTimeString()}</div></div>
                <div className="flex gap-2">
                  <button type="button" aria-label={`Load step ${c.step}`} data-testid="checkpoint-load" disabled={!can('load_checkpoint')}
                          onClick={() => void act(`/api/training/${training.id}/checkpoints/${c.step}/load`)}
                          className="p-1 text-slate-300 hover:text-emerald-400 disabled:opacity-40"><Download className="w-4 h-4" /></button>
                  <button type="button" aria-label={`Delete step ${c.step}`}
                          onClick={() => void act(`/api/training/${training.id}/checkpoints/${c.step}`, 'DELETE')}
                          className="p-1 text-red-400 hover:text-red-300"><Trash2 className="w-4 h-4" /></button>
                </div>
              </div>
            ))}
          </div>
        </div>
      )}
      {training.error && <p className="text-sm text-red-400">{training.error}</p>}
      <div className="flex gap-2 pt-2 border-t border-slate-800">
        {can('pause') && (
          <button type="button" data-testid="training-pause" onClick={() => void act(`/api/training/${training.id}/pause`)}
                  className="flex-1 px-4 py-2 bg-yellow-600 hover:bg-yellow-700 rounded-lg flex items-center justify-center gap-2">
            <Pause className="w-4 h-4" /> Pause</button>
        )}
        {can('resume') && (
          <button type="button" data-testid="training-resume" onClick={() => void act(`/api/training/${training.id}/resume`)}
                  className="flex-1 px-4 py-2 bg-emerald-600 hover:bg-emerald-700 rounded-lg flex items-center justify-center gap-2">
            <Play className="w-4 h-4" /> Resume</button>
        )}
        {can('stop') && (
          <button type="button" data-testid="training-stop" onClick={() => void act(`/api/training/${training.id}/stop`)}
                  className="flex-1 px-4 py-2 bg-red-600 hover:bg-red-700 rounded-lg flex items-center justify-center gap-2">
            <Square className="w-4 h-4" /> Stop</button>
        )}
        {/* A completed run has nothing left to continue: the API retries it only from scratch. */}
        {can('retry') && training.status !== 'completed' && (
          <button type="button" data-testid="training-retry" onClick={() => void act(`/api/training/${training.id}/retry`)}
                  className="flex-1 px-4 py-2 bg-blue-600 hover:bg-blue-700 rounded-lg flex items-center justify-center gap-2">
            <RotateCcw className="w-4 h-4" /> Retry from last checkpoint</button>
        )}
        {can('retry') && (
          <button type="button" data-testid="training-restart"
                  onClick={() => { if (window.confirm('Drop checkpoints and metrics and train again from step 0?')) void act(`/api/training/${training.id}/retry`, 'POST', { from_scratch: true }); }}
                  className="px-4 py-2 bg-slate-800 hover:bg-slate-700 rounded-lg flex items-center justify-center gap-2 text-sm">
            <RotateCcw className="w-4 h-4" /> From scratch</button>
        )}
        {can('evaluate') && training.dataset_id && (
          <button type="button" data-testid="training-evaluate" onClick={() => void act(`/api/training/${training.id}/evaluate`)}
                  className="px-4 py-2 bg-purple-600 hover:bg-purple-700 rounded-lg flex items-center justify-center gap-2 text-sm">
            <FlaskConical className="w-4 h-4" /> Evaluate again</button>
        )}
        {can('delete') && (
          <button type="button" aria-label="Delete training" data-testid="training-delete"
                  onClick={() => { if (window.confirm('Delete this training, its checkpoints and export?')) void act(`/api/training/${training.id}`, 'DELETE'); }}
                  className="px-3 py-2 text-red-400 hover:text-red-300"><Trash2 className="w-4 h-4" /></button>
        )}
      </div>
    </div>
  );
}
