// The system monitor: the device, then charts of the last minutes from real samples only.
import type { ReactNode } from 'react';

import type { MetricsSample, SystemInfo } from '../api/types';
import { WINDOW_S } from '../hooks/useSystemMetrics';
import { LineChart } from './LineChart';
import type { Series } from './LineChart';
import { Modal } from './Modal';
import { shownTotalMb } from './SystemSummary';

const PALETTE = ['#34d399', '#60a5fa', '#c084fc', '#facc15', '#fb923c', '#f87171', '#2dd4bf', '#f472b6'];

function series(history: MetricsSample[], name: string, color: string,
                pick: (s: MetricsSample) => number | null | undefined): Series {
  const points: [number, number][] = [];
  for (const s of history) {
    const v = pick(s);
    if (typeof v === 'number' && Number.isFinite(v)) points.push([s.timestamp, v]);
  }
  return { name, color, points };
}

function ChartCard({ id, title, value, children, empty }: {
  id: string; title: string; value: ReactNode; children: ReactNode; empty: boolean;
}) {
  return (
    <div className="bg-slate-900/50 border border-slate-800 rounded-lg p-4" data-testid={`chart-${id}`}>
      <div className="flex items-baseline justify-between mb-2">
        <h3 className="text-sm font-medium text-slate-300">{title}</h3>
        {!empty && <div className="text-lg font-semibold tabular-nums">{value}</div>}
      </div>
      {empty ? <div className="text-center py-8 text-sm text-slate-500">Not reported by this device</div> : children}
    </div>
  );
}

function Legend({ items }: { items: { name: string; color: string; text: string }[] }) {
  return (
    <div className="flex flex-wrap gap-x-4 gap-y-1 mt-2 text-xs text-slate-400">
      {items.map((item) => (
        <span key={item.name} className="flex items-center gap-1 tabular-nums">
          <span className="inline-block w-2 h-2 rounded-full" style={{ background: item.color }} />
          {item.name} {item.text}
        </span>
      ))}
    </div>
  );
}

const fmt = (v: number | null | undefined, digits = 0, unit = '') => (v == null ? '—' : `${v.toFixed(digits)}${unit}`);

