import { Activity, CircleCheck, CircleX, Database, LoaderCircle, Trash2, X } from 'lucide-react';

import type { Dataset, Job } from '../../api/types';
import { isActive } from '../../api/types';
import { ProgressBar } from '../../components/ProgressBar';
import { formatBytes, skippedRows, sourceLabel } from './format';

const BADGES: Record<Dataset['status'], string> = {
  ready: 'Ready', ingesting: 'Ingesting', downloading: 'Downloading', error: 'Error',
};

function StatusIcon({ status }: { status: Dataset['status'] }) {
  switch (status) {
    case 'ready':
      return <CircleCheck className="w-5 h-5 text-emerald-400" aria-hidden="true" />;
    case 'ingesting':
      return <Activity className="w-5 h-5 text-yellow-400" aria-hidden="true" />;
    case 'downloading':
      return <LoaderCircle className="w-5 h-5 text-blue-400 animate-spin" aria-hidden="true" />;
    default:
      return <CircleX className="w-5 h-5 text-red-400" aria-hidden="true" />;
  }
}

interface Props {
  dataset: Dataset;
  job: Job | undefined;
  onOpen: () => void;
  onCancel: (jobId: string) => void;
  onDelete: () => void;
}

/** One dataset card. Only ready rows open the detail modal: its samples, statistics and tokenization
 * exist only once the import has finished. */
export function DatasetRow({ dataset, job, onOpen, onCancel, onDelete }: Props) {
  const ready = dataset.status === 'ready';
  const skipped = skippedRows(dataset);
  // What may be done now comes from the API (`actions`), not from rules kept here.
  const running = job && isActive(job.status) && dataset.actions.includes('cancel');
  const size = dataset.status === 'downloading' ? 'Downloading...'
    : dataset.status === 'ingesting' ? 'Ingesting...' : formatBytes(dataset.size_bytes);
  return (
    <div data-testid="dataset-row" data-dataset-id={dataset.id} data-status={dataset.status}
         role={ready ? 'button' : undefined} tabIndex={ready ? 0 : undefined}
         onClick={ready ? onOpen : undefined}
         onKeyDown={ready ? (e) => { if (e.key === 'Enter') onOpen(); } : undefined}
         className={`bg-slate-900/50 border border-slate-800 rounded-lg p-6 transition-colors ${
           ready ? 'cursor-pointer hover:bg-slate-900/70 hover:border-slate-700' : ''}`}>
      <div className="flex items-center justify-between gap-4">
        <div className="flex items-center gap-4 min-w-0">
          <Database className="w-8 h-8 text-blue-400 shrink-0" aria-hidden="true" />
          <div className="min-w-0">
            <h3 className="text-lg font-semibold truncate">{dataset.name}</h3>
            <p className="text-sm text-slate-400">
              Source: {sourceLabel(dataset)} • Size: {size}
              {ready && dataset.num_samples !== null && ` • ${dataset.num_samples.toLocaleString('en-US')} samples`}
              {ready && skipped && (
                <span className="text-yellow-400" data-testid="dataset-skipped"
                      title={`Rows with no text in column "${dataset.text_column}" are left out, never kept as empty samples`}>
                  {` • ${skipped}`}
                </span>
              )}
            </p>
          </div>
        </div>
        <div className="flex items-center gap-3 shrink-0">
          <StatusIcon status={dataset.status} />
          <span className="px-3 py-1 bg-slate-800 rounded-full text-sm" data-testid="dataset-status">
            {BADGES[dataset.status]}
          </span>
          {running && job && (
            <button type="button" aria-label="Cancel" title="Cancel"
                    onClick={(e) => { e.stopPropagation(); onCancel(job.id); }}
                    className="p-1 text-slate-400 hover:text-red-400 transition-colors">
              <X className="w-5 h-5" />
            </button>
          )}
          {dataset.actions.includes('delete') && (
            <button type="button" aria-label={`Delete ${dataset.name}`} title="Delete" data-testid="dataset-delete"
                    onClick={(e) => { e.stopPropagation(); onDelete(); }}
                    className="p-1 text-slate-500 hover:text-red-400 transition-colors">
              <Trash2 className="w-5 h-5" />
            </button>
          )}
        </div>
      </div>
      {running && job && (
        <ProgressBar className="mt-4" value={job.progress} color="blue" size="sm" showPercent
                     label={<span data-testid="dataset-row-progress">{job.message || 'Waiting for the worker'}</span>} />
      )}
      {dataset.status === 'error' && dataset.error && (
        <p className="mt-3 text-sm text-red-400" data-testid="dataset-error">
          {dataset.error.code}: {dataset.error.message}
        </p>
      )}
    </div>
  );
}
