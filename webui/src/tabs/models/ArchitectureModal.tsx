import { useEffect, useState } from 'react';

import { apiGet, errorMessage } from '../../api/client';
import type { Architecture, Model } from '../../api/types';
import { MetricTile } from '../../components/MetricTile';
import { Modal } from '../../components/Modal';
import { formatParams, shortName } from './format';

interface LayerRow {
  name: string;
  detail: string;
}

/** The layer list, from the model's config: embedding, one row per block, final norm, output. */
function layerRows(a: Architecture): LayerRow[] {
  const d = a.d_model ?? 0;
  const headDim = a.heads ? Math.round(d / a.heads) : null;
  const kv = a.kv_heads && a.kv_heads !== a.heads ? ` (${a.kv_heads} KV heads)` : '';
  const hooks = (i: number) => (a.hook_points ?? []).filter((p) => p.layer === i).map((p) => p.name.split('.').pop()).join(', ');
  return [
    { name: 'Embedding', detail: `Shape: ${a.vocab_size} × ${d}` },
    ...Array.from({ length: a.layers }, (_, i) => ({
      name: `TransformerBlock_${i}`,
      detail: `Attention: ${a.heads ?? '?'} heads × ${headDim ?? '?'} dims${kv} | MLP: ${d} → ${a.d_mlp ?? '?'} → ${d}`
        + ` | hooks: ${hooks(i)}`,
    })),
    { name: 'LayerNorm', detail: `Shape: ${d}` },
    { name: 'Output', detail: `Shape: ${d} × ${a.vocab_size}` },
  ];
}

export function ArchitectureModal({ model, onClose }: { model: Model; onClose: () => void }) {
  const [arch, setArch] = useState<Architecture | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    apiGet<Architecture>(`/api/models/${model.id}/architecture`).then(setArch).catch((err) => setError(errorMessage(err)));
  }, [model.id]);
  return (
    <Modal testId="architecture-modal" title={`${shortName(model)} Architecture`} titleClassName="text-2xl font-bold text-emerald-400"
           subtitle={`${formatParams(model.parameters)} parameters • ${model.precision.toUpperCase()} ${
             model.precision.startsWith('q') ? 'quantization' : 'precision'}`}
           onClose={onClose} size="4xl" blur maxHeight="80vh">
      {error && <p className="text-red-400">{error}</p>}
      {arch && (
        <div className="space-y-6">
          <div className="grid grid-cols-4 gap-4">
            <div data-testid="arch-layers"><MetricTile label="Total Layers" value={arch.layers + 3} color="emerald"
                                                        caption={`${arch.layers} transformer blocks`} /></div>
            <div data-testid="arch-hidden"><MetricTile label="Hidden Dimension" value={arch.d_model} color="purple" /></div>
            <div data-testid="arch-heads"><MetricTile label="Attention Heads" value={arch.heads} color="blue" /></div>
            <div data-testid="arch-params"><MetricTile label="Parameters" value={formatParams(arch.parameters)} color="yellow" /></div>
          </div>
          <section>
            <h3 className="text-lg font-semibold mb-3">Model Layers</h3>
            <div className="space-y-2">
              {layerRows(arch).map((row, i) => (
                <div key={row.name} data-testid="arch-layer-row"
                     className="flex items-start gap-4 p-3 border border-slate-800 hover:border-slate-700 rounded-lg transition-colors">
                  <span className="font-mono text-sm text-slate-500 w-6 text-right">{i}</span>
                  <div>
                    <div className="font-medium">{row.name}</div>
                    <div className="text-sm text-slate-400">{row.detail}</div>
                  </div>
                </div>
              ))}
            </div>
          </section>
          <section className="border border-slate-800 rounded-lg p-4">
            <h3 className="text-lg font-semibold mb-3">Model Configuration</h3>
            <dl className="grid grid-cols-2 gap-3 text-sm">
              {[['Family', arch.family], ['Vocabulary Size', arch.vocab_size], ['Max Position', arch.context_length],
                ['MLP Ratio', arch.d_mlp && arch.d_model ? `${(arch.d_mlp / arch.d_model).toFixed(1).replace(/\.0$/, '')}x` : '—'],
                ['Architecture', 'Decoder-only'], ['Class', arch.class]].map(([k, v]) => (
                <div key={String(k)} className="flex justify-between gap-4">
                  <dt className="text-slate-400">{k}</dt><dd className="font-mono">{v ?? '—'}</dd>
                </div>
              ))}
            </dl>
          </section>
        </div>
      )}
    </Modal>
  );
}
