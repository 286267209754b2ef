import { ArrowRight } from 'lucide-react';

import type { SteeringResult } from '../../api/types';
import { Card } from '../../components/Card';
import { MetricTile } from '../../components/MetricTile';
import { visible } from '../../components/TokenChip';

const mean = (values: number[]) => (values.length ? values.reduce((a, b) => a + b, 0) / values.length : null);

/** Formatting shared with the test: KL 4 dp, perplexity Δ 2 dp with a sign, percentages 1 dp. */
export const formatKl = (v: number | null) => (v === null ? null : v.toFixed(4));
export const formatDelta = (v: number | null) => (v === null ? null : `${v > 0 ? '+' : ''}${v.toFixed(2)}`);
export const formatPct = (v: number | null) => (v === null ? null : `${(100 * v).toFixed(1)}%`);

/** "Comparison Metrics" of the two outputs, plus the token probability shifts, feature activity and timing. */
export function ComparisonMetrics({ result, stale }: { result: SteeringResult; stale: boolean }) {
  const m = result.metrics;
  const delta = m.perplexity_delta;
  const up = delta !== null && delta > 0;
  const maxProb = Math.max(1e-9, ...m.token_probability_shifts.map((s) => Math.max(s.baseline_prob, s.steered_prob)));
  const t = result.timing;
  return (
    <Card title="Comparison Metrics" testId="steering-metrics"
          actions={stale && <span className="text-xs text-slate-500" data-testid="steering-metrics-stale">from the previous run</span>}>
      <div className="grid grid-cols-4 gap-4">
        <div data-testid="steering-metric-kl">
          <MetricTile label="KL Divergence" value={formatKl(m.kl_divergence)} color="purple" caption="Distribution shift" />
        </div>
        <div data-testid="steering-metric-perplexity">
          <MetricTile label="Perplexity Δ" value={formatDelta(delta)} color={up ? 'red' : 'emerald'}
                      caption={delta === null ? 'No tokens to score' : up ? 'Higher uncertainty' : delta < 0 ? 'Lower uncertainty' : 'No change'} />
        </div>
        <div data-testid="steering-metric-similarity">
          <MetricTile label="Similarity" value={formatPct(m.semantic_similarity)} color="blue" caption="Cosine similarity" />
        </div>
        <div data-testid="steering-metric-overlap">
          <MetricTile label="Word Overlap" value={formatPct(m.word_overlap)} color="emerald" caption="Shared tokens" />
        </div>
      </div>
      {m.perplexity_unsteered !== null && m.perplexity_steered !== null && (
        <p className="text-xs text-slate-500 mt-2">
          Perplexity under the unsteered model: baseline {m.perplexity_unsteered.toFixed(2)} → steered {m.perplexity_steered.toFixed(2)}
        </p>
      )}

      {m.token_probability_shifts.length > 0 && (
        <div className="mt-6" data-testid="steering-shifts">
          <h4 className="font-semibold mb-1">Token Probability Shifts</h4>
          <p className="text-xs text-slate-500 mb-3">
            Next-token probabilities at generated token {m.shift_position + 1}, reading the baseline text: without → with steering</p>
          <div className="space-y-2">
            {m.token_probability_shifts.map((shift) => (
              <div key={shift.token_id} className="flex items-center gap-3 text-sm" data-testid="steering-shift">
                <span className="w-28 shrink-0 truncate whitespace-pre font-mono text-slate-200 bg-slate-800 rounded px-2 py-0.5"
                      title={`token id ${shift.token_id}`}>{visible(shift.token)}</span>
                <div className="flex-1 flex items-center gap-2">
                  <div className="flex-1 h-2 bg-slate-800 rounded-full overflow-hidden" title={`baseline ${(100 * shift.baseline_prob).toFixed(2)}%`}>
                    <div className="h-full bg-slate-500 rounded-full" style={{ width: `${(100 * shift.baseline_prob) / maxProb}%` }} />
                  </div>
                  <ArrowRight className="w-4 h-4 text-slate-500 shrink-0" aria-hidden="true" />
                  <div className="flex-1 h-2 bg-slate-800 rounded-full overflow-hidden" title={`steered ${(100 * shift.steered_prob).toFixed(2)}%`}>
                    <div className="h-full bg-emerald-500 rounded-full" style={{ width: `${(100 * shift.steered_prob) / maxProb}%` }} />
                  </div>
                </div>
                <span className={`w-20 text-right tabular-nums ${shift.delta >= 0 ? 'text-emerald-400' : 'text-red-400'}`}>
                  {shift.delta >= 0 ? '+' : ''}{(100 * shift.delta).toFixed(1)}%</span>
              </div>
            ))}
          </div>
        </div>
      )}

      {result.feature_activations.length > 0 && (
        <div className="mt-6" data-testid="steering-feature-activity">
          <h4 className="font-semibold mb-1">Feature Activity</h4>
          <p className="text-xs text-slate-500 mb-3">Mean activation over the generated tokens, baseline → steered</p>
          <div className="grid grid-cols-2 gap-2 text-sm">
            {result.feature_activations.map((activity) => {
              const feature = result.features.find((f) => f.index === activity.index);
              const before = mean(activity.unsteered);
              const after = mean(activity.steered);
              return (
                <div key={activity.index} className="bg-slate-800/30 rounded px-3 py-2 flex justify-between gap-2">
                  <span className="truncate"><span className="font-mono text-slate-400 mr-1">#{activity.index}</span>
                    {feature?.label}</span>
                  <span className="tabular-nums shrink-0 text-slate-300">
                    {before === null ? '—' : before.toFixed(3)} → <span className="text-emerald-400">{after === null ? '—' : after.toFixed(3)}</span>
                  </span>
                </div>
              );
            })}
          </div>
        </div>
      )}

      <p className="text-xs text-slate-500 mt-4 tabular-nums" data-testid="steering-timing">
        {t.generated_tokens} tokens per side
        {/* != null: a result from before the sides were timed apart has neither field */}
        {t.unsteered_ms_per_token != null && ` • unsteered ${t.unsteered_ms_per_token.toFixed(1)} ms/token`}
        {t.steered_ms_per_token != null && ` • steered ${t.steered_ms_per_token.toFixed(1)} ms/token`}
        {t.overhead_ratio != null && ` (steering overhead ×${t.overhead_ratio.toFixed(2)})`}
        {t.time_to_first_token_ms !== null && ` • first token ${t.time_to_first_token_ms.toFixed(0)} ms`}
        {` • ${(t.total_ms / 1000).toFixed(2)} s • ${t.device}`}
        {` • ${result.hook_point} • seed ${result.seed}`}
        {t.stopped_at_context && ' • stopped at the model\'s context length'}
      </p>
    </Card>
  );
}
