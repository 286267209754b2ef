// Polls GET /api/health every 5 s (one poll in flight at a time; a hung server times out).
import { useCallback, useEffect, useRef, useState } from 'react';

import { ApiError, apiGet } from '../api/client';
import type { Health } from '../api/types';

export const HEALTH_INTERVAL_MS = 5000;
const HEALTH_TIMEOUT_MS = 4000;

export interface HealthState {
  health: Health | null;
  /** null until the first poll answers; then whether the last poll succeeded. */
  ok: boolean | null;
  consecutiveFailures: number;
  /** Date.now() of the first failure of the current failing run, else null. */
  failingSince: number | null;
  lastError: ApiError | null;
  lastCheckedAt: number | null;
}

export interface UseHealth extends HealthState {
  /** Poll now (and restart the 5 s cadence from here). */
  refresh: () => void;
}

const INITIAL: HealthState = {
  health: null, ok: null, consecutiveFailures: 0, failingSince: null, lastError: null, lastCheckedAt: null,
};

export function useHealth({ paused = false, authVersion = 0, intervalMs = HEALTH_INTERVAL_MS } = {}): UseHealth {
  const [state, setState] = useState<HealthState>(INITIAL);
  const timer = useRef<number | undefined>(undefined);
  const inFlight = useRef<AbortController | null>(null);
  const alive = useRef(true);
  const pausedRef = useRef(paused);
  pausedRef.current = paused;

  const schedule = useCallback((poll: () => void) => {
    if (timer.current !== undefined) window.clearTimeout(timer.current);
    timer.current = window.setTimeout(poll, intervalMs);
  }, [intervalMs]);

  const poll = useCallback(async () => {
    if (timer.current !== undefined) {
      window.clearTimeout(timer.current);
      timer.current = undefined;
    }
    if (pausedRef.current || inFlight.current) return;
    const controller = new AbortController();
    inFlight.current = controller;
    try {
      const health = await apiGet<Health>('/api/health', { signal: controller.signal, timeoutMs: HEALTH_TIMEOUT_MS });
      if (!alive.current || controller.signal.aborted) return;
      setState({ health, ok: true, consecutiveFailures: 0, failingSince: null, lastError: null, lastCheckedAt: Date.now() });
    } catch (err) {
      if (!alive.current || controller.signal.aborted) return;
      const error = err instanceof ApiError ? err : new ApiError('NETWORK_ERROR', String(err), 0);
      console.debug('[health] check failed:', error.code, error.message);
      setState((prev) => ({
        ...prev,
        ok: false,
        consecutiveFailures: prev.consecutiveFailures + 1,
        failingSince: prev.failingSince ?? Date.now(),
        lastError: error,
        lastCheckedAt: Date.now(),
      }));
    } finally {
      if (inFlight.current === controller) inFlight.current = null;
      if (alive.current && !pausedRef.current && !controller.signal.aborted) schedule(() => void poll());
    }
  }, [schedule]);

  useEffect(() => {
    alive.current = true;
    if (!paused) void poll();
    return () => {
      if (timer.current !== undefined) window.clearTimeout(timer.current);
      timer.current = undefined;
      inFlight.current?.abort();
      inFlight.current = null;
    };
  }, [paused, authVersion, poll]);

  useEffect(() => () => {
    alive.current = false;
  }, []);

  const refresh = useCallback(() => void poll(), [poll]);
  return { ...state, refresh };
}
