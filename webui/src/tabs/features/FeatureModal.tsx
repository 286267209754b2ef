import { Info } from 'lucide-react';
import { useCallback, useEffect, useState } from 'react';

import { apiGet, apiPatch, apiPost, errorMessage } from '../../api/client';
import type { Ablation, FeatureDetail } from '../../api/types';
import { PrimaryButton, inputClass } from '../../components/Form';
import { MetricTile } from '../../components/MetricTile';
import { Modal, ModalTabs } from '../../components/Modal';
import { ContextChips, quoteToken } from '../../components/TokenChip';
import { useToast } from '../../components/Toasts';
import { Explanations } from './Explanations';
import { describeGroup } from './groups';
import { fixed, unscoredText } from './scores';

const TABS = ['examples', 'explanations', 'logit-lens', 'correlations', 'ablation', 'try-text'] as const;
type Tab = (typeof TABS)[number];
const show = quoteToken;

/** Feature detail with its evidence (contexts, logit lens, correlations, ablation), plus a heatmap over any text. */
export function FeatureModal({ trainingId, index, onClose, onOpen, onChanged, widths = null }: {
  trainingId: string; index: number; onClose: () => void; onOpen: (index: number) => void; onChanged: () => void;
  widths?: number[] | null;  // a Matryoshka SAE's group sizes
}) {
  const [detail, setDetail] = useState<FeatureDetail | null>(null);
  const [tab, setTab] = useState<Tab>('examples');
  const [label, setLabel] = useState('');
  const { push } = useToast();
  const base = `/api/training/${trainingId}/features/${index}`;

  const load = useCallback(() => {
    apiGet<FeatureDetail>(`${base}?examples=20&window=10`).then((d) => { setDetail(d); setLabel(d.name ?? d.label); })
      .catch((err) => push({ type: 'error', title: 'Feature not loaded', message: errorMessage(err) }));
  }, [base, push]);
  useEffect(load, [load]);

  const save = async (changes: { name?: string; is_favorite?: boolean }) => {
    try {
      await apiPatch(base, changes);
      load();
      onChanged();
    } catch (err) {
      push({ type: 'error', title: 'Not saved', message: errorMessage(err) });
    }
  };

  // The stat tiles stay above the sub-tabs (the header does not scroll); each sub-tab opens at its top.
  return (
    <Modal testId="feature-modal" onClose={onClose} scrollKey={tab}
           title={`Feature #${index}${detail?.group != null && widths ? ` • Matryoshka ${describeGroup(widths, detail.group)}` : ''}`}
           tabs={<ModalTabs tabs={TABS} active={tab} onChange={setTab} />}
           subtitle={(
             <div className="space-y-4 mt-2">
               <div className="flex gap-2">
                 <input data-testid="feature-label" aria-label="Feature label" className={`${inputClass} flex-1 min-w-0`}
                        placeholder="Add label..." value={label} title={label} onChange={(e) => setLabel(e.target.value)}
                        onKeyDown={(e) => { if (e.key === 'Enter') void save({ name: label }); }}
                        onBlur={() => { if (detail && label !== (detail.name ?? detail.label)) void save({ name: label }); }} />
                 <button type="button" data-testid="feature-favorite" onClick={() => void save({ is_favorite: !detail?.is_favorite })}
                         className={`shrink-0 whitespace-nowrap px-3 rounded-lg ${detail?.is_favorite ? 'bg-yellow-600/30 text-yellow-400' : 'bg-slate-800 text-slate-400'}`}>
                   {detail?.is_favorite ? '★ Favourite' : '☆ Favourite'}</button>
               </div>
               {detail && <StatTiles detail={detail} />}
             </div>
           )}>
      {detail && (
        <div data-testid="feature-tab-body">
          {tab === 'examples' && <Examples detail={detail} />}
          {tab === 'explanations' && <Explanations base={base} />}
          {tab === 'logit-lens' && <LogitLensPanel detail={detail} />}
          {tab === 'correlations' && <Correlations base={base} onOpen={onOpen} />}
          {tab === 'ablation' && <AblationPanel base={base} initial={detail.ablation} />}
          {tab === 'try-text' && <TryText base={base} max={detail.max_activation} />}
        </div>
      )}
    </Modal>
  );
}

