// Live device metrics: the server's recent history once, then `system.metrics` events from the shared
// stream (the server samples only while someone listens, so an open page is what keeps it going).
import { useEffect, useState } from 'react';

import { apiGet } from '../api/client';
import type { MetricsSample, SystemMetrics } from '../api/types';
import { useEventStream } from './useEventStream';

export const WINDOW_S = 300;

export interface MetricsState {
  latest: MetricsSample | null;
  history: MetricsSample[];
}

function keepWindow(samples: MetricsSample[]): MetricsSample[] {
  const newest = samples.length ? samples[samples.length - 1].timestamp : 0;
  return samples.filter((s) => s.timestamp >= newest - WINDOW_S);
}

export function useSystemMetrics({ generation, paused }: { generation: number; paused: boolean }): MetricsState {
  const { subscribe } = useEventStream();
  const [state, setState] = useState<MetricsState>({ latest: null, history: [] });

  useEffect(() => {
    if (paused || generation === 0) return;
    let cancelled = false;
    apiGet<SystemMetrics>('/api/system/metrics')
      .then((data) => {
        if (cancelled) return;
        setState((prev) => {
          const merged = [...data.history, ...prev.history.filter((s) => s.timestamp > (data.latest?.timestamp ?? 0))];
          const history = keepWindow(merged);
          return { latest: history[history.length - 1] ?? null, history };
        });
      })
      .catch((err) => console.debug('[metrics] history unavailable', err));
    return () => {
      cancelled = true;
    };
  }, [generation, paused]);

  useEffect(() => subscribe('system.metrics', (event) => {
    const sample = event.data;
    setState((prev) => {
      if (prev.latest && sample.timestamp <= prev.latest.timestamp) return prev;
      return { latest: sample, history: keepWindow([...prev.history, sample]) };
    });
  }), [subscribe]);

  return state;
}
