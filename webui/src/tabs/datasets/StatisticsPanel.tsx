import type { Dataset, HistogramBucket } from '../../api/types';
import { MetricTile } from '../../components/MetricTile';
import { formatNumber, readyTokenization } from './format';

const SPLIT_COLORS = ['text-emerald-400', 'text-blue-400', 'text-purple-400', 'text-yellow-400'];

function Histogram({ buckets }: { buckets: HistogramBucket[] }) {
  const peak = Math.max(1, ...buckets.map((b) => b.count));
  return (
    <div className="space-y-2" data-testid="length-histogram">
      {buckets.map((b) => (
        <div key={b.range} className="flex items-center gap-4" data-testid="histogram-bar" data-count={b.count}>
          <span className="w-24 text-sm text-slate-400 shrink-0">{b.range}</span>
          <div className="flex-1 h-8 bg-slate-800 rounded overflow-hidden">
            <div className={`h-full bg-gradient-to-r from-emerald-600 to-emerald-400 flex items-center justify-end ${
                   b.count > 0 ? 'px-2' : ''}`}
                 style={{ width: `${(b.count / peak) * 100}%` }}>
              {b.count > 0 && <span className="text-xs text-white">{b.count.toLocaleString('en-US')}</span>}
            </div>
          </div>
        </div>
      ))}
    </div>
  );
}

export function StatisticsPanel({ dataset }: { dataset: Dataset }) {
  const tokens = readyTokenization(dataset)?.stats ?? null;
  const chars = dataset.stats;
  const splits = Object.entries(chars?.splits ?? {});
  const total = splits.reduce((sum, [, n]) => sum + n, 0) || 1;
  return (
    <div className="space-y-6" data-testid="dataset-statistics">
      <div className="grid grid-cols-4 gap-4">
        <div data-testid="stats-total-samples">
          <MetricTile label="Total Samples" value={formatNumber(dataset.num_samples)} color="emerald" size="lg" />
        </div>
        <div data-testid="stats-total-tokens">
          <MetricTile label="Total Tokens" value={tokens ? formatNumber(tokens.total_tokens) : null} color="blue" size="lg" />
        </div>
        <div data-testid="stats-avg-tokens">
          <MetricTile label="Avg Tokens/Sample" value={tokens ? formatNumber(tokens.avg_tokens, 1) : null} color="purple"
                      size="lg" />
        </div>
        <div data-testid="stats-unique-tokens">
          <MetricTile label="Unique Tokens" value={tokens ? formatNumber(tokens.unique_tokens) : null} color="yellow"
                      size="lg" />
        </div>
      </div>
      {!tokens && (
        <p className="text-sm text-slate-400">Token statistics appear once the dataset is tokenized (Tokenization tab);
          until then lengths are in characters.</p>
      )}
      <section className="bg-slate-900/50 border border-slate-800 rounded-lg p-6">
        <h3 className="text-lg font-semibold mb-4">Sequence Length Distribution</h3>
        <Histogram buckets={tokens?.length_histogram ?? chars?.length_histogram ?? []} />
        <p className="text-sm text-slate-400 mt-4" data-testid="length-summary">
          {tokens
            ? `Min: ${formatNumber(tokens.min_tokens)} • Median: ${formatNumber(tokens.median_tokens)} • Max: ${formatNumber(tokens.max_tokens)} tokens`
            : `Min: ${formatNumber(chars?.min_length)} • Median: ${formatNumber(chars?.median_length)} • Max: ${formatNumber(chars?.max_length)} characters`}
        </p>
      </section>
      <section className="bg-slate-900/50 border border-slate-800 rounded-lg p-6">
        <h3 className="text-lg font-semibold mb-4">Split Distribution</h3>
        <div className="grid grid-cols-3 gap-4">
          {splits.map(([name, count], i) => (
            <div key={name} className="bg-slate-800/50 rounded-lg p-4" data-testid="split-tile" data-split={name}>
              <div className="text-sm text-slate-400 mb-1 capitalize">{name}</div>
              <div className={`text-2xl font-bold ${SPLIT_COLORS[i % SPLIT_COLORS.length]}`}>{count.toLocaleString('en-US')}</div>
              <div className="text-xs text-slate-500 mt-1">{Math.round((count / total) * 100)}% of total</div>
            </div>
          ))}
        </div>
      </section>
      {tokens && tokens.top_tokens.length > 0 && (
        <section className="bg-slate-900/50 border border-slate-800 rounded-lg p-6">
          <h3 className="text-lg font-semibold mb-4">Most Frequent Tokens</h3>
          <div className="flex flex-wrap gap-2" data-testid="top-tokens">
            {tokens.top_tokens.map((t) => (
              <span key={t.id} className="px-2 py-1 bg-slate-800 rounded text-sm font-mono" title={`id ${t.id}`}>
                {JSON.stringify(t.text)} <span className="text-slate-400">{(t.share * 100).toFixed(1)}%</span>
              </span>
            ))}
          </div>
        </section>
      )}
    </div>
  );
}