/** Frequency, score, max activation and support: above the sub-tabs, as the mock has them. */
function StatTiles({ detail }: { detail: FeatureDetail }) {
  return (
    <div className="grid grid-cols-4 gap-4" data-testid="feature-stats">
      <MetricTile label="Activation Frequency" value={`${(100 * detail.frequency).toFixed(2)}%`} color="emerald" />
      <div data-testid="feature-score-tile">
        {detail.score_state === 'scored' && detail.score !== null ? (
          <MetricTile label="Interpretability" value={fixed(detail.score)} color="blue"
                      caption={detail.score_low == null || detail.score_high == null ? 'held-out F1 of its top tokens'
                        : `95% interval ${fixed(detail.score_low)}–${fixed(detail.score_high)} • held-out F1 of its top tokens`} />
        ) : (
          <MetricTile label="Interpretability" value={<span className="text-lg text-slate-500 italic">{unscoredText(detail.score_state)}</span>}
                      color="slate" caption={detail.score_state === 'dead' ? 'never fires' : 'not enough evidence for a score'} />
        )}
      </div>
      <MetricTile label="Max Activation" value={detail.max_activation.toFixed(3)} color="purple" />
      <div data-testid="feature-support">
        <MetricTile label="Active Samples" value={detail.active_samples.toLocaleString('en-US')} color="yellow"
                    caption={`${detail.active_samples.toLocaleString('en-US')} samples, `
                      + `${detail.held_out_positives.toLocaleString('en-US')} held-out positives`} />
      </div>
    </div>
  );
}

function Examples({ detail }: { detail: FeatureDetail }) {
  return (
    <div data-testid="feature-examples">
      <div className="flex justify-between mb-3"><h4 className="font-semibold">Top Activating Contexts</h4>
        <span className="text-sm text-slate-400">Showing {detail.examples.length} examples</span></div>
      <p className="text-sm text-slate-400 mb-3">Fires most on: {detail.top_tokens.map(([t, n]) => `${show(t)} ×${n}`).join(', ') || '—'}
        {' '}• label from the evidence: {detail.auto_label}{detail.llm_label && ` • from the language model: ${detail.llm_label}`}</p>
      <div className="space-y-3">
        {detail.examples.map((example, i) => (
          <div key={`${example.sample}-${example.position}`} className="bg-slate-800/30 rounded-lg p-4" data-testid="feature-example">
            <div className="flex justify-between text-sm mb-2"><span className="text-slate-400">Example #{i + 1}</span>
              <span className="text-emerald-400">Max activation: {example.max_activation.toFixed(3)}</span></div>
            <ContextChips tokens={example.tokens} activations={example.activations} joined={example.joined}
                          ids={example.token_ids} first={example.position - example.max_index} max={detail.max_activation} />
            <div className="text-xs text-slate-500 mt-2">Source: sample {example.sample}, token {example.position}</div>
          </div>
        ))}
      </div>
      {detail.quantile_examples.length > 0 && (
        <div className="mt-6" data-testid="feature-quantiles">
          <h4 className="font-semibold mb-1">Across the Activation Range</h4>
          <p className="text-sm text-slate-400 mb-3">Random firing tokens, from the strongest quarter to the weakest</p>
          <div className="space-y-2">
            {detail.quantile_examples.map((example, i) => (
              <div key={i} className="bg-slate-800/30 rounded-lg p-3">
                <div className="flex justify-between text-xs mb-1"><span className="text-slate-400">{example.quantile}</span>
                  <span className="text-emerald-400">Activation: {example.activation.toFixed(3)}</span></div>
                <ContextChips tokens={example.tokens} activations={example.activations} joined={example.joined}
                              ids={example.token_ids} first={example.position - example.max_index} max={detail.max_activation} />
              </div>
            ))}
          </div>
        </div>
      )}
    </div>
  );
}

/** "+0.412": a logit change with its sign. */
const signed = (value: number) => `${value > 0 ? '+' : value < 0 ? '−' : ''}${Math.abs(value).toFixed(3)}`;

/**
 * The decoder direction through the unembedding. Per token: the logit change one unit of the feature adds (logit Δ),
 * and how its probability compares with an even spread over the vocabulary if the feature alone set the next token
 * (softmax × vocabulary size: ×2 is twice as likely as the average token). Each column's bars are scaled to its own
 * largest |logit Δ|, so the differences between its rows show.
 */
