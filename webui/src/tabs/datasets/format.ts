import type { Dataset } from '../../api/types';

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value >= 100 ? 0 : 1)}${units[unit]}`;
}

export const formatNumber = (n: number | null | undefined, digits = 0): string =>
  n === null || n === undefined ? '—' : n.toLocaleString('en-US', { maximumFractionDigits: digits });

const SOURCES: Record<Dataset['source'], string> = {
  huggingface: 'HuggingFace', upload: 'Upload', local: 'Local file', demo: 'Built-in demo',
};

export const sourceLabel = (d: Dataset): string => SOURCES[d.source] ?? d.source;

const FORMATS: Record<string, string> = {
  json: 'JSON Lines', csv: 'CSV', parquet: 'Parquet', text: 'Plain text', 'python-docstrings': 'Python docstrings',
};

export const formatLabel = (d: Dataset): string =>
  d.format ? FORMATS[d.format] ?? d.format : d.source === 'huggingface' ? 'Hub dataset (Arrow)' : '—';

/** A sentence about where the data came from, from what the appliance knows (never invented). */
export function describe(d: Dataset): string {
  switch (d.source) {
    case 'huggingface':
      return `Downloaded from huggingface.co/datasets/${d.repo_id ?? d.name}, split "${d.split ?? 'train'}", `
        + `text column "${d.text_column}".`;
    case 'demo':
      return 'Docstrings and language-reference paragraphs of this device\'s Python standard library, '
        + 'built offline on first start (Python Software Foundation License). The demo model is trained on it.';
    case 'upload':
      return `Uploaded ${formatLabel(d)} file, text column "${d.text_column}".`;
    default:
      return `Imported ${formatLabel(d)} file from the data folder, text column "${d.text_column}".`;
  }
}

/** The newest ready tokenization, whose statistics the Overview and Statistics tabs show. */
export const readyTokenization = (d: Dataset) => (d.tokenizations ?? []).find((t) => t.status === 'ready' && t.stats) ?? null;

/** "2 rows skipped: 1 without text, 1 blank", or null when every row of the file became a sample. */
export function skippedRows(d: Dataset): string | null {
  const skipped = d.stats?.skipped_rows;
  if (!skipped || skipped.missing + skipped.blank === 0) return null;
  const total = skipped.missing + skipped.blank;
  const why = [skipped.missing ? `${formatNumber(skipped.missing)} without text` : '',
    skipped.blank ? `${formatNumber(skipped.blank)} blank` : ''].filter(Boolean).join(', ');
  return `${formatNumber(total)} row${total === 1 ? '' : 's'} skipped: ${why}`;
}
