// Shapes of the appliance API (see DECISIONS.md §4). Timestamps are ISO 8601 UTC strings.

export interface Pagination {
  page: number;
  limit: number;
  total: number;
  has_next: boolean;
  has_prev: boolean;
}

export interface Meta {
  pagination?: Pagination;
  [key: string]: unknown;
}

export interface Envelope<T> {
  data: T;
  meta: Meta;
}

export interface ErrorBody {
  code: string;
  message: string;
  details: unknown;
  retryable: boolean;
  timestamp: string;
}

export interface ComponentStatus {
  ok: boolean;
  detail: string;
}

export interface Health {
  status: 'healthy' | 'degraded';
  version: string;
  uptime_s: number;
  components: Record<string, ComponentStatus>;
}

export interface WorkerInfo {
  pid: number;
  alive: boolean;
  started_at: string;
  last_seen_at: string;
  python: string | null;
  torch: string | null;
  transformers: string | null;
}

export interface SystemInfo {
  version: string;
  device_name: string;
  hostname: string;
  platform: string;
  platform_kind: 'jetson' | 'nvidia' | 'cpu';
  board: string | null;
  soc: string | null;
  l4t: string | null;
  jetpack: string | null;
  gpu_name: string | null;
  cuda_available: boolean;
  unified_memory: boolean;
  total_memory_mb: number;
  memory_budget_mb: number;
  python: string;
  data_dir: string;
  worker: WorkerInfo | null;
}

/** One monitoring sample; any field a device cannot report is absent (never invented). */
export interface MetricsSample {
  timestamp: number;
  source: 'tegrastats' | 'jtop' | 'proc';
  cpu?: { index: number; online: boolean; load_pct?: number; freq_mhz?: number }[];
  cpu_load_pct?: number;
  gpu_load_pct?: number;
  gpu_freq_mhz?: number;
  ram_used_mb?: number;
  ram_total_mb?: number;
  swap_used_mb?: number;
  swap_total_mb?: number;
  gpu_mem_used_mb?: number;
  gpu_mem_total_mb?: number;
  emc_load_pct?: number;
  emc_freq_mhz?: number;
  temperatures_c?: Record<string, number>;
  power?: { name: string; current_mw: number; average_mw?: number }[];
  fan_pct?: number;
  process_rss_mb?: { api?: number; worker?: number };
}

export interface SystemMetrics {
  latest: MetricsSample | null;
  history: MetricsSample[];
  interval_s: number;
  source: string | null;
}

export type JobStatus = 'queued' | 'running' | 'paused' | 'completed' | 'failed' | 'cancelled';

export const ACTIVE_STATUSES: readonly JobStatus[] = ['queued', 'running', 'paused'];
export const FINAL_STATUSES: readonly JobStatus[] = ['completed', 'failed', 'cancelled'];

export interface JobError {
  code: string;
  message: string;
}

export interface JobTarget {
  type: string;
  id: string;
}

export interface Job {
  id: string;
  kind: string;
  lane: 'heavy' | 'interactive';
  status: JobStatus;
  progress: number;
  message: string;
  params: Record<string, unknown>;
  result: unknown;
  error: JobError | null;
  target: JobTarget | null;
  attempts: number;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  updated_at: string;
}

/** The `data:` of every SSE message. */
export interface StreamEvent<T = unknown> {
  id: number | null; // null: an ephemeral event (system.metrics), never stored or replayed
  topic: string;
  type: string;
  job_id: string | null;
  created_at: string;
  data: T;
}

export interface JobProgress {
  job_id: string;
  progress: number;
  message: string;
  [key: string]: unknown;
}

export function isActive(status: JobStatus): boolean {
  return ACTIVE_STATUSES.includes(status);
}
