import { Info, Search, X } from 'lucide-react';
import { useEffect, useState } from 'react';

import { apiGet, errorMessage } from '../../api/client';
import type { FeatureRow, SteeringMode } from '../../api/types';
import { Card } from '../../components/Card';
import { inputClass } from '../../components/Form';
import { GroupTag, groupOf } from '../features/groups';

export interface SelectedFeature {
  index: number;
  label: string;
  coefficient: number;
  mode: SteeringMode;
}

export const MAX_FEATURES = 32;
const MODES: [SteeringMode, string][] = [['add', 'add'], ['clamp', 'clamp'], ['ablate', 'ablate']];
const MODE_HINTS: Record<SteeringMode, string> = {
  add: 'Adds coefficient × the feature\'s typical max activation along its decoder direction',
  clamp: 'Holds the feature\'s activation at coefficient × its typical max activation',
  ablate: 'Removes the feature (its activation set to zero); the coefficient is not used',
};

/** The left card: search the SAE's real features, add them, set each one's coefficient and mode. */
export function FeaturePicker({ trainingId, features, onAdd, onChange, onRemove, onClear, vectorNorm, widths = null }: {
  trainingId: string;
  /** A Matryoshka SAE's group sizes: each feature shows its prefix group. */
  widths?: number[] | null;
  features: SelectedFeature[];
  onAdd: (row: FeatureRow) => void;
  onChange: (index: number, changes: Partial<SelectedFeature>) => void;
  onRemove: (index: number) => void;
  onClear: () => void;
  /** L2 norm of the last run's steering vector, when it was for these features. */
  vectorNorm: number | null;
}) {
  const [search, setSearch] = useState('');
  const [query, setQuery] = useState('');
  const [matches, setMatches] = useState<FeatureRow[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    const timer = window.setTimeout(() => setQuery(search.trim()), 200);
    return () => window.clearTimeout(timer);
  }, [search]);
  useEffect(() => {
    if (!query) {
      setMatches(null);
      return undefined;
    }
    let live = true;
    const params = new URLSearchParams({ search: query, limit: '20' });
    apiGet<FeatureRow[]>(`/api/training/${trainingId}/features?${params}`)
      .then((rows) => { if (live) { setMatches(rows); setError(null); } })
      .catch((err) => { if (live) { setMatches([]); setError(errorMessage(err)); } });
    return () => { live = false; };
  }, [trainingId, query]);

  const chosen = new Set(features.map((f) => f.index));
  const full = features.length >= MAX_FEATURES;
  const add = (row: FeatureRow) => {
    if (chosen.has(row.index) || full) return;
    onAdd(row);
    setSearch('');
    setQuery('');
    setMatches(null);
  };
  const open = search.trim() !== '' && matches !== null && query === search.trim();

  return (
    <Card title="Select Features to Steer" testId="steering-features"
          actions={features.length > 0 && (
            <button type="button" data-testid="steering-clear" onClick={onClear}
                    className="text-sm text-red-400 hover:text-red-300">Clear All</button>
          )}>
      <div className="relative mb-4">
        <Search className="w-5 h-5 text-slate-400 absolute left-3 top-1/2 -translate-y-1/2 pointer-events-none" aria-hidden="true" />
        <input data-testid="steering-search" aria-label="Search features to add" value={search}
               placeholder="Search features to add..." className={`${inputClass} pl-10`}
               onChange={(e) => setSearch(e.target.value)}
               onKeyDown={(e) => {
                 if (e.key === 'Escape') setSearch('');
                 if (e.key === 'Enter' && open && matches && matches.length) {
                   const first = matches.find((m) => !chosen.has(m.index));
                   if (first) add(first);
                 }
               }} />
        {open && (
          <div data-testid="steering-search-results" role="listbox"
               className="absolute z-10 left-0 right-0 mt-1 bg-slate-900 border border-slate-700 rounded-lg shadow-lg max-h-48 overflow-y-auto">
            {matches.length === 0 && (
              <div className="px-4 py-2 text-sm text-slate-500">{error ?? 'No features match your search'}</div>
            )}
            {matches.map((row) => {
              const added = chosen.has(row.index);
              return (
                <button key={row.index} type="button" role="option" aria-selected={added} disabled={added || full}
                        data-testid="steering-search-result" data-index={row.index} onClick={() => add(row)}
                        className="w-full px-4 py-2 flex items-center justify-between gap-3 text-left hover:bg-slate-800 disabled:cursor-default disabled:hover:bg-transparent">
                  <span className="min-w-0 truncate">
                    <span className="font-mono text-sm text-slate-400 mr-2">#{row.index}</span>
                    <span className="text-slate-200">{row.label}</span>
                    <GroupTag group={row.group} widths={widths} />
                  </span>
                  <span className={`text-sm shrink-0 ${added ? 'text-slate-500' : 'text-emerald-400'}`}>
                    {added ? 'Added' : 'Add'}</span>
                </button>
              );
            })}
          </div>
        )}
      </div>

      <div className="text-sm font-medium text-slate-300 mb-3" data-testid="steering-selected-count">
        Selected Features ({features.length}){full && <span className="text-slate-500 font-normal"> • at most {MAX_FEATURES}</span>}
      </div>
      {features.length === 0 ? (
        <p className="text-sm text-slate-500 py-6 text-center">No features selected. Search and add features above.</p>
      ) : (
        <div className="space-y-3">
          {features.map((feature) => (
            <FeatureTile key={feature.index} feature={feature} widths={widths} onChange={(c) => onChange(feature.index, c)}
                         onRemove={() => onRemove(feature.index)} />
          ))}
          <div className="bg-blue-500/10 border border-blue-500/30 rounded-lg p-3 flex gap-3 text-sm" data-testid="steering-vector">
            <Info className="w-5 h-5 text-blue-400 shrink-0" aria-hidden="true" />
            <div>
              <div className="font-medium text-blue-300">Steering Vector</div>
              <div className="text-slate-300">
                Manipulating {features.length} feature{features.length === 1 ? '' : 's'}
                {vectorNorm !== null && <> • L2 norm: <span className="font-mono" data-testid="steering-vector-norm">{vectorNorm.toFixed(3)}</span></>}
              </div>
            </div>
          </div>
        </div>
      )}
    </Card>
  );
}

