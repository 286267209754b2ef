// Header summary of the device: RAM, GPU load, hottest sensor. Each item appears only when the
// device reports it. A click opens the system monitor.
import { Activity, MemoryStick, Thermometer } from 'lucide-react';

import type { MetricsSample, SystemInfo } from '../api/types';

export function hottest(sample: MetricsSample | null): [string, number] | null {
  const temps = Object.entries(sample?.temperatures_c ?? {});
  if (temps.length === 0) return null;
  return temps.reduce((a, b) => (b[1] > a[1] ? b : a));
}

function tempColor(celsius: number): string {
  if (celsius >= 85) return 'text-red-400';
  if (celsius >= 70) return 'text-orange-400';
  return '';
}

/** The total memory shown: a configured one (MISTUDIO_MEMORY_TOTAL_MB, a simulated board) is what jobs are
 *  planned with, so it replaces the host's RAM, marked as configured. */
export function shownTotalMb(sample: MetricsSample | null, info: SystemInfo | null): number | null {
  return info?.total_memory_source === 'configured' ? info.total_memory_mb : sample?.ram_total_mb ?? null;
}

export function SystemSummary({ sample, info, onOpen }: {
  sample: MetricsSample | null; info: SystemInfo | null; onOpen: () => void;
}) {
  const hot = hottest(sample);
  const total = shownTotalMb(sample, info);
  const configured = info?.total_memory_source === 'configured';
  const ram = sample?.ram_used_mb != null && total
    ? `${(sample.ram_used_mb / 1024).toFixed(1)}/${(total / 1024).toFixed(1)} GB${configured ? ' (configured)' : ''}` : null;
  return (
    <button type="button" data-testid="system-summary" onClick={onOpen} title="Open the system monitor"
            className="flex items-center gap-3 px-2 py-1 rounded-lg hover:bg-slate-800/60 hover:text-slate-300 transition-colors">
      {ram && (
        <span className="flex items-center gap-1 tabular-nums" data-testid="summary-ram"
              title={configured && info ? `Total set by MISTUDIO_MEMORY_TOTAL_MB; this host has ${(info.host_memory_mb / 1024).toFixed(1)} GB`
                : undefined}>
          <MemoryStick className="w-4 h-4" aria-hidden="true" /> RAM {ram}
        </span>
      )}
      {sample?.gpu_load_pct != null && (
        <span className="flex items-center gap-1 tabular-nums">
          <Activity className="w-4 h-4 text-purple-400" aria-hidden="true" /> GPU {Math.round(sample.gpu_load_pct)}%
        </span>
      )}
      {hot && (
        <span className={`flex items-center gap-1 tabular-nums ${tempColor(hot[1])}`} title={hot[0]}>
          <Thermometer className="w-4 h-4 text-orange-400" aria-hidden="true" /> {Math.round(hot[1])}°C
        </span>
      )}
      {!ram && !hot && <span>System</span>}
    </button>
  );
}
