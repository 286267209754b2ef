// The dataset list, kept live: loaded when the event stream (re)opens, reloaded when a dataset
// event arrives or a job on a dataset changes state. Progress itself comes from useJobs.
import { useCallback, useEffect, useRef, useState } from 'react';

import { apiGet } from '../api/client';
import type { Dataset, Job, StreamEvent } from '../api/types';
import { useEventStream } from './useEventStream';

export interface DatasetsApi {
  datasets: Dataset[];
  loaded: boolean;
  error: string | null;
  reload: () => Promise<void>;
}

export function useDatasets(): DatasetsApi {
  const [datasets, setDatasets] = useState<Dataset[]>([]);
  const [loaded, setLoaded] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const { generation, subscribe } = useEventStream();
  const pending = useRef<number | undefined>(undefined);

  const reload = useCallback(async () => {
    try {
      setDatasets(await apiGet<Dataset[]>('/api/datasets', { timeoutMs: 10000 }));
      setLoaded(true);
      setError(null);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  }, []);

  // Bursts of events (a job finishing emits several) cause one reload.
  const soon = useCallback(() => {
    window.clearTimeout(pending.current);
    pending.current = window.setTimeout(() => void reload(), 100);
  }, [reload]);

  useEffect(() => {
    if (generation > 0) void reload();
  }, [generation, reload]);

  useEffect(() => {
    const offDataset = subscribe('dataset.updated', soon);
    const offJob = subscribe('job.updated', (event: StreamEvent) => {
      const job = event.data as Job | null;
      if (job?.target?.type === 'dataset') soon();
    });
    return () => {
      offDataset();
      offJob();
      window.clearTimeout(pending.current);
    };
  }, [subscribe, soon]);

  return { datasets, loaded, error, reload };
}
