import { useDatasets } from '../../hooks/useDatasets';
import { useActivationSets, useModels, useTrainings } from '../../hooks/useModels';
import { ImportSaeCard } from './ImportSaeCard';
import { TrainingCard } from './TrainingCard';
import { TrainingForm } from './TrainingForm';

export function TrainingTab() {
  const { datasets } = useDatasets();
  const { models } = useModels();
  const { sets } = useActivationSets();
  const { trainings, loaded, reload } = useTrainings();
  const name = (list: { id: string; name: string }[], id: string) => list.find((x) => x.id === id)?.name ?? id;
  return (
    <div data-testid="tab-training" className="space-y-6">
      <h2 className="text-2xl font-semibold">Training Configuration</h2>
      <TrainingForm datasets={datasets} models={models} sets={sets} onStarted={() => void reload()} />
      <ImportSaeCard models={models} onStarted={() => void reload()} />
      <h3 className="text-xl font-semibold">Training Jobs</h3>
      {loaded && trainings.length === 0 && (
        <p className="text-center text-slate-400 py-8">No training jobs yet. Configure and start training above.</p>
      )}
      <div className="space-y-4" data-testid="training-list">
        {trainings.map((t) => (
          <TrainingCard key={t.id} training={t} title={`${name(models, t.model_id)} + ${t.dataset_id ? name(datasets, t.dataset_id)
                        : `imported from ${t.config.origin ?? 'a file'}`}`}
                        onChanged={() => void reload()} />
        ))}
      </div>
    </div>
  );
}
