import { Zap } from 'lucide-react';
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';

import { apiGet } from '../../api/client';
import type { FeatureExtraction, Training } from '../../api/types';
import { PageTitle } from '../../components/Card';
import { EmptyState } from '../../components/EmptyState';
import { finishedSaes, nameIn, SaeSelect } from '../../components/SaeSelect';
import { useDatasets } from '../../hooks/useDatasets';
import { useEventStream } from '../../hooks/useEventStream';
import { useModels, useTrainings } from '../../hooks/useModels';
import { SteeringWorkspace } from './SteeringWorkspace';

const CHOSEN_KEY = 'mistudio.steering.sae';

/** "120 live of 256": a summary's figures are null for an extraction made before they were measured. */
const featureCount = (summary: FeatureExtraction['summary'] | undefined): string =>
  (summary ? `${summary.alive?.toLocaleString('en-US') ?? '—'} live of ${summary.features?.toLocaleString('en-US') ?? '—'}`
    : '—');

/** Model Steering: pick an SAE whose features were extracted, then steer. */
export function SteeringTab() {
  const { trainings, loaded } = useTrainings();
  const { models } = useModels();
  const { datasets } = useDatasets();
  const { subscribe } = useEventStream();
  const finished = useMemo(() => finishedSaes(trainings), [trainings]);
  // Feature summaries of the finished trainings: the API says which SAEs can steer (`steer` in their
  // extraction's actions: their features were extracted).
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

  const ready = finished.filter((t) => summaries[t.id]?.actions.includes('steer'));
  const checked = finished.every((t) => t.id in summaries);
  const training: Training | undefined = ready.find((t) => t.id === chosenId) ?? ready[0];
  const choose = (id: string) => {
    setChosenId(id);
    window.sessionStorage.setItem(CHOSEN_KEY, id);
  };
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
          <SaeSelect title="Select SAE to Steer" testId="steering-card" selectTestId="steering-sae-select" label="SAE"
                     saes={ready} chosen={training} onChoose={choose} models={models} datasets={datasets}
                     suffix={(t) => (t.hook_type !== 'residual' ? ` ${t.hook_type}` : '')}
                     factsTestId="steering-sae-chips"
                     facts={[['Model', nameIn(models, training.model_id)], ['Dataset', nameIn(datasets, training.dataset_id)],
                       ['Hook', `layer ${training.layer} • ${training.hook_type}`],
                       ['Features', featureCount(summaries[training.id]?.summary)]]} />
          <SteeringWorkspace key={training.id} training={training} model={models.find((m) => m.id === training.model_id)} />
        </>
      )}
    </div>
  );
}
