import { useEffect, useMemo, useState } from 'react';

import { apiGet } from '../../api/client';
import type { MapPoint } from '../../api/types';

/** The UMAP of decoder directions: nearby points write in similar directions. Wheel to zoom, drag to pan. */
export function FeatureMap({ trainingId, onOpen, group = null }: {
  trainingId: string; onOpen: (index: number) => void; group?: number | null;  // a Matryoshka prefix group
}) {
  const [points, setPoints] = useState<MapPoint[] | null>(null);
  const [view, setView] = useState({ x: -0.05, y: -0.05, size: 1.1 });
  const [drag, setDrag] = useState<{ x: number; y: number } | null>(null);
  const [hover, setHover] = useState<MapPoint | null>(null);
  useEffect(() => {
    const query = group != null ? `?group=${group}` : '';
    apiGet<MapPoint[]>(`/api/training/${trainingId}/features/map${query}`).then(setPoints).catch(() => setPoints([]));
  }, [trainingId, group]);
  const logMin = useMemo(() => Math.log10(Math.min(...(points ?? []).map((p) => p.frequency), 1)), [points]);
  if (points === null) return <p className="text-slate-500">Loading the map...</p>;
  if (points.length === 0) return <p className="text-slate-500" data-testid="feature-map-empty">No map for this extraction (too few features).</p>;
  const color = (f: number) => {
    const t = logMin < 0 ? (Math.log10(f) - logMin) / -logMin : 1;
    return `hsl(${160 - 120 * t}, 70%, 55%)`;
  };
  return (
    <div data-testid="feature-map" className="space-y-2">
      <p className="text-sm text-slate-400">{points.length.toLocaleString('en-US')} live features; colour = firing frequency
        (green rare, orange common). Click a point to open it.</p>
      <svg viewBox={`${view.x} ${view.y} ${view.size} ${view.size}`} className="w-full h-[32rem] bg-slate-950 rounded-lg cursor-grab"
           onWheel={(e) => {
             const factor = e.deltaY > 0 ? 1.2 : 1 / 1.2;
             setView((v) => ({ x: v.x + (v.size - v.size * factor) / 2, y: v.y + (v.size - v.size * factor) / 2, size: v.size * factor }));
           }}
           onMouseDown={(e) => setDrag({ x: e.clientX, y: e.clientY })} onMouseUp={() => setDrag(null)} onMouseLeave={() => setDrag(null)}
           onMouseMove={(e) => {
             if (!drag) return;
             const scale = view.size / (e.currentTarget.clientWidth || 1);
             setView((v) => ({ ...v, x: v.x - (e.clientX - drag.x) * scale, y: v.y - (e.clientY - drag.y) * scale }));
             setDrag({ x: e.clientX, y: e.clientY });
           }}>
        {points.map((p) => (
          <circle key={p.index} data-testid="map-point" cx={p.x} cy={p.y} r={view.size / 150} fill={color(p.frequency)}
                  fillOpacity={0.8} onMouseEnter={() => setHover(p)} onClick={() => onOpen(p.index)}>
            <title>#{p.index}{p.group != null ? ` (group ${p.group})` : ''} {p.label}</title>
          </circle>
        ))}
      </svg>
      <p className="text-sm text-slate-300 h-5">{hover && `#${hover.index}${hover.group != null ? ` • group ${hover.group}` : ''} • ${hover.label} • ${(100 * hover.frequency).toFixed(2)}%`}</p>
    </div>
  );
}
