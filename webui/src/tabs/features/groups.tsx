// A Matryoshka SAE's nested prefix groups (the API's `matryoshka_widths`): prefix g is latents
// [0, widths[g]), so group g holds latents [widths[g-1], widths[g]), what the smaller prefixes could
// not afford. Group 0 holds the most general features.
import type { Training } from '../../api/types';
import { selectClass } from '../../components/Form';

/** The training's group sizes, or null for an SAE that is not a Matryoshka one. */
export function widthsOf(training: Training): number[] | null {
  const widths = training.config.hyperparameters?.matryoshka_widths;
  return training.encoder_type === 'matryoshka_batchtopk' && Array.isArray(widths) && widths.length
    ? (widths as number[]) : null;
}

/** The group (0-based) of latent ``index``: the smallest prefix that holds it. */
export function groupOf(widths: number[] | null | undefined, index: number): number | null {
  if (!widths) return null;
  const group = widths.findIndex((w) => index < w);
  return group < 0 ? null : group;
}

function bounds(widths: number[], group: number): [number, number] {
  return [group > 0 ? widths[group - 1] : 0, widths[group]];
}

export function describeGroup(widths: number[], group: number): string {
  const [start, stop] = bounds(widths, group);
  return `group ${group} (latents ${start}–${stop - 1})`;
}

/** A small tag naming a feature's group; nothing for an SAE without groups. */
export function GroupTag({ group, widths }: { group: number | null | undefined; widths?: number[] | null }) {
  if (group == null) return null;
  return (
    <span data-testid="feature-group" title={widths ? describeGroup(widths, group) : `Matryoshka group ${group}`}
          className="ml-2 px-1.5 py-0.5 text-xs rounded bg-indigo-900/40 text-indigo-300 font-mono">G{group}</span>
  );
}

/** Filter by prefix group: all of them, or one. */
export function GroupFilter({ widths, value, onChange }: {
  widths: number[]; value: number | null; onChange: (group: number | null) => void;
}) {
  return (
    <select data-testid="features-group" aria-label="Matryoshka group" className={`${selectClass} w-64`}
            value={value ?? ''} onChange={(e) => onChange(e.target.value === '' ? null : Number(e.target.value))}>
      <option value="">All groups ({widths[widths.length - 1].toLocaleString('en-US')} latents)</option>
      {widths.map((_, g) => <option key={g} value={g}>{describeGroup(widths, g)}</option>)}
    </select>
  );
}
