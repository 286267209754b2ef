import { CircleCheckBig } from 'lucide-react';

import type { JobStatus } from '../api/types';

const TONES: Record<string, string> = {
  running: 'bg-emerald-900/30 text-emerald-400',
  queued: 'bg-slate-800 text-slate-300',
  paused: 'bg-yellow-900/30 text-yellow-400',
  completed: 'bg-emerald-900/30 text-emerald-400',
  ready: 'bg-emerald-900/30 text-emerald-400',
  failed: 'bg-red-900/30 text-red-400',
  cancelled: 'bg-slate-800 text-slate-400',
};

interface StatusPillProps {
  status: JobStatus | string;
  label?: string;
  size?: 'sm' | 'md';
  className?: string;
}

/** A rounded status badge; colours follow the status (running emerald, paused yellow, failed red …). */
export function StatusPill({ status, label, size = 'md', className = '' }: StatusPillProps) {
  const tone = TONES[status] ?? 'bg-slate-800 text-slate-300';
  const sizing = size === 'sm' ? 'px-2 py-0.5 text-xs' : 'px-3 py-1 text-sm';
  return (
    <span className={`inline-flex items-center gap-1 rounded-full capitalize whitespace-nowrap ${sizing} ${tone} ${className}`}
          data-status={status}>
      {status === 'completed' && <CircleCheckBig className={size === 'sm' ? 'w-3 h-3' : 'w-4 h-4'} aria-hidden="true" />}
      {label ?? status}
    </span>
  );
}
