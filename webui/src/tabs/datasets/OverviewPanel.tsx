import type { Dataset } from '../../api/types';
import { MetricTile } from '../../components/MetricTile';
import { describe, formatBytes, formatLabel, formatNumber, readyTokenization, skippedRows, sourceLabel } from './format';

function InfoTile({ label, value }: { label: string; value: string }) {
  return (
    <div className="bg-slate-800/50 rounded-lg p-4">
      <div className="text-sm text-slate-400 mb-1">{label}</div>
      <div className="text-lg font-medium">{value}</div>
    </div>
  );
}

export function OverviewPanel({ dataset }: { dataset: Dataset }) {
  const tokens = readyTokenization(dataset)?.stats ?? null;
  const skipped = skippedRows(dataset);
  return (
    <div className="space-y-6" data-testid="dataset-overview">
      <section>
        <h3 className="text-lg font-semibold mb-4">Dataset Information</h3>
        <div className="grid grid-cols-2 gap-4">
          <InfoTile label="Source" value={sourceLabel(dataset)} />
          <InfoTile label="Size" value={formatBytes(dataset.size_bytes)} />
          <InfoTile label="Format" value={formatLabel(dataset)} />
          <InfoTile label="Status" value={dataset.status === 'ready' ? 'Ready' : dataset.status} />
        </div>
      </section>
      <section>
        <h3 className="text-lg font-semibold mb-4">Description</h3>
        <div className="bg-slate-800/50 rounded-lg p-4 text-slate-300">{describe(dataset)}</div>
        {skipped && (
          <p className="mt-2 text-sm text-yellow-400" data-testid="dataset-overview-skipped">
            {skipped}. Rows with no text in column "{dataset.text_column}" are left out, not kept as empty samples.
          </p>
        )}
      </section>
      <section>
        <h3 className="text-lg font-semibold mb-4">Quick Stats</h3>
        <div className="grid grid-cols-3 gap-4">
          <MetricTile label="Total Samples" value={formatNumber(dataset.num_samples)} color="emerald" />
          {tokens ? (
            <MetricTile label="Avg Length" value={formatNumber(tokens.avg_tokens, 1)} color="blue" caption="tokens" />
          ) : (
            <MetricTile label="Avg Length" value={formatNumber(dataset.stats?.avg_length, 1)} color="blue"
                        caption="characters (tokenize for tokens)" />
          )}
          <MetricTile label="Vocabulary" value={tokens ? formatNumber(tokens.unique_tokens) : null} color="purple"
                      caption={tokens ? 'unique tokens' : 'tokenize to count'} />
        </div>
      </section>
    </div>
  );
}