export function SystemMonitor({ info, latest, history, onClose }: {
  info: SystemInfo | null; latest: MetricsSample | null; history: MetricsSample[]; onClose: () => void;
}) {
  const cpu = series(history, 'CPU', PALETTE[0], (s) => s.cpu_load_pct);
  const gpu = series(history, 'GPU', PALETTE[2], (s) => s.gpu_load_pct);
  const ram = series(history, 'RAM', PALETTE[1], (s) => s.ram_used_mb);
  const memorySeries = [ram, series(history, 'GPU memory', PALETTE[2], (s) => s.gpu_mem_used_mb),
    series(history, 'Swap', PALETTE[3], (s) => s.swap_used_mb)].filter((s) => s.points.length);
  const sensors = Object.keys(latest?.temperatures_c ?? {});
  const temps = sensors.map((name, i) => series(history, name, PALETTE[i % PALETTE.length], (s) => s.temperatures_c?.[name]));
  const rails = (latest?.power ?? []).map((r) => r.name).filter((n, i, all) => all.indexOf(n) === i);
  const power = rails.map((name, i) => series(history, name, PALETTE[i % PALETTE.length],
    (s) => s.power?.find((r) => r.name === name)?.current_mw));
  const memMax = Math.max(latest?.ram_total_mb ?? 0, latest?.gpu_mem_total_mb ?? 0, latest?.swap_total_mb ?? 0) || undefined;
  const configured = info?.total_memory_source === 'configured';
  const total = shownTotalMb(latest, info);
  const device = info
    ? [info.board ?? info.device_name, info.soc, info.l4t && `L4T ${info.l4t}`, info.jetpack && `JetPack ${info.jetpack}`,
       info.gpu_name && info.platform_kind === 'nvidia' ? info.gpu_name : null, `CUDA ${info.cuda_available ? 'yes' : 'no'}`]
      .filter(Boolean).join(' • ')
    : 'Loading…';
  return (
    <Modal title="System Monitor" subtitle={device} onClose={onClose} size="6xl" testId="system-monitor-modal">
      <div data-testid="system-monitor" className="space-y-4">
        <div className="flex flex-wrap gap-2 text-xs">
          {info?.unified_memory && <span className="px-2 py-1 rounded-full bg-emerald-900/30 text-emerald-400">unified memory</span>}
          {latest && <span className="px-2 py-1 rounded-full bg-slate-800 text-slate-300">source: {latest.source}</span>}
          {info && configured && <span className="px-2 py-1 rounded-full bg-yellow-900/30 text-yellow-400"
                                       data-testid="memory-configured">
            memory {(info.total_memory_mb / 1024).toFixed(1)} GB, configured by MISTUDIO_MEMORY_TOTAL_MB
            {' '}(this host has {(info.host_memory_mb / 1024).toFixed(1)} GB)</span>}
          {info && <span className="px-2 py-1 rounded-full bg-slate-800 text-slate-300" data-testid="memory-budget">
            job memory budget {(info.memory_budget_mb / 1024).toFixed(1)} GB of {(info.total_memory_mb / 1024).toFixed(1)} GB</span>}
        </div>
        {!latest && <div className="text-center py-12 text-slate-400">Waiting for the first sample…</div>}
        {latest && (
          <div className="grid grid-cols-2 gap-4">
            <ChartCard id="cpu" title="CPU load" value={fmt(latest.cpu_load_pct, 1, '%')} empty={!cpu.points.length}>
              <LineChart series={[cpu]} windowS={WINDOW_S} unit="%" max={100} />
              <div className="flex gap-1 mt-2 items-end h-8" aria-label="per-core load">
                {(latest.cpu ?? []).map((core) => (
                  <div key={core.index} className="flex-1 bg-slate-800 rounded-sm relative h-full"
                       title={core.online ? `core ${core.index}: ${fmt(core.load_pct, 0, '%')}${core.freq_mhz ? ` @ ${core.freq_mhz} MHz` : ''}` : `core ${core.index}: off`}>
                    {core.online && <div className="absolute bottom-0 inset-x-0 bg-emerald-500 rounded-sm"
                                         style={{ height: `${Math.min(100, core.load_pct ?? 0)}%` }} />}
                  </div>
                ))}
              </div>
            </ChartCard>
            <ChartCard id="gpu" title="GPU load" empty={!gpu.points.length}
                       value={`${fmt(latest.gpu_load_pct, 0, '%')}${latest.gpu_freq_mhz ? ` @ ${latest.gpu_freq_mhz} MHz` : ''}`}>
              <LineChart series={[gpu]} windowS={WINDOW_S} unit="%" max={100} />
            </ChartCard>
            <ChartCard id="memory" title="Memory" empty={!memorySeries.length}
                       value={`${fmt((latest.ram_used_mb ?? 0) / 1024, 1)} / ${fmt((total ?? 0) / 1024, 1)} GB${configured ? ' (configured)' : ''}`}>
              <LineChart series={memorySeries} windowS={WINDOW_S} unit="MB" max={memMax} />
              <Legend items={memorySeries.map((s) => ({ name: s.name, color: s.color,
                text: `${Math.round(s.points[s.points.length - 1][1])} MB` }))} />
            </ChartCard>
            <ChartCard id="temperature" title="Temperatures" empty={!temps.length}
                       value={temps.length ? `${Math.round(Math.max(...Object.values(latest.temperatures_c ?? {})))}°C max` : ''}>
              <LineChart series={temps} windowS={WINDOW_S} unit="°C" />
              <Legend items={sensors.map((name, i) => ({ name, color: temps[i].color,
                text: `${latest.temperatures_c?.[name]?.toFixed(1)}°C` }))} />
            </ChartCard>
            <ChartCard id="power" title="Power" empty={!power.length}
                       value={power.length ? `${Math.round(latest.power?.[0]?.current_mw ?? 0)} mW ${latest.power?.[0]?.name ?? ''}` : ''}>
              <LineChart series={power} windowS={WINDOW_S} unit="mW" />
              <Legend items={(latest.power ?? []).map((r, i) => ({ name: r.name, color: PALETTE[i % PALETTE.length],
                text: `${Math.round(r.current_mw)}${r.average_mw != null ? ` (avg ${Math.round(r.average_mw)})` : ''} mW` }))} />
            </ChartCard>
            <div className="bg-slate-900/50 border border-slate-800 rounded-lg p-4" data-testid="chart-processes">
              <h3 className="text-sm font-medium text-slate-300 mb-2">miStudio processes</h3>
              <div className="grid grid-cols-2 gap-3">
                <div className="bg-slate-800/50 rounded-lg p-3">
                  <div className="text-xs text-slate-400">API</div>
                  <div className="text-xl font-bold text-blue-400 tabular-nums">{fmt(latest.process_rss_mb?.api, 0, ' MB')}</div>
                </div>
                <div className="bg-slate-800/50 rounded-lg p-3">
                  <div className="text-xs text-slate-400">Worker</div>
                  <div className="text-xl font-bold text-purple-400 tabular-nums">{fmt(latest.process_rss_mb?.worker, 0, ' MB')}</div>
                </div>
              </div>
              {latest.fan_pct != null && <div className="text-sm text-slate-400 mt-3">Fan {Math.round(latest.fan_pct)}%</div>}
            </div>
          </div>
        )}
      </div>
    </Modal>
  );
}
