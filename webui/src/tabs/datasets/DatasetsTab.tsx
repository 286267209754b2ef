import { Database, Plus, X } from 'lucide-react';
import { useEffect, useState } from 'react';

import { errorMessage } from '../../api/client';
import { PageTitle } from '../../components/Card';
import { EmptyState } from '../../components/EmptyState';
import { ResourceRows } from '../../components/ResourceRows';
import { useToast } from '../../components/Toasts';
import { useDatasets } from '../../hooks/useDatasets';
import { useEventStream } from '../../hooks/useEventStream';
import { useJobs } from '../../hooks/useJobs';
import { useConfirmedDelete } from '../../hooks/useRequest';
import { DatasetDetail } from './DatasetDetail';
import { DatasetRow } from './DatasetRow';
import { DownloadForm } from './DownloadForm';
import { UploadForm } from './UploadForm';

const FAILURES: Record<string, string> = {
  'dataset.import': 'Import failed', 'dataset.download': 'Download failed', 'dataset.demo': 'Demo dataset failed',
};

export function DatasetsTab() {
  const { datasets, loaded, reload } = useDatasets();
  const { byId, cancel } = useJobs();
  const [openId, setOpenId] = useState<string | null>(null);
  const { push } = useToast();
  const open = datasets.find((d) => d.id === openId) ?? null;
  const { subscribe } = useEventStream();
  const remove = useConfirmedDelete();
  // The two forms fill a 1440x900 screen: once a dataset exists they fold behind a button so the tab
  // opens on the list; with none they are what the user needs, so they stay open.
  const [adding, setAdding] = useState(false);
  const hasDatasets = datasets.length > 0;
  const formsOpen = loaded && (!hasDatasets || adding);

  // A failed import leaves no row behind (nothing partial is kept), so the reason comes as a toast.
  useEffect(() => subscribe('job.updated', (event) => {
    const job = event.data;
    const title = FAILURES[job.kind];
    if (title && job.status === 'failed') push({ type: 'error', title, message: job.error?.message });
  }), [subscribe, push]);

  return (
    <div data-testid="tab-datasets" className="space-y-6">
      <div className="flex items-center justify-between gap-4">
        <PageTitle>Dataset Management</PageTitle>
        {hasDatasets && (
          <button type="button" data-testid="dataset-add-toggle" aria-expanded={formsOpen} onClick={() => setAdding(!adding)}
                  className="flex items-center gap-2 px-4 py-2 bg-slate-800 hover:bg-slate-700 rounded-lg text-sm transition-colors">
            {adding ? <X className="w-4 h-4" aria-hidden="true" /> : <Plus className="w-4 h-4" aria-hidden="true" />}
            {adding ? 'Close' : 'Add Dataset'}
          </button>
        )}
      </div>
      {/* Hidden, not unmounted: an upload under way keeps going and shows its progress when reopened. */}
      <div className={formsOpen ? 'space-y-6' : 'hidden'} data-testid="dataset-forms">
        <DownloadForm onStarted={() => void reload()} />
        <UploadForm onStarted={() => void reload()} />
      </div>
      <ResourceRows items={datasets} loaded={loaded} testId="dataset-list"
                    empty={<EmptyState icon={Database} iconClassName="text-blue-400" title="No datasets yet"
                                       description="Datasets you download from Hugging Face or import will appear here." />}
                    row={(dataset) => (
                      <DatasetRow dataset={dataset} job={dataset.job_id ? byId[dataset.job_id] : undefined}
                                  onOpen={() => setOpenId(dataset.id)}
                                  onCancel={(jobId) => void cancel(jobId).catch((err) =>
                                    push({ type: 'error', title: 'Not cancelled', message: errorMessage(err) }))}
                                  onDelete={() => remove(`/api/datasets/${dataset.id}`,
                                    `Delete ${dataset.name} and its files?`, reload)} />
                    )} />
      {open && <DatasetDetail dataset={open} onClose={() => setOpenId(null)} onChanged={() => void reload()} />}
    </div>
  );
}
