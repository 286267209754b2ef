// The storage view: the data disk (used, free, the reserve no write may take) and what takes its space,
// largest first. A resource is deleted through its own DELETE endpoint, so a refusal (what is built on it)
// reads exactly as in its tab; a training's older checkpoints and cache entries are pruned here.
import { HardDrive, RefreshCw, Scissors, Trash2 } from 'lucide-react';
import { useCallback, useEffect, useState } from 'react';

import { apiGet, apiPost, errorMessage } from '../api/client';
import type { Storage, StorageItem, StoragePruned } from '../api/types';
import { useConfirmedDelete, useRequest } from '../hooks/useRequest';
import { formatBytes } from '../tabs/datasets/format';
import { Modal } from './Modal';
import { useToast } from './Toasts';

type Kind = StorageItem['kind'];

const KINDS: Record<Kind, { label: string; badge: string; bar: string }> = {
  dataset: { label: 'Dataset', badge: 'bg-blue-900/40 text-blue-300', bar: 'bg-blue-500' },
  model: { label: 'Model', badge: 'bg-purple-900/40 text-purple-300', bar: 'bg-purple-500' },
  activation_set: { label: 'Activations', badge: 'bg-cyan-900/40 text-cyan-300', bar: 'bg-cyan-500' },
  training: { label: 'Training', badge: 'bg-emerald-900/40 text-emerald-300', bar: 'bg-emerald-500' },
  cache: { label: 'Cache', badge: 'bg-yellow-900/40 text-yellow-300', bar: 'bg-yellow-500' },
  other: { label: 'Appliance', badge: 'bg-slate-800 text-slate-300', bar: 'bg-slate-500' },
};

// Each resource's own DELETE endpoint: one dependency rule for its tab and this view.
const DELETE_PATHS: Partial<Record<Kind, string>> = {
  dataset: '/api/datasets',
  model: '/api/models',
  activation_set: '/api/activations',
  training: '/api/training',
};

function DiskBar({ disk }: { disk: Storage['disk'] }) {
  // The part of the filesystem a user can have: root's reserved blocks are neither used nor free to us.
  const whole = disk.used_bytes + disk.free_bytes || 1;
  const reserve = Math.min(disk.reserve_bytes, disk.free_bytes);
  const ours = Math.min(disk.data_bytes, disk.used_bytes);
  const segments = [
    { id: 'data', name: 'miStudio data', bytes: ours, color: 'bg-emerald-500' },
    { id: 'other', name: 'Other files', bytes: disk.used_bytes - ours, color: 'bg-blue-900' },
    { id: 'free', name: 'Free', bytes: disk.free_bytes - reserve, color: 'bg-slate-700' },
    { id: 'reserve', name: 'Reserve', bytes: reserve, color: 'bg-yellow-600/70' },
  ];
  return (
    <div data-testid="storage-disk" className="bg-slate-900/50 border border-slate-800 rounded-lg p-4 space-y-3">
      <div className="flex items-baseline justify-between gap-4">
        <h3 className="text-sm font-medium text-slate-300">Data disk <span className="text-slate-500 font-normal">{disk.path}</span></h3>
        <div className="text-lg font-semibold tabular-nums" data-testid="storage-free">
          {formatBytes(Math.max(0, disk.free_bytes - reserve))} free of {formatBytes(whole)}
        </div>
      </div>
      <div className="flex h-4 rounded-full overflow-hidden border border-slate-700" role="img"
           aria-label={segments.map((s) => `${s.name} ${formatBytes(s.bytes)}`).join(', ')}>
        {segments.map((s) => (
          <div key={s.id} className={s.color} style={{ width: `${(100 * s.bytes) / whole}%` }} title={`${s.name}: ${formatBytes(s.bytes)}`} />
        ))}
      </div>
      <div className="flex flex-wrap gap-x-4 gap-y-1 text-xs text-slate-400">
        {segments.map((s) => (
          <span key={s.id} className="flex items-center gap-1 tabular-nums" data-testid={`storage-legend-${s.id}`}>
            <span className={`inline-block w-2 h-2 rounded-full ${s.color}`} /> {s.name} {formatBytes(s.bytes)}
          </span>
        ))}
        <span className="text-slate-500">The reserve (MISTUDIO_DISK_RESERVE_MB) stays free: a write that would take it is refused.</span>
      </div>
    </div>
  );
}

