import type { ReactNode } from 'react';

const VALUE_COLORS = {
  emerald: 'text-emerald-400',
  blue: 'text-blue-400',
  purple: 'text-purple-400',
  yellow: 'text-yellow-400',
  red: 'text-red-400',
  slate: 'text-slate-200',
} as const;

interface MetricTileProps {
  label: ReactNode;
  /** Shown as "—" when null/undefined: never a made-up number. */
  value: ReactNode | null | undefined;
  color?: keyof typeof VALUE_COLORS;
  caption?: ReactNode;
  size?: 'md' | 'lg';
}

/** An inner stat tile: slate-800/50, small grey label over a big coloured number. */
export function MetricTile({ label, value, color = 'emerald', caption, size = 'md' }: MetricTileProps) {
  return (
    <div className="bg-slate-800/50 rounded-lg p-4">
      <div className="text-sm text-slate-400 mb-1">{label}</div>
      <div className={`${size === 'lg' ? 'text-4xl' : 'text-2xl'} font-bold tabular-nums ${VALUE_COLORS[color]}`}>
        {value ?? '—'}
      </div>
      {caption && <div className="text-xs text-slate-500 mt-1">{caption}</div>}
    </div>
  );
}
