// The SAE a tab works on (Features, Steering): a select of trainings with the chosen one's facts below.
import type { Training } from '../api/types';
import { Card } from './Card';
import { selectClass } from './Form';

/**
 * The trainings that hold a finished SAE: a completed run, or a stopped one (stopping exports what it
 * learnt). This picks which SAEs a tab lists, not which buttons exist: the API applies the same rule
 * when it starts an extraction or a steering run, and what each SAE allows then comes with its
 * feature extraction's `actions`.
 */
export const finishedSaes = (trainings: Training[]): Training[] =>
  trainings.filter((t) => t.status === 'completed' || t.status === 'stopped');

type Named = { id: string; name: string }[];

/** The name of the model or dataset `id` in `list`; an imported SAE has no dataset. */
export const nameIn = (list: Named, id: string | null): string =>
  (id ? list.find((x) => x.id === id)?.name : undefined) ?? id ?? 'imported';

export function SaeSelect({ title, testId, selectTestId, label, saes, chosen, onChoose, models, datasets, suffix,
                            facts, factsTestId }: {
  title: string;
  testId: string;
  selectTestId: string;
  /** The select's accessible name. */
  label: string;
  saes: Training[];
  chosen: Training;
  onChoose: (id: string) => void;
  models: Named;
  datasets: Named;
  /** What an option says after "<encoder> SAE • <model> • <dataset> • Layer <n>". */
  suffix: (t: Training) => string;
  /** The chosen SAE's facts, as [label, value] tiles under the select. */
  facts: [string, string][];
  factsTestId?: string;
}) {
  return (
    <Card title={title} testId={testId}>
      <select data-testid={selectTestId} aria-label={label} value={chosen.id}
              onChange={(e) => onChoose(e.target.value)} className={`${selectClass} text-lg py-3`}>
        {saes.map((t) => (
          <option key={t.id} value={t.id}>
            {`${t.encoder_type} SAE • ${nameIn(models, t.model_id)} • ${nameIn(datasets, t.dataset_id)} • Layer ${t.layer}${suffix(t)}`}
          </option>
        ))}
      </select>
      <div className={`grid ${facts.length === 4 ? 'grid-cols-4' : 'grid-cols-3'} gap-4 mt-3 text-sm`}
           data-testid={factsTestId}>
        {facts.map(([name, value]) => (
          <div key={name} className="bg-slate-800/30 rounded px-3 py-2 truncate" title={value}>
            <span className="text-slate-400">{name}:</span> <span className="text-slate-200">{value}</span>
          </div>
        ))}
      </div>
    </Card>
  );
}
