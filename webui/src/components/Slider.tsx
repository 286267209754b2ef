import { useId } from 'react';
import type { ReactNode } from 'react';

interface SliderProps {
  value: number;
  onChange: (value: number) => void;
  min: number;
  max: number;
  step?: number;
  /** Label above the slider; the current value is shown after it unless `valueLabel` is given. */
  label?: ReactNode;
  valueLabel?: ReactNode;
  disabled?: boolean;
  className?: string;
}

/** A native range input with the emerald accent the steering controls use. */
export function Slider({ value, onChange, min, max, step = 1, label, valueLabel, disabled, className = '' }: SliderProps) {
  const id = useId();
  return (
    <div className={className}>
      {label !== undefined && (
        <label htmlFor={id} className="block text-sm font-medium text-slate-300 mb-2">
          {label}{valueLabel === undefined ? `: ${value}` : valueLabel}
        </label>
      )}
      <input id={id} type="range" min={min} max={max} step={step} value={value} disabled={disabled}
             onChange={(e) => onChange(Number(e.target.value))}
             className="w-full accent-emerald-500 disabled:opacity-50 cursor-pointer disabled:cursor-not-allowed" />
    </div>
  );
}