function LogitLensPanel({ detail }: { detail: FeatureDetail }) {
  const lens = detail.logit_lens;
  const positive = lens.positive ?? [];
  // Absent for an extraction made before they were stored (lse) or a model without a known vocabulary size.
  const logsumexp = lens.logsumexp ?? null;
  const vocab = lens.vocab_size ?? null;
  const ratio = (value: number) => (logsumexp === null || vocab === null ? null : vocab * Math.exp(value - logsumexp));
  return (
    <div className="grid grid-cols-1 md:grid-cols-2 gap-6" data-testid="feature-logit-lens">
      {([['Predicted Tokens', positive, 'bg-emerald-500', 'text-emerald-400', 'logit-column-positive'],
         ['Suppressed Tokens', lens.negative ?? [], 'bg-red-500', 'text-red-400', 'logit-column-negative']] as const)
        .map(([title, rows, bar, text, testId]) => {
          const largest = Math.max(...rows.map((r) => Math.abs(r[1])), 1e-9);
          return (
            <div key={title} data-testid={testId}>
              <h4 className="font-semibold">{title}</h4>
              <p className="text-sm text-slate-400 mb-3">{title === 'Predicted Tokens'
                ? 'The tokens this feature makes more likely when it fires:' : 'and those it makes less likely:'}</p>
              <div className="flex justify-end gap-4 px-3 pb-1 text-xs text-slate-500" data-testid="logit-header">
                <span className="w-20 text-right" title="logit change per unit of feature activation">logit Δ</span>
                {logsumexp !== null && vocab !== null && (
                  <span className="w-24 text-right" title="probability if this feature alone set the next token, relative to an even spread over the vocabulary">
                    prob. vs even</span>
                )}
              </div>
              <div className="space-y-2">
                {rows.map(([token, value], i) => {
                  const r = ratio(value);
                  return (
                    <div key={i} data-testid="logit-row" className="p-3 bg-slate-800/30 rounded-lg">
                      <div className="flex items-center justify-between gap-4 text-sm">
                        <span className="min-w-0 truncate"><span className="text-slate-500 mr-2">#{i + 1}</span>
                          <span className="font-mono whitespace-pre" data-testid="logit-token">{show(token)}</span></span>
                        <span className="flex gap-4 shrink-0 tabular-nums">
                          <span className={`w-20 text-right ${text}`} data-testid="logit-delta">{signed(value)}</span>
                          {r !== null && <span className="w-24 text-right text-slate-300" data-testid="logit-prob">×{r.toFixed(r < 10 ? 2 : 1)}</span>}
                        </span>
                      </div>
                      <div className="mt-2 h-1.5 bg-slate-700/60 rounded">
                        <div className={`h-1.5 rounded ${bar}`} data-testid="logit-bar"
                             style={{ width: `${(100 * Math.abs(value) / largest).toFixed(2)}%` }} />
                      </div>
                    </div>
                  );
                })}
              </div>
            </div>
          );
        })}
      <p className="md:col-span-2 text-xs text-slate-500" data-testid="logit-legend">
        <span className="text-slate-400">logit Δ</span>: the change in the token&apos;s logit per unit of activation (the
        decoder direction through the unembedding)
        {logsumexp !== null && vocab !== null && <>; <span className="text-slate-400">prob. vs even</span>: its probability
          if this feature alone set the next token, against an even spread over the {vocab.toLocaleString('en-US')}-token
          vocabulary (×2: twice as likely)</>}.
      </p>
      <div className="md:col-span-2 flex gap-2 p-4 bg-blue-900/20 border border-blue-800 rounded-lg text-sm">
        <Info className="w-5 h-5 text-blue-400 shrink-0" />
        <span><strong>Interpretation:</strong> this feature fires on <span className="text-blue-400">
          {detail.top_tokens.slice(0, 3).map(([t]) => show(t)).join(', ') || 'nothing in the evaluation text'}</span>
          {positive.length > 0 && <> and pushes the model towards <span className="text-blue-400">
            {positive.slice(0, 3).map(([t]) => show(t)).join(', ')}</span></>}.</span>
      </div>
    </div>
  );
}

function Correlations({ base, onOpen }: { base: string; onOpen: (index: number) => void }) {
  const [rows, setRows] = useState<{ index: number; label: string; correlation: number }[] | null>(null);
  useEffect(() => { apiGet<typeof rows>(`${base}/correlations?top=15`).then(setRows).catch(() => setRows([])); }, [base]);
  return (
    <div data-testid="feature-correlations">
      <h4 className="font-semibold">Correlated Features</h4>
      <p className="text-sm text-slate-400 mb-3">Features that frequently activate together with this feature (Pearson over the evaluation tokens)</p>
      {rows === null ? <p className="text-slate-500">Computing...</p> : rows.length === 0 ? <p className="text-slate-500">No co-activating features</p> : (
        <div className="space-y-2">
          {rows.map((row) => (
            <button key={row.index} type="button" data-testid="correlation-row" onClick={() => onOpen(row.index)}
                    className="w-full flex items-center justify-between p-3 bg-slate-800/30 rounded-lg hover:bg-slate-800 text-left">
              <span><span className="font-mono text-slate-400 mr-3">#{row.index}</span>{row.label}</span>
              <span className="flex items-center gap-3">
                <span className="text-purple-400 font-semibold tabular-nums">{row.correlation.toFixed(2)}</span>
                <span className="w-24 h-2 bg-slate-800 rounded"><span className={`block h-2 rounded ${row.correlation < 0 ? 'bg-red-500' : 'bg-purple-500'}`}
                      style={{ width: `${Math.min(100, 100 * Math.abs(row.correlation))}%` }} /></span>
              </span>
            </button>
          ))}
        </div>
      )}
    </div>
  );
}

