import type { Model } from '../../api/types';

export function formatParams(n: number | null | undefined): string {
  if (!n) return 'Unknown';
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

export function formatMb(mb: number | null | undefined): string {
  if (mb === null || mb === undefined) return 'Calculating...';
  return mb >= 1000 ? `${(mb / 1000).toFixed(1)}GB` : `${mb.toFixed(mb >= 10 ? 0 : 1)}MB`;
}

export const PRECISION_LABELS: Record<string, string> = {
  fp32: 'FP32 (Full Precision)', fp16: 'FP16 (Half Precision)', bf16: 'BF16 (bfloat16)', q8: 'Q8 (8-bit)',
  q4: 'Q4 (4-bit)',
};

/** "1.3M params • FP32 • 6MB memory": the line under a model's name. */
export function modelSubline(m: Model): string {
  const memory = m.memory_mb ? formatMb(m.memory_mb[m.precision]) : 'Calculating...';
  return `${formatParams(m.parameters)} params • ${m.precision.toUpperCase()} ${
    m.precision.startsWith('q') ? 'quantization' : 'precision'} • ${memory} memory`;
}

/** The name a downloaded model shows: the last part of its repository path, the name people
 * know a model by ("TinyLlama-1.1B"). */
export const shortName = (m: Model): string => (m.source === 'huggingface' ? m.name.split('/').pop() ?? m.name : m.name);
