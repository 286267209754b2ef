// Recent jobs, kept live: loaded from GET /api/jobs whenever the event stream (re)opens, then
// updated from `job.updated` (the whole job) and `job.progress` (progress and message).
import { createContext, createElement, useCallback, useContext, useEffect, useMemo, useReducer, useRef, useState } from 'react';
import type { ReactNode } from 'react';

import { apiGet, apiPost } from '../api/client';
import type { Job, JobProgress, ProgressEvent } from '../api/types';
import { isActive } from '../api/types';
import { useEventStream } from './useEventStream';

const KEEP = 100; // finished jobs kept in memory (active ones are always kept)
// Each job kind reports progress under its resource's event type (`<resource>.progress`), so a page
// that follows one resource subscribes to its own topic only.
export const PROGRESS_TYPES = ['job.progress', 'dataset.progress', 'model.progress',
  'activations.progress', 'training.progress', 'features.progress'] as const;

type JobMap = Record<string, Job>;

type Action =
  | { type: 'list'; jobs: Job[] }
  | { type: 'upsert'; job: Job }
  | { type: 'progress'; progress: JobProgress };

function newer(incoming: Job, existing: Job | undefined, fromList: boolean): boolean {
  if (!existing) return true;
  if (incoming.updated_at !== existing.updated_at) return incoming.updated_at > existing.updated_at;
  // Same row version: a list reply must not roll back progress a live event already brought.
  return !fromList || incoming.progress >= existing.progress;
}

export function sortJobs(jobs: Iterable<Job>): Job[] {
  return [...jobs].sort((a, b) => (a.created_at === b.created_at ? (a.id < b.id ? 1 : -1)
    : a.created_at < b.created_at ? 1 : -1));
}

function trim(map: JobMap): JobMap {
  const all = sortJobs(Object.values(map));
  if (all.length <= KEEP) return map;
  const kept: JobMap = {};
  all.forEach((job, i) => {
    if (i < KEEP || isActive(job.status)) kept[job.id] = job;
  });
  return kept;
}

function reducer(state: JobMap, action: Action): JobMap {
  switch (action.type) {
    case 'list': {
      let next: JobMap | null = null;
      for (const job of action.jobs) {
        if (newer(job, state[job.id], true)) {
          next ??= { ...state };
          next[job.id] = job;
        }
      }
      return next ? trim(next) : state;
    }
    case 'upsert': {
      if (!newer(action.job, state[action.job.id], false)) return state;
      return trim({ ...state, [action.job.id]: action.job });
    }
    case 'progress': {
      const { job_id: id, progress, message } = action.progress;
      const job = state[id];
      if (!job || !isActive(job.status)) return state;
      return {
        ...state,
        [id]: {
          ...job,
          status: job.status === 'queued' ? 'running' : job.status,
          progress: typeof progress === 'number' ? progress : job.progress,
          message: typeof message === 'string' ? message : job.message,
        },
      };
    }
    default:
      return state;
  }
}

export interface JobsApi {
  /** Newest first. */
  jobs: Job[];
  byId: JobMap;
  runningCount: number;
  queuedCount: number;
  loaded: boolean;
  cancel: (id: string) => Promise<Job>;
  reload: () => Promise<void>;
}

const JobsContext = createContext<JobsApi | null>(null);

export function JobsProvider({ children }: { children: ReactNode }) {
  const [byId, dispatch] = useReducer(reducer, {});
  const [loaded, setLoaded] = useState(false);
  const fetching = useRef(new Set<string>());
  const known = useRef(byId);
  known.current = byId;
  const { generation, subscribe } = useEventStream();

  const reload = useCallback(async () => {
    try {
      const [recent, active] = await Promise.all([
        apiGet<Job[]>('/api/jobs?limit=20', { timeoutMs: 10000 }),
        apiGet<Job[]>('/api/jobs?status=running,queued,paused&limit=50', { timeoutMs: 10000 }),
      ]);
      setLoaded(true);
      dispatch({ type: 'list', jobs: [...recent, ...active] });
    } catch (err) {
      console.debug('[jobs] could not load the job list', err);
    }
  }, []);

  // Load (again) every time the stream opens: nothing between the list and the stream is missed.
  useEffect(() => {
    if (generation > 0) void reload();
  }, [generation, reload]);

  useEffect(() => {
    const offUpdated = subscribe('job.updated', (event) => dispatch({ type: 'upsert', job: event.data }));
    const onProgress = (event: ProgressEvent) => {
      const data = event.data;
      const id = data.job_id;
      if (!known.current[id]) {
        // A job we have not seen (e.g. older than the list): fetch it once.
        if (!fetching.current.has(id)) {
          fetching.current.add(id);
          apiGet<Job>(`/api/jobs/${encodeURIComponent(id)}`, { timeoutMs: 10000 })
            .then((job) => dispatch({ type: 'upsert', job }))
            .catch((err) => console.debug('[jobs] could not load job', id, err))
            .finally(() => fetching.current.delete(id));
        }
        return;
      }
      dispatch({ type: 'progress', progress: data });
    };
    const offProgress = PROGRESS_TYPES.map((type) => subscribe(type, onProgress));
    return () => {
      offUpdated();
      offProgress.forEach((off) => off());
    };
  }, [subscribe]);

  const cancel = useCallback(async (id: string) => {
    const job = await apiPost<Job>(`/api/jobs/${encodeURIComponent(id)}/cancel`);
    dispatch({ type: 'upsert', job });
    return job;
  }, []);

  const value = useMemo<JobsApi>(() => {
    const jobs = sortJobs(Object.values(byId));
    return {
      jobs,
      byId,
      runningCount: jobs.filter((j) => j.status === 'running').length,
      queuedCount: jobs.filter((j) => j.status === 'queued').length,
      loaded,
      cancel,
      reload,
    };
  }, [byId, loaded, cancel, reload]);

  return createElement(JobsContext.Provider, { value }, children);
}

export function useJobs(): JobsApi {
  const ctx = useContext(JobsContext);
  if (!ctx) throw new Error('useJobs must be used inside <JobsProvider>');
  return ctx;
}
