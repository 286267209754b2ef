import type { ReactNode } from 'react';

const FILLS = {
  emerald: 'from-emerald-500 to-emerald-400',
  purple: 'from-purple-500 to-purple-400',
  blue: 'from-blue-500 to-blue-400',
  yellow: 'from-yellow-500 to-yellow-400',
} as const;

interface ProgressBarProps {
  /** 0..1 */
  value: number;
  color?: keyof typeof FILLS;
  /** Text on the left of the label row; the row (with "x.x%") shows when a label or showPercent is set. */
  label?: ReactNode;
  showPercent?: boolean;
  size?: 'sm' | 'md';
  className?: string;
}

export function formatPercent(value: number, digits = 1): string {
  const clamped = Math.min(Math.max(Number.isFinite(value) ? value : 0, 0), 1);
  return `${(clamped * 100).toFixed(digits)}%`;
}

/** 8 px slate-800 track, fully rounded, with a gradient fill. */
export function ProgressBar({ value, color = 'emerald', label, showPercent = false, size = 'md',
                              className = '' }: ProgressBarProps) {
  const clamped = Math.min(Math.max(Number.isFinite(value) ? value : 0, 0), 1);
  const percent = formatPercent(clamped);
  const text = size === 'sm' ? 'text-xs' : 'text-sm';
  return (
    <div className={className}>
      {(label || showPercent) && (
        <div className={`flex items-center justify-between mb-2 ${text}`}>
          <span className="text-slate-400">{label}</span>
          {showPercent && <span className="text-emerald-400 font-medium tabular-nums">{percent}</span>}
        </div>
      )}
      <div className={`${size === 'sm' ? 'h-1.5' : 'h-2'} bg-slate-800 rounded-full overflow-hidden`}
           role="progressbar" aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(clamped * 1000) / 10}>
        <div className={`h-full bg-gradient-to-r ${FILLS[color]} transition-all duration-500`}
             style={{ width: percent }} />
      </div>
    </div>
  );
}
