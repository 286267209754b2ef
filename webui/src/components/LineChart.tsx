// A small SVG line chart (no chart library: the bundle stays small), with labelled y ticks and x ticks.
// x is either time (unix seconds; the window ends at the newest point, ticks read "-N min" .. "now") or
// training steps (from 0 to the newest step). y runs from 0 (or the data's min, when below 0) to the max.
// The labels are HTML beside the SVG: the SVG stretches to its box (preserveAspectRatio="none"), which
// would distort text drawn inside it.

export interface Series {
  name: string;
  color: string;
  points: [number, number][]; // [x, value]: x in unix seconds, or a step
}

interface LineChartProps {
  series: Series[];
  /** Time axis: the seconds shown, ending at the newest point. Step axis: ignored (0 to the newest step). */
  windowS: number;
  unit: string;
  /** Fix the top of the axis (e.g. 100 for percentages); otherwise a round value above the data's max. */
  max?: number;
  height?: number;
  xAxis?: 'time' | 'step';
}

/** Round tick values within [lo, hi] (steps of 1, 2, 2.5 or 5 times a power of ten), at most ``count`` + 1. */
export function niceTicks(lo: number, hi: number, count: number): number[] {
  const span = hi - lo;
  if (!(span > 0) || !Number.isFinite(span)) return [lo];
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const first = Math.ceil(lo / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let v = first; v <= hi + step * 1e-9; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return ticks;
}

/** A tick's text: as many decimals as the tick spacing needs; thousands as "k" and millions as "M". */
function tickText(value: number, spacing: number): string {
  const abs = Math.abs(value);
  if (abs >= 1e6 && spacing >= 1e5) return `${+(value / 1e6).toFixed(spacing >= 1e6 ? 0 : 1)}M`;
  if (abs >= 1e4 && spacing >= 1e3) return `${+(value / 1e3).toFixed(spacing >= 1e3 ? 0 : 1)}k`;
  const decimals = [0, 1, 2, 3, 4, 5, 6].find((d) => Math.abs(Math.round(spacing * 10 ** d) - spacing * 10 ** d) < 1e-6) ?? 6;
  return value.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

const spacingOf = (ticks: number[]) => (ticks.length > 1 ? ticks[1] - ticks[0] : 1);

/** How far a label moves back along its axis: centred on its tick, but kept inside the chart at either end
(``fraction``: the tick's place from the axis' start). */
const shift = (fraction: number) => (fraction <= 0.02 ? '0%' : fraction >= 0.98 ? '-100%' : '-50%');

export function LineChart({ series, windowS, unit, max, height = 120, xAxis = 'time' }: LineChartProps) {
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return null;
  const width = 600;
  const newest = Math.max(...all.map(([t]) => t));
  const byStep = xAxis === 'step';
  const xHi = byStep ? Math.max(1, newest) : newest;
  const xLo = byStep ? 0 : newest - windowS;
  const values = all.map(([, v]) => v).filter(Number.isFinite);
  const lowest = Math.min(0, ...values);
  // An axis from 0 at least to the data's max; a series of zeros (no dead latents yet) gets 0 to 1.
  const highest = Math.max(0, ...values) > lowest ? Math.max(0, ...values) : lowest + 1;
  // The axis ends on ticks (or the fixed max), so its top and bottom lines are labelled; a round top above
  // the data, so a flat series (a TopK SAE's L0) is not drawn on the frame.
  const rough = niceTicks(lowest, max ?? highest, 4);
  const bottom = Math.min(0, rough[0] > lowest ? rough[0] - spacingOf(rough) : rough[0]);
  const last = rough[rough.length - 1];
  const top = max ?? (last > highest ? last : last + spacingOf(rough));
  const yTicks = niceTicks(bottom, top, 4);
  const x = (t: number) => ((t - xLo) / (xHi - xLo || 1)) * width;
  const y = (v: number) => height - ((Math.min(Math.max(v, bottom), top) - bottom) / (top - bottom || 1)) * height;
  // Steps: round steps from 0. Time: whole minutes (seconds in a short window) back from the newest point.
  const minutes = !byStep && windowS >= 120;
  const per = minutes ? 60 : 1;
  const xTicks = byStep ? niceTicks(0, xHi, 5).map((at) => ({ at, shown: at }))
    : niceTicks(-windowS / per, 0, 5).map((back) => ({ at: xHi + back * per, shown: back }));
  const xSpacing = spacingOf(xTicks.map((t) => t.shown));
  const xText = (shown: number) => (byStep ? tickText(shown, xSpacing)
    : shown === 0 ? 'now' : `${tickText(shown, xSpacing)} ${minutes ? 'min' : 's'}`);
  const suffix = unit ? (unit === '%' ? '%' : ` ${unit}`) : '';
  return (
    <div className="grid grid-cols-[3.5rem_1fr] gap-x-1 text-[11px] text-slate-400 tabular-nums" data-testid="line-chart">
      <div className="relative h-32" aria-hidden="true">
        {yTicks.map((v) => {
          const f = (v - bottom) / (top - bottom || 1);
          return (
            <span key={v} data-testid="y-tick" className="absolute right-1 whitespace-nowrap leading-none"
                  style={{ top: `${(1 - f) * 100}%`, transform: `translateY(${shift(1 - f)})` }}>
              {tickText(v, spacingOf(yTicks))}{suffix}</span>
          );
        })}
      </div>
      <svg viewBox={`0 0 ${width} ${height}`} preserveAspectRatio="none" className="w-full h-32 bg-slate-800/30 rounded"
           role="img" aria-label={series.map((s) => s.name).join(', ')}>
        {yTicks.map((v) => (
          <line key={`y${v}`} x1={0} x2={width} y1={y(v)} y2={y(v)} stroke="#334155" strokeWidth={1}
                vectorEffect="non-scaling-stroke" strokeDasharray={v === bottom ? undefined : '3 3'} />
        ))}
        {xTicks.map(({ at }) => (
          <line key={`x${at}`} x1={x(at)} x2={x(at)} y1={0} y2={height} stroke="#1e293b" strokeWidth={1}
                vectorEffect="non-scaling-stroke" />
        ))}
        {series.map((s) => (
          <polyline key={s.name} fill="none" stroke={s.color} strokeWidth={2} vectorEffect="non-scaling-stroke"
                    points={s.points.filter(([t]) => t >= xLo).map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ')} />
        ))}
      </svg>
      <span className="text-right pr-1 text-slate-500">{byStep ? 'step' : ''}</span>
      <div className="relative h-4 mt-0.5" aria-hidden="true">
        {xTicks.map(({ at, shown }) => {
          const f = (at - xLo) / (xHi - xLo || 1);
          return (
            <span key={at} data-testid="x-tick" className="absolute top-0 whitespace-nowrap leading-none"
                  style={{ left: `${f * 100}%`, transform: `translateX(${shift(f)})` }}>{xText(shown)}</span>
          );
        })}
      </div>
    </div>
  );
}
