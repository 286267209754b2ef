// A resource list kept live: loaded when the event stream (re)opens, reloaded (debounced) when one
// of the resource's events arrives or a job on that resource changes state.
import { useCallback, useEffect, useRef, useState } from 'react';

import { apiGet } from '../api/client';
import type { StreamEventType } from '../api/types';
import { useEventStream } from './useEventStream';

export interface ResourceList<T> {
  items: T[];
  loaded: boolean;
  error: string | null;
  reload: () => Promise<void>;
}

export function useResourceList<T>(path: string, eventTypes: StreamEventType[], targetTypes: string[]): ResourceList<T> {
  const [items, setItems] = useState<T[]>([]);
  const [loaded, setLoaded] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const { generation, subscribe } = useEventStream();
  const pending = useRef<number | undefined>(undefined);
  const events = eventTypes.join(',');  // a string, so a new array each render does not resubscribe
  const targets = targetTypes.join(',');

  const reload = useCallback(async () => {
    try {
      setItems(await apiGet<T[]>(path, { timeoutMs: 10000 }));
      setLoaded(true);
      setError(null);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  }, [path]);

  const soon = useCallback(() => {
    window.clearTimeout(pending.current);
    pending.current = window.setTimeout(() => void reload(), 100);
  }, [reload]);

  useEffect(() => {
    if (generation > 0) void reload();
  }, [generation, reload]);

  useEffect(() => {
    const offs = (events.split(',') as StreamEventType[]).map((type) => subscribe(type, soon));
    offs.push(subscribe('job.updated', (event) => {
      const job = event.data;
      if (job.target && targets.split(',').includes(job.target.type)) soon();
    }));
    return () => {
      offs.forEach((off) => off());
      window.clearTimeout(pending.current);
    };
  }, [subscribe, soon, events, targets]);

  return { items, loaded, error, reload };
}
