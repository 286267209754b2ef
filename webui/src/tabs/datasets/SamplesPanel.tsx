import { Check, ChevronDown, ChevronUp, Copy } from 'lucide-react';
import { useEffect, useState } from 'react';

import { apiRequest, errorMessage } from '../../api/client';
import type { Dataset, Pagination, Sample } from '../../api/types';
import { inputClass, selectClass } from '../../components/Form';
import { sourceLabel } from './format';

const LIMIT = 10;

function SampleTile({ sample, fallbackSource }: { sample: Sample; fallbackSource: string }) {
  const [expanded, setExpanded] = useState(false);
  const [copied, setCopied] = useState(false);
  const source = typeof sample.metadata?.source === 'string' ? sample.metadata.source : fallbackSource;
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(sample.text);
      setCopied(true);
      window.setTimeout(() => setCopied(false), 1500);
    } catch {
      setCopied(false);
    }
  };
  return (
    <div className="bg-slate-800/50 rounded-lg p-4" data-testid="sample-tile" data-index={sample.index}>
      <div className="flex items-center justify-between mb-2">
        <span className="text-sm text-slate-400">Sample #{sample.index + 1} • {sample.split}</span>
        <div className="flex items-center gap-2 text-slate-400">
          <button type="button" aria-label="Copy sample" title="Copy" onClick={() => void copy()}
                  className="hover:text-slate-200 transition-colors">
            {copied ? <Check className="w-4 h-4 text-emerald-400" /> : <Copy className="w-4 h-4" />}
          </button>
          <button type="button" aria-label={expanded ? 'Collapse' : 'Expand'} aria-expanded={expanded}
                  onClick={() => setExpanded(!expanded)} className="hover:text-slate-200 transition-colors">
            {expanded ? <ChevronUp className="w-4 h-4" /> : <ChevronDown className="w-4 h-4" />}
          </button>
        </div>
      </div>
      <p className={`text-slate-300 whitespace-pre-wrap break-words ${expanded ? '' : 'line-clamp-3'}`}>{sample.text}</p>
      <div className="mt-2 text-xs text-slate-500">Length: {sample.length.toLocaleString('en-US')} chars • Source: {source}</div>
    </div>
  );
}

export function SamplesPanel({ dataset }: { dataset: Dataset }) {
  const [search, setSearch] = useState('');
  const [query, setQuery] = useState('');
  const [split, setSplit] = useState('');
  const [page, setPage] = useState(1);
  const [samples, setSamples] = useState<Sample[]>([]);
  const [pagination, setPagination] = useState<Pagination | null>(null);
  const [error, setError] = useState<string | null>(null);
  const splits = Object.keys(dataset.stats?.splits ?? {});

  // Typing filters live, after a short pause so each keystroke is not a request.
  useEffect(() => {
    const timer = window.setTimeout(() => { setQuery(search.trim()); setPage(1); }, 250);
    return () => window.clearTimeout(timer);
  }, [search]);

  useEffect(() => {
    const controller = new AbortController();
    const params = new URLSearchParams({ page: String(page), limit: String(LIMIT) });
    if (query) params.set('search', query);
    if (split) params.set('split', split);
    apiRequest<Sample[]>(`/api/datasets/${dataset.id}/samples?${params}`, { signal: controller.signal })
      .then((envelope) => {
        setSamples(envelope.data);
        setPagination(envelope.meta.pagination ?? null);
        setError(null);
      })
      .catch((err) => { if (!controller.signal.aborted) setError(errorMessage(err)); });
    return () => controller.abort();
  }, [dataset.id, page, query, split]);

  const first = pagination && samples.length ? (pagination.page - 1) * pagination.limit + 1 : 0;
  const last = pagination ? first + samples.length - Math.min(1, samples.length) : 0;
  const total = pagination ? `${pagination.total.toLocaleString('en-US')}${pagination.total_exact === false ? '+' : ''}` : '0';

  return (
    <div className="space-y-4" data-testid="dataset-samples">
      <div className="flex gap-4">
        <input data-testid="samples-search" className={inputClass} placeholder="Search in samples..." value={search}
               onChange={(e) => setSearch(e.target.value)} />
        <select data-testid="samples-split" className={`${selectClass} max-w-[12rem]`} value={split}
                onChange={(e) => { setSplit(e.target.value); setPage(1); }}>
          <option value="">All Splits</option>
          {splits.map((s) => <option key={s} value={s}>{s.charAt(0).toUpperCase() + s.slice(1)}</option>)}
        </select>
      </div>
      {error && <p className="text-sm text-red-400">{error}</p>}
      <div className="space-y-3">
        {samples.map((s) => <SampleTile key={`${s.split}-${s.index}`} sample={s} fallbackSource={sourceLabel(dataset)} />)}
        {!error && pagination && samples.length === 0 && (
          <p className="text-center text-slate-400 py-8">No samples match.</p>
        )}
      </div>
      <div className="flex items-center justify-between">
        <span className="text-sm text-slate-400" data-testid="samples-range">
          Showing {first.toLocaleString('en-US')}-{last.toLocaleString('en-US')} of {total}
        </span>
        <div className="flex gap-2">
          <button type="button" data-testid="samples-prev" disabled={!pagination?.has_prev}
                  onClick={() => setPage(page - 1)}
                  className="px-4 py-2 bg-slate-800 hover:bg-slate-700 rounded-lg disabled:opacity-50 disabled:cursor-not-allowed">
            Previous
          </button>
          <button type="button" data-testid="samples-next" disabled={!pagination?.has_next}
                  onClick={() => setPage(page + 1)}
                  className="px-4 py-2 bg-slate-800 hover:bg-slate-700 rounded-lg disabled:opacity-50 disabled:cursor-not-allowed">
            Next
          </button>
        </div>
      </div>
    </div>
  );
}
