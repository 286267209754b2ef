import type { FeatureRow } from '../../api/types';

/** A score in [0, 1] with two decimals, as the interval next to it reads. */
export const fixed = (v: number) => v.toFixed(2);

/** "0.93 (0.88–0.97)"; the point alone when an interval is missing. */
export function withInterval(value: number, low: number | null | undefined, high: number | null | undefined): string {
  return low == null || high == null ? fixed(value) : `${fixed(value)} (${fixed(low)}–${fixed(high)})`;
}

/** Why a feature has no interpretability number: rare features are not scored, they are not "0". */
export function unscoredText(state: FeatureRow['score_state']): string {
  return state === 'dead' ? '—' : 'too rare to score';
}

/** The interpretability cell of the browser: a number with its interval, or a muted reason. */
export function ScoreCell({ row }: { row: FeatureRow }) {
  if (row.score_state !== 'scored' || row.score === null) {
    return (
      <span data-testid="feature-score" data-state={row.score_state} className="text-slate-500 text-xs italic"
            title={`${row.active_samples} active samples, ${row.held_out_positives} held-out positives`}>
        {unscoredText(row.score_state)}
      </span>
    );
  }
  return (
    <span data-testid="feature-score" data-state="scored" className="text-blue-400 tabular-nums whitespace-nowrap"
          title={`held-out F1 of its top tokens; 95% interval ${withInterval(row.score, row.score_low, row.score_high)}; `
            + `${row.active_samples} active samples, ${row.held_out_positives} held-out positives`}>
      {fixed(row.score)} <span className="text-slate-500 text-xs">
        ({row.score_low == null ? '?' : fixed(row.score_low)}–{row.score_high == null ? '?' : fixed(row.score_high)})</span>
    </span>
  );
}

/** Detection and fuzzing of a feature's explanation, as small tags (nothing when it was not judged). */
export function JudgeTags({ row }: { row: FeatureRow }) {
  const tags = ([['detection', row.detection, row.detection_low, row.detection_high],
    ['fuzzing', row.fuzzing, row.fuzzing_low, row.fuzzing_high]] as const).filter(([, v]) => v !== null);
  if (tags.length === 0) return null;
  return (
    <span className="flex gap-1 mt-1" data-testid="feature-judge-tags">
      {tags.map(([name, value, low, high]) => (
        <span key={name} className="px-1.5 py-0.5 rounded bg-purple-900/30 text-purple-300 text-xs tabular-nums whitespace-nowrap"
              title={`${name}: balanced accuracy of a judge reading the explanation, 95% interval`}>
          {name} {withInterval(value as number, low, high)}</span>
      ))}
    </span>
  );
}
