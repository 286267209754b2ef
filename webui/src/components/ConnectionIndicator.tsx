import { useEffect, useState } from 'react';

import type { HealthState } from '../hooks/useHealth';
import type { StreamState } from '../hooks/useEventStream';

export type ConnectionState = 'connected' | 'reconnecting' | 'offline';

export const OFFLINE_AFTER_MS = 10_000;

/**
 * connected: the last health check passed and the event stream is open.
 * offline: health has failed for >= 10 s, or two checks in a row failed.
 * reconnecting: anything in between (a first failure, the stream reopening, starting up).
 */
export function connectionState(health: HealthState, stream: StreamState, now: number): ConnectionState {
  const failingFor = health.failingSince === null ? 0 : now - health.failingSince;
  if (health.ok === false && (health.consecutiveFailures >= 2 || failingFor >= OFFLINE_AFTER_MS)) return 'offline';
  if (health.ok === true && stream === 'open') return 'connected';
  return 'reconnecting';
}

const VIEW: Record<ConnectionState, { dot: string; text: string }> = {
  connected: { dot: 'text-emerald-400', text: 'API Connected' },
  reconnecting: { dot: 'text-yellow-400', text: 'Reconnecting…' },
  offline: { dot: 'text-red-400', text: 'Offline' },
};

export function ConnectionIndicator({ health, stream }: { health: HealthState; stream: StreamState }) {
  const [, setTick] = useState(0);
  const state = connectionState(health, stream, Date.now());

  // While not connected, re-evaluate every second (the 10 s offline rule needs a clock).
  useEffect(() => {
    if (state === 'connected') return undefined;
    const timer = window.setInterval(() => setTick((t) => t + 1), 1000);
    return () => window.clearInterval(timer);
  }, [state]);

  const degraded = state === 'connected' && health.health?.status === 'degraded';
  const failing = health.health
    ? Object.entries(health.health.components).filter(([, c]) => !c.ok).map(([name, c]) => `${name}: ${c.detail}`)
    : [];
  let title: string;
  if (state === 'connected') {
    title = degraded ? `Degraded: ${failing.join('; ')}` : `Healthy • API ${health.health?.version ?? ''}`.trim();
  } else if (health.lastError) {
    title = `${health.lastError.message}${stream === 'open' ? '' : ' • event stream reconnecting'}`;
  } else {
    title = stream === 'open' ? 'Checking the API…' : 'Connecting to the event stream…';
  }

  const view = VIEW[state];
  return (
    <span data-testid="connection-status" data-state={state} title={title} role="status"
          className="inline-flex items-center gap-1 whitespace-nowrap">
      <span className={view.dot} aria-hidden="true">●</span>
      <span>{view.text}</span>
      {degraded && <span className="text-yellow-400">(degraded)</span>}
    </span>
  );
}
