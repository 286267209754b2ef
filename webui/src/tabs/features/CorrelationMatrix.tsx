import { useEffect, useMemo, useState } from 'react';

import { apiGet } from '../../api/client';
import { NumberInput } from '../../components/Form';

interface Matrix { features: number[]; matrix: number[][] }

/** Red (-1) through white (0) to emerald (+1): the sign reads at a glance, and near zero fades out. */
function shade(r: number): string {
  const t = Math.max(-1, Math.min(1, r));
  const [to, w] = t >= 0 ? [[16, 185, 129], t] : [[239, 68, 68], -t];
  const mix = (c: number) => Math.round(241 + (c - 241) * w);
  return `rgb(${mix(to[0])}, ${mix(to[1])}, ${mix(to[2])})`;
}

/** Pearson correlations among the most frequent features (over every evaluation token), with the
 *  pairs above a threshold listed; a cell or a pair opens the feature. */
export function CorrelationMatrix({ trainingId, onOpen }: { trainingId: string; onOpen: (index: number) => void }) {
  const [top, setTop] = useState(30);
  const [threshold, setThreshold] = useState(0.3);
  const [data, setData] = useState<Matrix | null>(null);
  const [hover, setHover] = useState<[number, number, number] | null>(null);
  useEffect(() => {
    setData(null);
    apiGet<Matrix>(`/api/training/${trainingId}/features/correlation-matrix?top=${top}`)
      .then(setData).catch(() => setData({ features: [], matrix: [] }));
  }, [trainingId, top]);
  const pairs = useMemo(() => {
    if (!data) return [];
    const found: [number, number, number][] = [];
    data.features.forEach((a, i) => data.features.forEach((b, j) => {
      if (j > i && Math.abs(data.matrix[i][j]) >= threshold) found.push([a, b, data.matrix[i][j]]);
    }));
    return found.sort((x, y) => Math.abs(y[2]) - Math.abs(x[2])).slice(0, 12);
  }, [data, threshold]);
  const n = data?.features.length ?? 0;
  return (
    <div data-testid="correlation-matrix" className="space-y-3 pt-4 border-t border-slate-800">
      <div className="flex flex-wrap items-end gap-6">
        <div>
          <h4 className="font-semibold text-slate-100">Correlation Matrix</h4>
          <p className="text-xs text-slate-500">Pearson over every evaluation token, the {n} most frequent features</p>
        </div>
        <label className="text-sm text-slate-300">Top N
          <NumberInput id="corr-top" testId="corr-top" integer min={10} max={200} step={10} value={top} onChange={setTop}
                       inputClassName="ml-2 w-20 bg-slate-900 border border-slate-700 rounded-lg px-2 py-1" />
        </label>
        <label className="text-sm text-slate-300">Threshold {threshold.toFixed(2)}
          <input type="range" min={0} max={1} step={0.05} value={threshold} data-testid="corr-threshold"
                 onChange={(e) => setThreshold(Number(e.target.value))} className="ml-2 align-middle accent-emerald-500" />
        </label>
      </div>
      {data === null ? <p className="text-slate-500">Loading correlations...</p> : n < 2
        ? <p className="text-slate-500">Too few live features for a matrix.</p> : (
        <div className="grid grid-cols-1 lg:grid-cols-[minmax(0,600px)_1fr] gap-6">
          <div>
            <svg viewBox={`0 0 ${n} ${n}`} className="w-full max-w-[600px] aspect-square bg-slate-950 rounded"
                 data-testid="corr-heatmap" onMouseLeave={() => setHover(null)}>
              {data.matrix.map((row, i) => row.map((r, j) => (
                <rect key={`${i}-${j}`} data-testid="corr-cell" x={j} y={i} width={1} height={1} fill={shade(r)}
                      className="cursor-pointer" onMouseEnter={() => setHover([data.features[i], data.features[j], r])}
                      onClick={() => onOpen(data.features[j])} />
              )))}
            </svg>
            <div className="flex items-center gap-2 text-xs text-slate-500 mt-1">
              <span>-1</span>
              <span className="h-2 flex-1 rounded" style={{ background: `linear-gradient(to right, ${shade(-1)}, ${shade(0)}, ${shade(1)})` }} />
              <span>+1</span>
            </div>
            <p className="text-sm text-slate-300 h-5">{hover && `#${hover[0]} × #${hover[1]}: r = ${hover[2].toFixed(3)}`}</p>
          </div>
          <div>
            <h5 className="text-sm font-medium text-slate-300 mb-2">Highly Correlated Feature Pairs</h5>
            {pairs.length === 0 ? <p className="text-sm text-slate-500">No pair at |r| ≥ {threshold.toFixed(2)}.</p> : (
              <ul className="space-y-1" data-testid="corr-pairs">
                {pairs.map(([a, b, r]) => (
                  <li key={`${a}-${b}`} className="flex items-center justify-between bg-slate-800/30 rounded px-3 py-1.5 text-sm">
                    <span className="font-mono text-slate-300">
                      <button type="button" className="hover:text-emerald-400" onClick={() => onOpen(a)}>#{a}</button>
                      {' × '}
                      <button type="button" className="hover:text-emerald-400" onClick={() => onOpen(b)}>#{b}</button>
                    </span>
                    <span className={`font-mono ${r >= 0 ? 'text-emerald-400' : 'text-red-400'}`}>{r.toFixed(3)}</span>
                  </li>
                ))}
              </ul>
            )}
          </div>
        </div>
      )}
    </div>
  );
}
