import { ChevronDown, ChevronUp, Star } from 'lucide-react';
import { useEffect, useState } from 'react';

import { apiPatch, apiRequest, errorMessage } from '../../api/client';
import type { FeatureRow } from '../../api/types';
import { inputClass, selectClass } from '../../components/Form';
import { ContextChips } from '../../components/TokenChip';
import { useToast } from '../../components/Toasts';
import { GroupTag } from './groups';
import { JudgeTags, ScoreCell } from './scores';

// The score sorts order by the lower end of the 95% interval (what the API sorts by), so two lucky
// samples never top the list; unscored features come last either way.
const SORTS = [['frequency', 'Activation Freq'], ['interpretability', 'Interpretability (lower bound)'],
  ['detection', 'Detection (lower bound)'], ['fuzzing', 'Fuzzing (lower bound)'], ['max_activation', 'Max Activation'],
  ['index', 'Feature ID'], ['name', 'Label']] as const;
const PAGE = 25;

/** The feature table: server-side search, sort, order and pages. */
export function FeatureBrowser({ trainingId, reloadKey, onOpen, group = null, widths = null }: {
  trainingId: string; reloadKey: number; onOpen: (index: number) => void;
  /** A Matryoshka SAE's prefix group to list (null: all) and its group sizes. */
  group?: number | null; widths?: number[] | null;
}) {
  const [search, setSearch] = useState('');
  const [query, setQuery] = useState('');
  const [sortBy, setSortBy] = useState<string>('frequency');
  const [desc, setDesc] = useState(true);
  const [favorites, setFavorites] = useState(false);
  const [page, setPage] = useState(1);
  const [rows, setRows] = useState<FeatureRow[]>([]);
  const [total, setTotal] = useState(0);
  const [tick, setTick] = useState(0);
  const { push } = useToast();

  useEffect(() => {
    const timer = window.setTimeout(() => { setQuery(search); setPage(1); }, 200);
    return () => window.clearTimeout(timer);
  }, [search]);
  useEffect(() => setPage(1), [group]);
  useEffect(() => {
    const params = new URLSearchParams({ sort_by: sortBy, order: desc ? 'desc' : 'asc', page: String(page),
      limit: String(PAGE), ...(query.trim() ? { search: query.trim() } : {}), ...(favorites ? { favorites_only: 'true' } : {}),
      ...(group != null ? { group: String(group) } : {}) });
    let live = true;
    apiRequest<FeatureRow[]>(`/api/training/${trainingId}/features?${params}`).then((envelope) => {
      if (!live) return;
      setRows(envelope.data);
      setTotal(envelope.meta.pagination?.total ?? envelope.data.length);
    }).catch((err) => push({ type: 'error', title: 'Features not loaded', message: errorMessage(err) }));
    return () => { live = false; };
  }, [trainingId, query, sortBy, desc, page, favorites, group, reloadKey, tick, push]);

  const star = async (row: FeatureRow) => {
    try {
      await apiPatch(`/api/training/${trainingId}/features/${row.index}`, { is_favorite: !row.is_favorite });
      setTick((t) => t + 1);
    } catch (err) {
      push({ type: 'error', title: 'Not saved', message: errorMessage(err) });
    }
  };

  const pages = Math.max(1, Math.ceil(total / PAGE));
  return (
    <div className="space-y-4" data-testid="feature-browser">
      <div className="flex gap-2">
        <div className="flex-1">
          <input data-testid="features-search" aria-label="Search features" className={inputClass}
                 placeholder="Search features... (label, token or #id)" value={search} onChange={(e) => setSearch(e.target.value)} />
        </div>
        <div className="w-64 shrink-0">
          <select data-testid="features-sort" aria-label="Sort by" className={selectClass} value={sortBy}
                  onChange={(e) => { setSortBy(e.target.value); setPage(1); }}>
            {SORTS.map(([value, label]) => <option key={value} value={value}>{label}</option>)}
          </select>
        </div>
        <button type="button" data-testid="features-order" aria-label={desc ? 'Descending' : 'Ascending'}
                onClick={() => setDesc(!desc)} className="px-3 bg-slate-800 border border-slate-700 rounded-lg hover:bg-slate-700">
          {desc ? <ChevronDown className="w-5 h-5" /> : <ChevronUp className="w-5 h-5" />}
        </button>
        <button type="button" aria-pressed={favorites} aria-label="Favourites only" onClick={() => { setFavorites(!favorites); setPage(1); }}
                className="px-3 bg-slate-800 border border-slate-700 rounded-lg hover:bg-slate-700">
          <Star className={`w-5 h-5 ${favorites ? 'fill-yellow-400 text-yellow-400' : 'text-slate-400'}`} />
        </button>
      </div>
      <div className="overflow-x-auto">
        <table className="w-full text-sm">
          <thead className="bg-slate-800 text-slate-300">
            <tr>
              <th className="text-left px-4 py-3">ID</th><th className="text-left px-4 py-3">Label</th>
              <th className="text-left px-4 py-3">Example Context</th><th className="text-right px-4 py-3">Activation Freq</th>
              <th className="text-right px-4 py-3">Interpretability</th><th className="text-right px-4 py-3">Actions</th>
            </tr>
          </thead>
          <tbody>
            {rows.length === 0 && (
              <tr><td colSpan={6} className="text-center text-slate-400 py-8">No features match your search</td></tr>
            )}
            {rows.map((row) => (
              <tr key={row.index} data-testid="feature-row" onClick={() => onOpen(row.index)}
                  className="border-b border-slate-800 hover:bg-slate-800/30 cursor-pointer">
                <td className="px-4 py-3 font-mono text-slate-400 whitespace-nowrap">#{row.index}
                  <GroupTag group={row.group} widths={widths} /></td>
                <td className="px-4 py-3 max-w-xs" title={row.label}>
                  <div className="truncate" data-testid="feature-label-cell">{row.label}</div>
                  {row.llm_label && row.llm_label !== row.label && (
                    <div className="truncate text-xs text-slate-400" title={`Explanation: ${row.llm_label}`}>{row.llm_label}</div>
                  )}
                  <JudgeTags row={row} />
                </td>
                <td className="px-4 py-3">
                  {row.example && (
                    <ContextChips variant="table" tokens={row.example.tokens} activations={row.example.activations}
                                  joined={row.example.joined} max={row.max_activation} />
                  )}
                </td>
                <td className="px-4 py-3 text-right text-emerald-400 tabular-nums">{(100 * row.frequency).toFixed(2)}%</td>
                <td className="px-4 py-3 text-right"><ScoreCell row={row} /></td>
                <td className="px-4 py-3 text-right">
                  <button type="button" data-testid="feature-star" aria-label={row.is_favorite ? 'Unfavourite' : 'Favourite'}
                          onClick={(e) => { e.stopPropagation(); void star(row); }}>
                    <Star className={`w-5 h-5 ${row.is_favorite ? 'fill-yellow-400 text-yellow-400' : 'text-slate-500'}`} />
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div className="flex items-center justify-between border-t border-slate-800 pt-4 text-sm text-slate-400">
        <span data-testid="features-count">Showing {rows.length} of {total.toLocaleString('en-US')} features
          {pages > 1 && ` • page ${page} of ${pages}`}</span>
        <div className="flex gap-2">
          <button type="button" disabled={page <= 1} onClick={() => setPage(page - 1)}
                  className="px-3 py-1 bg-slate-800 rounded hover:bg-slate-700 disabled:opacity-40">Previous</button>
          <button type="button" data-testid="features-next" disabled={page >= pages} onClick={() => setPage(page + 1)}
                  className="px-3 py-1 bg-slate-800 rounded hover:bg-slate-700 disabled:opacity-40">Next</button>
        </div>
      </div>
    </div>
  );
}
