import { Activity, CircleCheck, CircleX, Cpu, LoaderCircle, Trash2 } from 'lucide-react';

import type { Job, Model } from '../../api/types';
import { isActive } from '../../api/types';
import { ProgressBar } from '../../components/ProgressBar';
import { modelSubline, shortName } from './format';

const PILLS: Record<Model['status'], string> = {
  ready: 'bg-emerald-900/30 text-emerald-400', downloading: 'bg-slate-800 text-slate-300',
  loading: 'bg-slate-800 text-slate-300', quantizing: 'bg-yellow-900/30 text-yellow-400', error: 'bg-red-900/30 text-red-400',
};

function StatusIcon({ status }: { status: Model['status'] }) {
  if (status === 'ready') return <CircleCheck className="w-5 h-5 text-emerald-400" aria-hidden="true" />;
  if (status === 'quantizing') return <Activity className="w-5 h-5 text-yellow-400" aria-hidden="true" />;
  if (status === 'error') return <CircleX className="w-5 h-5 text-red-400" aria-hidden="true" />;
  return <LoaderCircle className="w-5 h-5 text-blue-400 animate-spin" aria-hidden="true" />;
}

export function ModelRow({ model, job, onArchitecture, onExtract, onDelete }: {
  model: Model; job: Job | undefined; onArchitecture: () => void; onExtract: () => void; onDelete: () => void;
}) {
  // What may be done now comes from the API (`actions`), not from rules kept here.
  const running = job && isActive(job.status) && model.actions.includes('cancel');
  return (
    <div className="bg-slate-900/50 border border-slate-800 rounded-lg p-6" data-testid="model-row"
         data-model-id={model.id} data-status={model.status}>
      <div className="flex items-center justify-between gap-4">
        <button type="button" className="flex items-center gap-4 min-w-0 text-left disabled:cursor-default"
                onClick={onArchitecture} disabled={!model.actions.includes('architecture')} data-testid="model-open-architecture">
          <Cpu className="w-8 h-8 text-purple-400 shrink-0" aria-hidden="true" />
          <div className="min-w-0">
            <h3 className="text-lg font-semibold truncate">{shortName(model)}</h3>
            <p className="text-sm text-slate-400">{modelSubline(model)}</p>
          </div>
        </button>
        <div className="flex items-center gap-3 shrink-0">
          {model.actions.includes('extract') && (
            <button type="button" data-testid="model-extract" onClick={onExtract}
                    className="px-4 py-2 bg-purple-600 hover:bg-purple-700 rounded-lg text-sm transition-colors">
              Extract Activations
            </button>
          )}
          <StatusIcon status={model.status} />
          <span className={`px-3 py-1 rounded-full text-sm ${PILLS[model.status]}`} data-testid="model-status">
            {model.status === 'ready' ? 'ready' : model.status.charAt(0).toUpperCase() + model.status.slice(1)}
          </span>
          {model.actions.includes('delete') && (
            <button type="button" aria-label={`Delete ${model.name}`} title="Delete" data-testid="model-delete"
                    onClick={onDelete} className="p-1 text-slate-500 hover:text-red-400 transition-colors">
              <Trash2 className="w-5 h-5" />
            </button>
          )}
        </div>
      </div>
      {running && job && (
        <div className="mt-4" data-testid="model-progress">
          <ProgressBar value={job.progress} color="purple" showPercent
                       label={model.status === 'downloading' ? 'Download Progress' : job.message} />
          {model.status === 'downloading' && job.message && <p className="text-xs text-slate-500 mt-1">{job.message}</p>}
        </div>
      )}
      {model.status === 'error' && model.error && (
        <p className="mt-3 text-sm text-red-400" data-testid="model-error">{model.error.code}: {model.error.message}</p>
      )}
    </div>
  );
}