function AblationPanel({ base, initial }: { base: string; initial: Ablation | null }) {
  const [result, setResult] = useState<Ablation | null>(initial);
  const [busy, setBusy] = useState(false);
  const { push } = useToast();
  const run = async () => {
    setBusy(true);
    try {
      setResult(await apiPost<Ablation>(`${base}/ablation?contexts=10`));
    } catch (err) {
      push({ type: 'error', title: 'Ablation failed', message: errorMessage(err) });
    } finally {
      setBusy(false);
    }
  };
  const delta = result?.perplexity_delta ?? null;
  const impact = result?.impact_score ?? null;
  return (
    <div data-testid="feature-ablation" className="space-y-4">
      <div><h4 className="font-semibold">Ablation Analysis</h4>
        <p className="text-sm text-slate-400">Impact of removing this feature on model performance, on its own top contexts</p></div>
      {result && delta !== null && impact !== null && (
        <div className="grid grid-cols-2 gap-4">
          <MetricTile size="lg" label="Perplexity Change" color={delta > 0 ? 'red' : 'emerald'}
                      value={`${delta > 0 ? '+' : ''}${delta.toFixed(3)}`}
                      caption={`${result.perplexity_original?.toFixed(3)} → ${result.perplexity_ablated?.toFixed(3)}: the model predicts these texts ${delta > 0 ? 'worse' : 'no worse'} without it`} />
          <MetricTile size="lg" label="Impact Score" color="emerald" value={`${(100 * impact).toFixed(1)}%`}
                      caption={`how much the next-token distribution moves where it fires (${result.fired_tokens} tokens)`} />
        </div>
      )}
      <PrimaryButton data-testid="ablation-run" busy={busy} busyLabel="Running the model..." onClick={() => void run()}>
        {result ? 'Run Again' : 'Run Ablation'}</PrimaryButton>
      {result && delta !== null && (
        <div className="flex gap-2 p-4 bg-blue-900/20 border border-blue-800 rounded-lg text-sm">
          <Info className="w-5 h-5 text-blue-400 shrink-0" />
          <span><strong>Analysis:</strong> zeroing the feature {Math.abs(delta) < 0.01 ? 'barely changes' : delta > 0 ? 'raises' : 'lowers'} the
            perplexity over {result.tokens} tokens of {result.contexts} contexts{impact !== null && impact > 0.2 ? ', and visibly moves the predictions where it fires' : ''}.</span>
        </div>
      )}
    </div>
  );
}

function TryText({ base, max }: { base: string; max: number }) {
  const [text, setText] = useState('');
  const [result, setResult] = useState<{ tokens: string[]; token_ids: number[]; activations: number[]; max_activation: number } | null>(null);
  const [busy, setBusy] = useState(false);
  const { push } = useToast();
  const run = async () => {
    setBusy(true);
    try {
      setResult(await apiPost(`${base}/activations-on`, { text }));
    } catch (err) {
      push({ type: 'error', title: 'Not computed', message: errorMessage(err) });
    } finally {
      setBusy(false);
    }
  };
  return (
    <div data-testid="feature-try-text" className="space-y-3">
      <h4 className="font-semibold">Activation Heatmap</h4>
      <textarea data-testid="try-text-input" rows={3} className={inputClass} placeholder="Type any text to see where this feature fires..."
                value={text} onChange={(e) => setText(e.target.value)} />
      <PrimaryButton data-testid="try-text-run" busy={busy} disabled={!text.trim()} onClick={() => void run()}>Show Activations</PrimaryButton>
      {result && (
        <div className="bg-slate-800/30 rounded-lg p-4" data-testid="try-text-result">
          <ContextChips tokens={result.tokens} activations={result.activations} ids={result.token_ids} first={0}
                        max={Math.max(max, result.max_activation)} />
          <p className="text-xs text-slate-500 mt-2">Max here: {result.max_activation.toFixed(3)} (on the evaluation text: {max.toFixed(3)})</p>
        </div>
      )}
    </div>
  );
}
