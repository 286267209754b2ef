import { Activity, LoaderCircle } from 'lucide-react';
import { useEffect, useRef, useState } from 'react';

import { ApiError, errorMessage } from '../api/client';
import type { Job } from '../api/types';
import { isActive } from '../api/types';
import { useJobs } from '../hooks/useJobs';
import { ProgressBar, formatPercent } from './ProgressBar';
import { StatusPill } from './StatusPill';
import { useToast } from './Toasts';

const SHOWN = 20;
const TICK_MS = 15_000; // relative times ("2 min ago") are redrawn this often while the panel is open

function epoch(iso: string | null): number | null {
  if (!iso) return null;
  const time = new Date(iso).getTime();
  return Number.isNaN(time) ? null : time;
}

/** "just now", "5 min ago", "3 h ago", else the date: coarse on purpose (the browser's clock and the
 * appliance's may differ by seconds; the exact time is in the tooltip). */
function ago(time: number, now: number): string {
  const seconds = Math.max(0, (now - time) / 1000);
  if (seconds < 45) return 'just now';
  if (seconds < 3600) return `${Math.max(1, Math.round(seconds / 60))} min ago`;
  if (seconds < 86_400) return `${Math.round(seconds / 3600)} h ago`;
  return `on ${new Date(time).toLocaleDateString()}`;
}

/** The times of a job, led by the one the list sorts by (queued = created, newest first), then
 * what happened since: started (while it runs) or ended. */
function JobTimes({ job, now }: { job: Job; now: number }) {
  const created = epoch(job.created_at);
  if (created == null) return null;
  const started = epoch(job.started_at);
  const finished = epoch(job.finished_at);
  const active = isActive(job.status);
  const exact = (label: string, time: number) => `${label} ${new Date(time).toLocaleString()}`;
  const tooltip = [exact('Queued', created), started != null && exact('Started', started),
    finished != null && exact('Ended', finished)].filter(Boolean).join('\n');
  return (
    <div data-testid="job-times" title={tooltip} className="mt-0.5 text-xs text-slate-500">
      <time data-testid="job-queued" dateTime={job.created_at}>queued {ago(created, now)}</time>
      {active && started != null && (
        <> • <time dateTime={job.started_at ?? undefined}>started {ago(started, now)}</time></>
      )}
      {!active && finished != null && (
        <> • <time dateTime={job.finished_at ?? undefined}>ended {ago(finished, now)}</time></>
      )}
    </div>
  );
}

function JobRow({ job, now }: { job: Job; now: number }) {
  const { cancel } = useJobs();
  const { push } = useToast();
  const [cancelling, setCancelling] = useState(false);
  const active = isActive(job.status);

  useEffect(() => {
    if (!active) setCancelling(false);
  }, [active]);

  const onCancel = async () => {
    setCancelling(true);
    try {
      await cancel(job.id);
    } catch (err) {
      setCancelling(false);
      if (err instanceof ApiError && err.code === 'CONFLICT') {
        push({ type: 'warning', title: 'Job already finished', message: err.message });
      } else {
        push({ type: 'error', title: `Could not cancel ${job.kind}`, message: errorMessage(err) });
      }
    }
  };

  // The message, unless it only repeats the status pill ("Cancelled").
  const text = job.error ? job.error.message
    : job.message && job.message.trim().toLowerCase() !== job.status ? job.message : '';
  return (
    <li data-testid="job-row" data-job-id={job.id} data-status={job.status}
        className="px-4 py-3 border-b border-slate-800 last:border-b-0">
      <div className="flex items-start justify-between gap-3">
        <div className="min-w-0">
          <div className="text-sm font-medium text-slate-200 truncate">{job.kind}</div>
          <div className="font-mono text-xs text-slate-500 truncate">{job.id}</div>
          <JobTimes job={job} now={now} />
        </div>
        <StatusPill status={job.status} size="sm" />
      </div>
      {text && (
        <div className={`mt-2 text-xs break-words ${job.error ? 'text-red-400' : 'text-slate-400'}`}>{text}</div>
      )}
      {job.memory_planned_mb != null && (
        <div data-testid="job-memory" className="mt-1 text-xs text-slate-500 tabular-nums"
             title="Memory admission's plan (the worker's memory when the job was admitted plus what it reserved) and the worker's measured peak while it ran">
          Memory: planned {job.memory_planned_mb.toLocaleString()} MB
          {job.memory_peak_mb != null && <> • peak {job.memory_peak_mb.toLocaleString()} MB</>}
        </div>
      )}
      {job.status === 'running' && (
        <div className="mt-2 flex items-center gap-3">
          <ProgressBar value={job.progress} size="sm" className="flex-1" />
          <span className="text-xs text-emerald-400 font-medium tabular-nums w-12 text-right">
            {formatPercent(job.progress)}
          </span>
        </div>
      )}
      {active && (
        <div className="mt-2 flex justify-end">
          <button type="button" data-testid="job-cancel" onClick={onCancel} disabled={cancelling}
                  className="px-3 py-1 text-xs font-medium bg-red-600 hover:bg-red-700 disabled:bg-slate-700 disabled:cursor-not-allowed rounded text-white transition-colors inline-flex items-center gap-1">
            {cancelling && <LoaderCircle className="w-3 h-3 animate-spin" />}
            {cancelling ? 'Cancelling…' : 'Cancel'}
          </button>
        </div>
      )}
    </li>
  );
}