function Row({ item, largest, busy, onDelete, onPrune }: {
  item: StorageItem; largest: number; busy: boolean; onDelete: () => void; onPrune: () => void;
}) {
  const kind = KINDS[item.kind];
  const prunable = item.reclaimable_bytes > 0 && (item.kind === 'training' || item.kind === 'cache');
  return (
    <div data-testid="storage-item" data-kind={item.kind} data-id={item.id ?? undefined} data-path={item.path}
         className="p-3 bg-slate-800/30 rounded-lg space-y-2">
      <div className="flex items-center gap-3">
        <span className={`shrink-0 w-24 text-center px-2 py-0.5 rounded-full text-xs ${kind.badge}`}>{kind.label}</span>
        <div className="min-w-0 flex-1">
          <div className="font-medium truncate" title={item.name} data-testid="storage-item-name">{item.name}</div>
          <div className="text-xs text-slate-500 truncate" title={item.path}>{item.path}</div>
        </div>
        <div className="shrink-0 w-24 text-right font-semibold tabular-nums" data-testid="storage-item-size">{formatBytes(item.bytes)}</div>
        <div className="shrink-0 w-80 flex justify-end gap-2 whitespace-nowrap">
          {prunable && (
            <button type="button" data-testid="storage-prune" onClick={onPrune} disabled={busy || Boolean(item.busy)}
                    title={item.busy ? `In use: ${item.busy}` : undefined}
                    className="flex items-center gap-1 px-2 py-1 text-xs rounded bg-slate-700 hover:bg-slate-600 disabled:opacity-50 disabled:cursor-not-allowed">
              <Scissors className="w-3 h-3" aria-hidden="true" />
              {item.kind === 'training' ? 'Prune checkpoints' : 'Remove'} ({formatBytes(item.reclaimable_bytes)})
            </button>
          )}
          {DELETE_PATHS[item.kind] && (
            <button type="button" data-testid="storage-delete" onClick={onDelete} disabled={busy}
                    aria-label={`Delete ${item.name}`}
                    className="flex items-center gap-1 px-2 py-1 text-xs rounded text-slate-400 hover:text-red-400 hover:bg-slate-700 disabled:opacity-50">
              <Trash2 className="w-3 h-3" aria-hidden="true" /> Delete
            </button>
          )}
        </div>
      </div>
      <div className="h-1 bg-slate-800 rounded-full overflow-hidden">
        <div className={`h-full ${kind.bar}`} style={{ width: `${largest ? (100 * item.bytes) / largest : 0}%` }} />
      </div>
      {item.parts.length > 0 && (
        <div className="text-xs text-slate-400 flex flex-wrap gap-x-3" data-testid="storage-parts">
          {item.parts.map((p) => (
            <span key={p.name} className="tabular-nums">
              {p.name}{p.count != null ? ` (${p.count})` : ''} {formatBytes(p.bytes)}
            </span>
          ))}
        </div>
      )}
      {item.used_by.length > 0 && (
        <div className="text-xs text-slate-500" data-testid="storage-used-by">
          Used by {item.used_by.map((d) => `${d.kind.replace('_', ' ')} "${d.name}"`).join(', ')}
        </div>
      )}
      {item.busy && <div className="text-xs text-yellow-400">In use: {item.busy}</div>}
    </div>
  );
}

export function StorageView({ onClose }: { onClose: () => void }) {
  const [storage, setStorage] = useState<Storage | null>(null);
  const [error, setError] = useState<string | null>(null);
  const remove = useConfirmedDelete();
  const { busy, run } = useRequest('Not pruned');
  const { push } = useToast();

  const reload = useCallback(async () => {
    try {
      setStorage(await apiGet<Storage>('/api/system/storage', { timeoutMs: 30000 }));
      setError(null);
    } catch (err) {
      setError(errorMessage(err));
    }
  }, []);

  useEffect(() => {
    void reload();
  }, [reload]);

  const prune = (item: StorageItem) => {
    const question = item.kind === 'training'
      ? `Delete the older checkpoints of ${item.name}? The newest, the best and the ones you saved stay.`
      : `Remove ${item.name} (${formatBytes(item.bytes)})?`;
    if (!window.confirm(question)) return;
    void run(async () => {
      const pruned = item.kind === 'training'
        ? await apiPost<StoragePruned>(`/api/system/storage/trainings/${item.id}/prune`)
        : await apiPost<StoragePruned>('/api/system/storage/cache/prune', { path: item.path });
      push({ type: 'success', title: `Freed ${formatBytes(pruned.freed_bytes)}`,
        message: `${pruned.removed.length} removed` });
      await reload();
    });
  };

  const largest = storage?.items[0]?.bytes ?? 0;
  return (
    <Modal title="Storage" subtitle="What takes the data disk, largest first" onClose={onClose} size="6xl"
           testId="storage-modal">
      <div data-testid="storage-view" className="space-y-4">
        {error && <div className="text-sm text-red-400" role="alert">{error}</div>}
        {!storage && !error && <div className="text-center py-12 text-slate-400">Reading the data disk…</div>}
        {storage && (
          <>
            <DiskBar disk={storage.disk} />
            <div className="flex items-center justify-between">
              <h3 className="text-sm font-medium text-slate-300 flex items-center gap-2">
                <HardDrive className="w-4 h-4" aria-hidden="true" /> {storage.items.length} items
              </h3>
              <button type="button" onClick={() => void reload()} data-testid="storage-refresh"
                      className="flex items-center gap-1 text-xs text-slate-400 hover:text-slate-200">
                <RefreshCw className="w-3 h-3" aria-hidden="true" /> Refresh
              </button>
            </div>
            <div className="space-y-2" data-testid="storage-list">
              {storage.items.map((item) => (
                <Row key={`${item.kind}:${item.path}`} item={item} largest={largest} busy={busy}
                     onPrune={() => prune(item)}
                     onDelete={() => remove(`${DELETE_PATHS[item.kind]}/${item.id}`,
                       `Delete ${KINDS[item.kind].label.toLowerCase()} "${item.name}" (${formatBytes(item.bytes)})?`, reload)} />
              ))}
            </div>
          </>
        )}
      </div>
    </Modal>
  );
}
