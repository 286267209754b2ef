import { Cpu, Trash2, X } from 'lucide-react';
import { useState } from 'react';

import { errorMessage } from '../../api/client';
import { PageTitle } from '../../components/Card';
import { EmptyState } from '../../components/EmptyState';
import { ResourceRows } from '../../components/ResourceRows';
import { describeExcluded } from '../../components/SpecialTokens';
import { useToast } from '../../components/Toasts';
import { useDatasets } from '../../hooks/useDatasets';
import { useJobs } from '../../hooks/useJobs';
import { useActivationSets, useModels } from '../../hooks/useModels';
import { useConfirmedDelete } from '../../hooks/useRequest';
import { formatBytes } from '../datasets/format';
import { ArchitectureModal } from './ArchitectureModal';
import { ExtractModal } from './ExtractModal';
import { ModelDownloadForm } from './ModelDownloadForm';
import { ModelRow } from './ModelRow';

export function ModelsTab() {
  const { models, loaded, reload } = useModels();
  const { sets, reload: reloadSets } = useActivationSets();
  const { datasets } = useDatasets();
  const { byId, cancel } = useJobs();
  const { push } = useToast();
  const remove = useConfirmedDelete();
  const [architectureOf, setArchitectureOf] = useState<string | null>(null);
  const [extractFrom, setExtractFrom] = useState<string | null>(null);
  const names = Object.fromEntries([...models.map((m) => [m.id, m.name]), ...datasets.map((d) => [d.id, d.name])]);

  const archModel = models.find((m) => m.id === architectureOf);
  const extractModel = models.find((m) => m.id === extractFrom);
  return (
    <div data-testid="tab-models" className="space-y-6">
      <PageTitle>Model Management</PageTitle>
      <ModelDownloadForm onStarted={() => void reload()} />
      <ResourceRows items={models} loaded={loaded} testId="model-list"
                    empty={<EmptyState icon={Cpu} iconClassName="text-purple-400" title="No models yet"
                                       description="Models you download from Hugging Face will appear here." />}
                    row={(model) => (
                      <ModelRow model={model} job={model.job_id ? byId[model.job_id] : undefined}
                                onArchitecture={() => setArchitectureOf(model.id)} onExtract={() => setExtractFrom(model.id)}
                                onDelete={() => remove(`/api/models/${model.id}`, `Delete ${model.name}?`, reload)} />
                    )} />
      {sets.length > 0 && (
        <section className="bg-slate-900/50 border border-slate-800 rounded-lg p-6" data-testid="activation-sets">
          <h3 className="text-lg font-semibold mb-4">Activation Sets</h3>
          <div className="space-y-2">
            {sets.map((s) => (
              <div key={s.id} className="flex items-center justify-between gap-4 p-3 bg-slate-800/30 rounded-lg"
                   data-testid="activation-set" data-activation-id={s.id} data-status={s.status}>
                <div className="text-sm">
                  <div className="font-medium">{names[s.model_id] ?? s.model_id} × {names[s.dataset_id] ?? s.dataset_id}</div>
                  <div className="text-slate-400">
                    Layers {s.config.layers.join(', ')} • {s.config.hook_types.join(', ')}
                    {s.manifest && ` • ${s.manifest.tokens.toLocaleString('en-US')} tokens • ${formatBytes(s.size_bytes)}`}
                    {s.status === 'extracting' && ' • extracting...'}
                    {s.error && ` • ${s.error.message}`}
                  </div>
                  {s.status === 'ready' && (
                    <div className="text-slate-500" data-testid="activation-set-special">
                      {describeExcluded(s.excluded_token_ids)}</div>
                  )}
                </div>
                {/* A cancelled extraction leaves no set: its row goes (the jobs panel keeps the record). */}
                {s.actions.includes('cancel') && s.job_id && (
                  <button type="button" aria-label="Cancel extraction" title="Cancel" data-testid="activation-set-cancel"
                          className="p-1 text-slate-400 hover:text-red-400"
                          onClick={() => void cancel(s.job_id as string).catch((err) =>
                            push({ type: 'error', title: 'Not cancelled', message: errorMessage(err) }))}>
                    <X className="w-4 h-4" />
                  </button>
                )}
                {s.actions.includes('delete') && (
                  <button type="button" aria-label="Delete activation set" className="p-1 text-slate-500 hover:text-red-400"
                          onClick={() => remove(`/api/activations/${s.id}`, 'Delete this activation set?', reloadSets)}>
                    <Trash2 className="w-4 h-4" />
                  </button>
                )}
              </div>
            ))}
          </div>
        </section>
      )}
      {archModel && <ArchitectureModal model={archModel} onClose={() => setArchitectureOf(null)} />}
      {extractModel && <ExtractModal model={extractModel} datasets={datasets} onClose={() => setExtractFrom(null)} />}
    </div>
  );
}