function FeatureTile({ feature, widths, onChange, onRemove }: {
  feature: SelectedFeature; widths: number[] | null; onChange: (changes: Partial<SelectedFeature>) => void;
  onRemove: () => void;
}) {
  const ablate = feature.mode === 'ablate';
  const quick: [string, number][] = [['Suppress', -2], ['Reset', 0], ['Amplify', 2]];
  return (
    <div className="bg-slate-800/30 rounded-lg p-4 space-y-3" data-testid={`steering-feature-${feature.index}`}
         data-coefficient={feature.coefficient} data-mode={feature.mode}>
      <div className="flex items-center justify-between gap-2">
        <div className="min-w-0 truncate" title={feature.label}>
          <span className="font-mono text-sm text-slate-400 mr-2">#{feature.index}</span>
          <span className="font-medium">{feature.label}</span>
          <GroupTag group={groupOf(widths, feature.index)} widths={widths} />
        </div>
        <div className="flex items-center gap-2 shrink-0">
          <select aria-label={`Mode of feature #${feature.index}`} data-testid="steering-mode" value={feature.mode}
                  title={MODE_HINTS[feature.mode]} onChange={(e) => onChange({ mode: e.target.value as SteeringMode })}
                  className="px-2 py-0.5 text-xs bg-slate-900 border border-slate-700 rounded focus:outline-none focus:border-emerald-500">
            {MODES.map(([value, label]) => <option key={value} value={value}>{label}</option>)}
          </select>
          <button type="button" aria-label={`Remove feature #${feature.index}`} data-testid="steering-remove"
                  onClick={onRemove} className="text-red-400 hover:text-red-300">
            <X className="w-4 h-4" />
          </button>
        </div>
      </div>
      <div className={ablate ? 'opacity-50' : ''}>
        <div className="flex items-center justify-between text-sm mb-1">
          <label htmlFor={`steering-coef-${feature.index}`} className="text-slate-400">Coefficient</label>
          <span className="font-mono text-emerald-400" data-testid="steering-coefficient">{feature.coefficient.toFixed(2)}</span>
        </div>
        <input id={`steering-coef-${feature.index}`} data-testid="steering-slider" type="range" min={-5} max={5} step={0.1}
               value={feature.coefficient} disabled={ablate}
               onChange={(e) => onChange({ coefficient: Math.round(Number(e.target.value) * 10) / 10 })}
               className="w-full accent-emerald-500 cursor-pointer disabled:cursor-not-allowed" />
        <div className="flex justify-between text-xs text-slate-500 mt-1">
          <span>-5.0 (suppress)</span><span>0.0</span><span>+5.0 (amplify)</span>
        </div>
      </div>
      <div className="flex items-center gap-2">
        {quick.map(([label, value]) => (
          <button key={label} type="button" disabled={ablate} onClick={() => onChange({ coefficient: value })}
                  className="px-2 py-1 text-xs bg-slate-700 rounded hover:bg-slate-600 disabled:opacity-50 disabled:cursor-not-allowed">
            {label}</button>
        ))}
        {ablate && <span className="text-xs text-slate-500">ablated: the feature is zeroed</span>}
      </div>
    </div>
  );
}
