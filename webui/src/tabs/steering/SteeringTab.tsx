import { Zap } from 'lucide-react';
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';

import { apiGet } from '../../api/client';
import type { FeatureExtraction, Training } from '../../api/types';
import { Card, PageTitle } from '../../components/Card';
import { EmptyState } from '../../components/EmptyState';
import { selectClass } from '../../components/Form';
import { useDatasets } from '../../hooks/useDatasets';
import { useEventStream } from '../../hooks/useEventStream';
import { useModels, useTrainings } from '../../hooks/useModels';
import { SteeringWorkspace } from './SteeringWorkspace';

const CHOSEN_KEY = 'mistudio.steering.sae';

/** Model Steering (pictures 28-33): pick an SAE whose features were extracted, then steer. */
export function SteeringTab() {
  const { trainings, loaded } = useTrainings();
  const { models } = useModels();
  const { datasets } = useDatasets();
  const { subscribe } = useEventStream();
  // A stopped run exports what it learnt, so it steers like a completed one (as in the Features tab).
  const finished = useMemo(() => trainings.filter((t) => t.status === 'completed' || t.status === 'stopped'),
    [trainings]);
  // Feature summaries of the finished trainings: only SAEs with extracted features can be steered.
  const [summaries, setSummaries] = useState<Record<string, FeatureExtraction | null>>({});
  const [chosenId, setChosenId] = useState(() => window.sessionStorage.getItem(CHOSEN_KEY) ?? '');

  const requested = useRef(new Set<string>());
  const check = useCallback((ids: string[]) => {
    for (const id of ids) {
      requested.current.add(id);
      apiGet<FeatureExtraction>(`/api/training/${id}/features/summary`)
        .then((summary) => setSummaries((s) => ({ ...s, [id]: summary })))
        .catch(() => setSummaries((s) => ({ ...s, [id]: null })));
    }
  }, []);
  const ids = finished.map((t) => t.id).join(',');
  useEffect(() => {
    const unknown = ids ? ids.split(',').filter((id) => !requested.current.has(id)) : [];
    if (unknown.length) check(unknown);
  }, [ids, check]);
  useEffect(() => subscribe('features.updated', (event) => {
    check([event.data.training_id]);
  }), [subscribe, check]);

  const ready = finished.filter((t) => summaries[t.id]?.status === 'ready');
  const checked = finished.every((t) => t.id in summaries);
  const training: Training | undefined = ready.find((t) => t.id === chosenId) ?? ready[0];
  const choose = (id: string) => {
    setChosenId(id);
    window.sessionStorage.setItem(CHOSEN_KEY, id);
  };
  const name = (list: { id: string; name: string }[], id: string | null) =>
    (id ? list.find((x) => x.id === id)?.name : undefined) ?? id ?? 'imported';
  const waiting = finished.length - ready.length;

  return (
    <div data-testid="tab-steering" className="space-y-6">
      <PageTitle>Model Steering</PageTitle>
      {loaded && checked && ready.length === 0 ? (
        <EmptyState icon={Zap} iconClassName="text-yellow-400" title="No SAEs to steer yet"
                    description={waiting > 0
                      ? `${waiting} trained SAE${waiting === 1 ? ' is' : 's are'} waiting: extract ${waiting === 1 ? 'its' : 'their'} features in the Features tab, then steer with them here.`
                      : 'Train an SAE in the Training tab and extract its features in the Features tab, then steer the model with them here.'} />
      ) : training && (
        <>
          <Card title="Select SAE to Steer" testId="steering-card">
            <select data-testid="steering-sae-select" aria-label="SAE" value={training.id}
                    onChange={(e) => choose(e.target.value)} className={`${selectClass} text-lg py-3`}>
              {ready.map((t) => (
                <option key={t.id} value={t.id}>
                  {t.encoder_type} SAE • {name(models, t.model_id)} • {name(datasets, t.dataset_id)} • Layer {t.layer}
                  {t.hook_type !== 'residual' ? ` ${t.hook_type}` : ''}
                </option>
              ))}
            </select>
            <div className="grid grid-cols-4 gap-4 mt-3 text-sm" data-testid="steering-sae-chips">
              {[['Model', name(models, training.model_id)], ['Dataset', name(datasets, training.dataset_id)],
                ['Hook', `layer ${training.layer} • ${training.hook_type}`],
                ['Features', summaries[training.id]?.summary
                  ? `${summaries[training.id]!.summary!.alive?.toLocaleString('en-US') ?? '—'} live of ${summaries[training.id]!.summary!.features?.toLocaleString('en-US') ?? '—'}`
                  : '—']].map(([label, value]) => (
                <div key={label} className="bg-slate-800/30 rounded px-3 py-2 truncate" title={value}>
                  <span className="text-slate-400">{label}:</span> <span className="text-slate-200">{value}</span>
                </div>
              ))}
            </div>
          </Card>
          <SteeringWorkspace key={training.id} training={training} model={models.find((m) => m.id === training.model_id)} />
        </>
      )}
    </div>
  );
}
