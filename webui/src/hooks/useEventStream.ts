// ONE EventSource to /api/events, shared by the whole app.
//
// - Tracks the id of the last event seen; every (re)connection this code makes itself opens
//   `/api/events?last_event_id=<id>`, so the server replays exactly what was missed.
// - On any error the EventSource is closed and reopened by us with backoff 1, 2, 4, 8, 10 s
//   (the browser's own retry would not carry the id as a query parameter, nor back off).
// - `generation` increments every time the stream opens: consumers reload their lists then.
// - subscribe(type | '*', handler): named events get a listener per subscribed type
//   (job.updated and job.progress always); '*' receives every event that has a listener.
//   Events are the API's typed union (StreamEvent, generated from its OpenAPI document): a handler
//   for one type gets that type's payload, no casts.
import { createContext, createElement, useCallback, useContext, useEffect, useMemo, useRef, useState } from 'react';
import type { ReactNode } from 'react';

import type { EventOf, StreamEvent, StreamEventType } from '../api/types';

export type StreamState = 'connecting' | 'open' | 'closed';
export type StreamHandler<E extends StreamEvent = StreamEvent> = (event: E, type: string) => void;
/** What `subscribe` accepts: one event type (the handler gets that event) or '*' (any event). */
export type Subscribable = StreamEventType | '*';
type EventFor<K extends Subscribable> = K extends StreamEventType ? EventOf<K> : StreamEvent;

export interface EventStreamApi {
  state: StreamState;
  /** Increments each time the stream opens (first connection = 1). */
  generation: number;
  subscribe: <K extends Subscribable>(type: K, handler: StreamHandler<EventFor<K>>) => () => void;
  /** Reconnect now (resetting the backoff) if the stream is waiting to retry. */
  reconnect: () => void;
  lastEventId: () => number | null;
}

export const STREAM_URL = '/api/events';
export const BACKOFF_MS = [1000, 2000, 4000, 8000, 10000] as const;
const ALWAYS = ['job.updated', 'job.progress', 'message'];

const EventStreamContext = createContext<EventStreamApi | null>(null);

interface ProviderProps {
  children: ReactNode;
  /** While true (e.g. the API wants a token) no connection is attempted. */
  paused?: boolean;
  /** A change forces a fresh connection (e.g. after a token was accepted). */
  authVersion?: number;
}

export function EventStreamProvider({ children, paused = false, authVersion = 0 }: ProviderProps) {
  const [state, setState] = useState<StreamState>(paused ? 'closed' : 'connecting');
  const [generation, setGeneration] = useState(0);

  const handlers = useRef(new Map<string, Set<StreamHandler>>());
  const source = useRef<EventSource | null>(null);
  const attached = useRef(new Set<string>());
  const lastId = useRef<number | null>(null);
  const attempt = useRef(0);
  const timer = useRef<number | undefined>(undefined);
  const pausedRef = useRef(paused);
  pausedRef.current = paused;

  const deliver = useCallback((type: string, message: MessageEvent) => {
    let payload: StreamEvent;
    try {
      payload = JSON.parse(String(message.data)) as StreamEvent;
    } catch {
      console.debug('[events] ignoring a message that is not JSON', type);
      return;
    }
    const id = Number.parseInt(message.lastEventId, 10);
    const eventId = Number.isFinite(id) ? id : typeof payload.id === 'number' ? payload.id : NaN;
    if (Number.isFinite(eventId) && (lastId.current === null || eventId > lastId.current)) lastId.current = eventId;
    for (const key of [type, '*']) {
      const set = handlers.current.get(key);
      if (!set) continue;
      for (const handler of [...set]) {
        try {
          handler(payload, type);
        } catch (err) {
          console.warn(`[events] a ${type} handler failed`, err);
        }
      }
    }
  }, []);

  const attach = useCallback((es: EventSource, type: string) => {
    if (attached.current.has(type)) return;
    attached.current.add(type);
    es.addEventListener(type, (ev) => {
      if (source.current === es) deliver(type, ev as MessageEvent);
    });
  }, [deliver]);

  const close = useCallback(() => {
    if (timer.current !== undefined) {
      window.clearTimeout(timer.current);
      timer.current = undefined;
    }
    if (source.current) {
      source.current.close();
      source.current = null;
    }
    attached.current = new Set();
  }, []);

  const connect = useCallback(() => {
    close();
    if (pausedRef.current) {
      setState('closed');
      return;
    }
    setState('connecting');
    const url = lastId.current === null ? STREAM_URL : `${STREAM_URL}?last_event_id=${lastId.current}`;
    const es = new EventSource(url);
    source.current = es;
    for (const type of ALWAYS) attach(es, type);
    for (const type of handlers.current.keys()) if (type !== '*') attach(es, type);
    es.onopen = () => {
      if (source.current !== es) return;
      attempt.current = 0;
      setState('open');
      setGeneration((g) => g + 1);
    };
    es.onerror = () => {
      if (source.current !== es) return;
      // Expected when the server restarts or goes away: reconnect on our own schedule.
      es.close();
      source.current = null;
      attached.current = new Set();
      const delay = BACKOFF_MS[Math.min(attempt.current, BACKOFF_MS.length - 1)];
      attempt.current += 1;
      console.debug(`[events] stream interrupted; reconnecting in ${delay / 1000}s`);
      setState('connecting');
      timer.current = window.setTimeout(() => {
        timer.current = undefined;
        connect();
      }, delay);
    };
  }, [attach, close]);

  // (Re)connect on mount, when un-paused and when the token changes; close when paused/unmounted.
  useEffect(() => {
    if (paused) {
      close();
      setState('closed');
      return undefined;
    }
    attempt.current = 0;
    connect();
    return () => close();
  }, [paused, authVersion, connect, close]);

  const subscribe = useCallback(<K extends Subscribable>(type: K, handler: StreamHandler<EventFor<K>>) => {
    let set = handlers.current.get(type);
    if (!set) {
      set = new Set();
      handlers.current.set(type, set);
    }
    // Delivery is keyed by the SSE `event:` name, which is the payload's `type`: only events of
    // `type` reach this handler.
    set.add(handler as StreamHandler);
    if (type !== '*' && source.current) attach(source.current, type);
    return () => {
      set?.delete(handler as StreamHandler);
    };
  }, [attach]);

  const reconnect = useCallback(() => {
    if (pausedRef.current) return;
    if (source.current) return; // open, or a connection attempt is already under way
    attempt.current = 0;
    connect();
  }, [connect]);

  const lastEventId = useCallback(() => lastId.current, []);

  const value = useMemo<EventStreamApi>(() => ({ state, generation, subscribe, reconnect, lastEventId }),
    [state, generation, subscribe, reconnect, lastEventId]);
  return createElement(EventStreamContext.Provider, { value }, children);
}

export function useEventStream(): EventStreamApi {
  const ctx = useContext(EventStreamContext);
  if (!ctx) throw new Error('useEventStream must be used inside <EventStreamProvider>');
  return ctx;
}

/** Calls `handler` for every event of `type` ('*' for all) while the component is mounted. */
export function useStreamEvent<K extends Subscribable>(type: K, handler: StreamHandler<EventFor<K>>): void {
  const { subscribe } = useEventStream();
  const ref = useRef(handler);
  ref.current = handler;
  useEffect(() => subscribe(type, (event: EventFor<K>, t) => ref.current(event, t)), [subscribe, type]);
}
