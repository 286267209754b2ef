// A small SVG line chart (no chart library: the bundle stays small). x = time over the window,
// y from 0 (or the data's min) to the max; one polyline per series.

export interface Series {
  name: string;
  color: string;
  points: [number, number][]; // [unix seconds, value]
}

interface LineChartProps {
  series: Series[];
  windowS: number;
  unit: string;
  /** Fix the top of the axis (e.g. 100 for percentages); otherwise the data's max. */
  max?: number;
  height?: number;
  /** Labels under the chart's left and right ends (default: "-N min" and "now"). */
  xLabels?: [string, string];
}

export function LineChart({ series, windowS, unit, max, height = 120, xLabels }: LineChartProps) {
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return null;
  const width = 600;
  const newest = Math.max(...all.map(([t]) => t));
  const oldest = newest - windowS;
  const top = max ?? Math.max(1, ...all.map(([, v]) => v)) * 1.1;
  const x = (t: number) => ((t - oldest) / windowS) * width;
  const y = (v: number) => height - (Math.min(v, top) / top) * height;
  return (
    <div className="relative">
      <svg viewBox={`0 0 ${width} ${height}`} preserveAspectRatio="none" className="w-full h-32 bg-slate-800/30 rounded"
           role="img" aria-label={series.map((s) => s.name).join(', ')}>
        {[0.25, 0.5, 0.75].map((f) => (
          <line key={f} x1={0} x2={width} y1={height * f} y2={height * f} stroke="#1e293b" strokeWidth={1} />
        ))}
        {series.map((s) => (
          <polyline key={s.name} fill="none" stroke={s.color} strokeWidth={2} vectorEffect="non-scaling-stroke"
                    points={s.points.filter(([t]) => t >= oldest).map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ')} />
        ))}
      </svg>
      <div className="flex justify-between text-xs text-slate-500 mt-1 tabular-nums">
        <span>{xLabels ? xLabels[0] : `-${Math.round(windowS / 60)} min`}</span>
        <span>0 – {top >= 100 ? Math.round(top) : top.toFixed(top < 1 ? 3 : 1)} {unit}</span>
        <span>{xLabels ? xLabels[1] : 'now'}</span>
      </div>
    </div>
  );
}