/** Header button "N running" with a dropdown of recent jobs, kept live by the event stream. */
export function JobsIndicator() {
  const { jobs, runningCount, queuedCount } = useJobs();
  const [open, setOpen] = useState(false);
  const [now, setNow] = useState(() => Date.now());
  const wrapper = useRef<HTMLDivElement>(null);

  useEffect(() => {
    if (!open) return undefined;
    setNow(Date.now());
    const timer = window.setInterval(() => setNow(Date.now()), TICK_MS);
    return () => window.clearInterval(timer);
  }, [open]);

  useEffect(() => {
    if (!open) return undefined;
    const onDown = (e: MouseEvent) => {
      if (wrapper.current && !wrapper.current.contains(e.target as Node)) setOpen(false);
    };
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') setOpen(false);
    };
    document.addEventListener('mousedown', onDown);
    document.addEventListener('keydown', onKey);
    return () => {
      document.removeEventListener('mousedown', onDown);
      document.removeEventListener('keydown', onKey);
    };
  }, [open]);

  // Newest first by creation (the time each row leads with), plus any active one older than the 20 newest.
  const recent = jobs.slice(0, SHOWN);
  const shown = [...recent, ...jobs.slice(SHOWN).filter((j) => isActive(j.status))];

  const label = runningCount > 0 ? `${runningCount} running` : 'No jobs running';
  return (
    <div className="relative" ref={wrapper}>
      <button type="button" data-testid="jobs-indicator" data-running={runningCount} aria-haspopup="true"
              aria-expanded={open} onClick={() => setOpen((o) => !o)}
              className={`inline-flex items-center gap-2 px-3 py-1.5 rounded-lg transition-colors hover:bg-slate-800 hover:text-slate-200 ${
                open ? 'bg-slate-800 text-slate-200' : ''}`}>
        <Activity className={`w-4 h-4 ${runningCount > 0 ? 'text-emerald-400 animate-pulse' : ''}`} aria-hidden="true" />
        <span>{label}</span>
        {queuedCount > 0 && <span className="text-slate-500">• {queuedCount} queued</span>}
      </button>
      {open && (
        <div data-testid="jobs-panel" role="region" aria-label="Jobs"
             className="absolute right-0 mt-2 w-96 bg-slate-900 border border-slate-800 rounded-lg shadow-2xl z-40 overflow-hidden">
          <div className="flex items-center justify-between px-4 py-3 border-b border-slate-800">
            <h3 className="font-semibold text-slate-100">Jobs</h3>
            <span className="text-xs text-slate-500">
              {runningCount} running • {queuedCount} queued
            </span>
          </div>
          {shown.length === 0 ? (
            <div className="px-4 py-8 text-center text-slate-500">No jobs yet</div>
          ) : (
            <ul className="max-h-[28rem] overflow-y-auto">
              {shown.map((job) => <JobRow key={job.id} job={job} now={now} />)}
            </ul>
          )}
        </div>
      )}
    </div>
  );
}
