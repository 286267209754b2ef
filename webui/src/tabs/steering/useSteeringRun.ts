// One steering comparison at a time: POST /api/steering/generate with stream: true, then the job's
// events on the shared stream: `steering.token` (a piece of one side), `steering.completed` (the
// result) and `job.updated` (failed / cancelled, or completed when the result event was missed).
import { useCallback, useEffect, useRef, useState } from 'react';

import { apiGet, apiPost, errorMessage } from '../../api/client';
import type { Accepted, EventOf, Job, SteeringRequest, SteeringResult } from '../../api/types';
import { useEventStream } from '../../hooks/useEventStream';

export type RunStatus = 'idle' | 'starting' | 'running' | 'completed' | 'failed' | 'cancelled';
export type SideName = 'unsteered' | 'steered';

export interface SteeringRun {
  status: RunStatus;
  jobId: string | null;
  /** The prompt this run continues. */
  prompt: string;
  /** Pieces streamed so far, by token index (a missed event leaves a hole, filled by the result). */
  pieces: Record<SideName, string[]>;
  /** Number of `steering.token` events received per side. */
  streamed: Record<SideName, number>;
  /** This run's result (null while it runs). */
  result: SteeringResult | null;
  /** The latest finished result, kept while a new run streams (its metrics stay visible). */
  lastResult: SteeringResult | null;
  error: string | null;
}

const EMPTY = { unsteered: [] as string[], steered: [] as string[] };
const POLL_MS = 3000;
const BUFFER = 20000;
// The events a streamed run follows: its tokens, its result, and its job's end.
const FOLLOWED = ['steering.token', 'steering.completed', 'job.updated'] as const;
type SteeringEvent = EventOf<(typeof FOLLOWED)[number]>;

export function useSteeringRun(onFailed?: (message: string) => void) {
  const { subscribe } = useEventStream();
  const [run, setRun] = useState<SteeringRun>({
    status: 'idle', jobId: null, prompt: '', pieces: EMPTY, streamed: { unsteered: 0, steered: 0 }, result: null, lastResult: null,
    error: null });
  const job = useRef<string | null>(null);
  const starting = useRef(false);
  // Events that arrived while the POST was in flight (the job id was not known yet).
  const early = useRef<SteeringEvent[]>([]);
  // Token pieces are gathered here and rendered once per animation frame.
  const pieces = useRef<Record<SideName, string[]>>({ unsteered: [], steered: [] });
  const streamed = useRef({ unsteered: 0, steered: 0 });
  const frame = useRef<number | null>(null);
  const failedRef = useRef(onFailed);
  failedRef.current = onFailed;

  const flush = useCallback(() => {
    frame.current = null;
    setRun((r) => (r.status === 'running' || r.status === 'starting' ? {
      ...r, pieces: { unsteered: [...pieces.current.unsteered], steered: [...pieces.current.steered] },
      streamed: { ...streamed.current } } : r));
  }, []);

  const finish = useCallback((result: SteeringResult) => {
    if (frame.current !== null) window.cancelAnimationFrame(frame.current);
    frame.current = null;
    job.current = null;
    setRun((r) => ({ ...r, status: 'completed', result, lastResult: result, streamed: { ...streamed.current },
      pieces: { unsteered: result.unsteered.tokens, steered: result.steered.tokens }, error: null }));
  }, []);

  const fail = useCallback((message: string, cancelled = false) => {
    if (frame.current !== null) window.cancelAnimationFrame(frame.current);
    frame.current = null;
    job.current = null;
    setRun((r) => ({ ...r, status: cancelled ? 'cancelled' : 'failed', error: message,
      pieces: { unsteered: [...pieces.current.unsteered], steered: [...pieces.current.steered] },
      streamed: { ...streamed.current } }));
    if (!cancelled) failedRef.current?.(message);
  }, []);

  const fetchResult = useCallback(async (id: string) => {
    try {
      const found = await apiGet<Job>(`/api/jobs/${encodeURIComponent(id)}`);
      if (job.current !== id) return;
      if (found.status === 'completed' && found.result) finish(found.result as SteeringResult);
      else if (found.status === 'cancelled') fail('Stopped', true);
      else if (found.status === 'failed') fail(found.error?.message ?? 'The generation failed');
    } catch (err) {
      console.debug('[steering] could not read the job', id, err);
    }
  }, [finish, fail]);

  const handle = useCallback((event: SteeringEvent) => {
    const id = event.type === 'job.updated' ? event.data.id : event.data.job_id;
    if (job.current === null) {
      if (starting.current) {
        early.current.push(event);
        if (early.current.length > BUFFER) early.current.shift();
      }
      return;
    }
    if (id !== job.current) return;
    if (event.type === 'steering.token') {
      const token = event.data;
      pieces.current[token.side][token.index] = token.text;
      streamed.current[token.side] += 1;
      if (frame.current === null) frame.current = window.requestAnimationFrame(flush);
    } else if (event.type === 'steering.completed') {
      // The API documents the result as an open object (SteeringResult is the UI's reading of it).
      finish(event.data.result as unknown as SteeringResult);
    } else {
      const updated = event.data;
      if (updated.status === 'completed') void fetchResult(id);
      else if (updated.status === 'cancelled') fail('Stopped', true);
      else if (updated.status === 'failed') fail(updated.error?.message ?? 'The generation failed');
    }
  }, [flush, finish, fail, fetchResult]);

  useEffect(() => {
    const offs = FOLLOWED.map((type) => subscribe(type, handle));
    return () => {
      offs.forEach((off) => off());
      if (frame.current !== null) window.cancelAnimationFrame(frame.current);
    };
  }, [subscribe, handle]);

  // A completion missed by the stream (e.g. a reconnect) is still noticed.
  useEffect(() => {
    if (run.status !== 'running' || !run.jobId) return undefined;
    const id = run.jobId;
    const timer = window.setInterval(() => void fetchResult(id), POLL_MS);
    return () => window.clearInterval(timer);
  }, [run.status, run.jobId, fetchResult]);

  const start = useCallback(async (request: Omit<SteeringRequest, 'stream'>) => {
    if (starting.current || job.current) return;
    starting.current = true;
    early.current = [];
    pieces.current = { unsteered: [], steered: [] };
    streamed.current = { unsteered: 0, steered: 0 };
    setRun((r) => ({ ...r, status: 'starting', jobId: null, prompt: request.prompt, pieces: EMPTY, streamed: { unsteered: 0, steered: 0 },
      result: null, error: null }));
    try {
      const accepted = await apiPost<Accepted>('/api/steering/generate', { ...request, stream: true });
      job.current = accepted.job_id;
      setRun((r) => ({ ...r, status: 'running', jobId: accepted.job_id }));
      const buffered = early.current;
      early.current = [];
      for (const event of buffered) handle(event);
    } catch (err) {
      fail(errorMessage(err));
    } finally {
      starting.current = false;
      early.current = [];
    }
  }, [handle, fail]);

  const cancel = useCallback(async () => {
    const id = job.current;
    if (!id) return;
    try {
      await apiPost<Job>(`/api/jobs/${encodeURIComponent(id)}/cancel`);
    } catch (err) {
      console.debug('[steering] cancel failed', err);
    }
  }, []);

  return { run, start, cancel };
}
