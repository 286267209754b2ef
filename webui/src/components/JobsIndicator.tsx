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

function timeOf(iso: string | null): string {
  if (!iso) return '';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleTimeString();
}

function JobRow({ job }: { job: Job }) {
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
          <div className="font-mono text-xs text-slate-500 truncate">
            {job.id}
            {job.created_at && <span className="font-sans"> • {timeOf(job.started_at ?? job.created_at)}</span>}
          </div>
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
  const wrapper = useRef<HTMLDivElement>(null);

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

  // Recent jobs, plus any active one that is older than the most recent 20.
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
              {shown.map((job) => <JobRow key={job.id} job={job} />)}
            </ul>
          )}
        </div>
      )}
    </div>
  );
}
