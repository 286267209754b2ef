// Shapes of the appliance API (see DECISIONS.md §4). Timestamps are ISO 8601 UTC strings.

export interface Pagination {
  page: number;
  limit: number;
  total: number;
  has_next: boolean;
  has_prev: boolean;
  /** false: counting stopped at a cap and there are at least `total` items. */
  total_exact?: boolean;
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

// --- datasets ---------------------------------------------------------------------------------

export type DatasetStatus = 'downloading' | 'ingesting' | 'ready' | 'error';

export interface HistogramBucket {
  range: string;
  count: number;
}

export interface DatasetStats {
  samples: number;
  total_chars: number;
  avg_length: number;
  min_length: number;
  median_length: number;
  max_length: number;
  length_unit: 'characters';
  length_histogram: HistogramBucket[];
  splits: Record<string, number>;
}

export interface TokenizeSettings {
  tokenizer: string;
  max_length: number;
  padding: 'max_length' | 'longest' | 'do_not_pad';
  truncation: 'longest_first' | 'only_first' | 'only_second' | 'do_not_truncate';
  add_special_tokens: boolean;
  return_attention_mask: boolean;
}

export interface TopToken {
  id: number;
  token: string;
  text: string;
  count: number;
  share: number;
}

export interface TokenStats {
  tokenizer: string;
  vocab_size: number;
  samples: number;
  total_tokens: number;
  avg_tokens: number;
  min_tokens: number;
  median_tokens: number;
  max_tokens: number;
  unique_tokens: number;
  truncated_samples: number;
  length_histogram: HistogramBucket[];
  top_tokens: TopToken[];
}

export interface Tokenization {
  tokenizer: string;
  status: 'tokenizing' | 'ready' | 'error';
  settings: TokenizeSettings;
  stats: TokenStats | null;
  job_id: string | null;
  error: string | null;
  updated_at: string;
}

export interface Dataset {
  id: string;
  name: string;
  source: 'huggingface' | 'upload' | 'local' | 'demo';
  repo_id: string | null;
  split: string | null;
  format: string | null;
  text_column: string;
  status: DatasetStatus;
  error: { code: string; message: string } | null;
  job_id: string | null;
  num_samples: number | null;
  size_bytes: number | null;
  stats: DatasetStats | null;
  created_at: string;
  updated_at: string;
  tokenizations: Tokenization[];
}

export interface Sample {
  index: number;
  split: string;
  length: number;
  text: string;
  metadata: Record<string, unknown> | null;
}

export interface TokenizerInfo {
  id: string;
  name: string;
  source: string;
  vocab_size: number;
}

export interface PreviewToken {
  id: number;
  text: string;
  special: boolean;
}

export interface TokenPreview {
  tokenizer: string;
  tokens: PreviewToken[];
  count: number;
  truncated: boolean;
}

export interface Accepted {
  job_id: string;
  status: JobStatus;
  kind: string;
}

// --- models and activations -------------------------------------------------------------------

export type ModelStatus = 'downloading' | 'loading' | 'quantizing' | 'ready' | 'error';
export type Precision = 'fp32' | 'fp16' | 'bf16' | 'q8' | 'q4';

export interface Model {
  id: string;
  name: string;
  source: 'huggingface' | 'local' | 'demo';
  repo_id: string | null;
  revision: string | null;
  precision: Precision;
  status: ModelStatus;
  error: { code: string; message: string } | null;
  job_id: string | null;
  size_bytes: number | null;
  family: string | null;
  layers: number | null;
  d_model: number | null;
  parameters: number | null;
  memory_mb: Record<Precision, number> | null;
  created_at: string;
  updated_at: string;
}

export interface HookPoint {
  layer: number;
  type: 'residual' | 'mlp_in' | 'mlp' | 'attention';
  name: string;
  module: string;
}

export interface Architecture {
  family: string;
  class: string;
  layers: number;
  d_model: number | null;
  heads: number | null;
  kv_heads: number | null;
  d_mlp: number | null;
  vocab_size: number | null;
  context_length: number | null;
  parameters: number;
  layers_module: string;
  hook_points: HookPoint[];
}

export interface PrecisionSupport {
  name: Precision;
  supported: boolean;
  reason: string;
  bytes_per_param: number;
}

export interface Capabilities {
  device: 'cpu' | 'cuda';
  precisions: PrecisionSupport[];
}

export interface ActivationSet {
  id: string;
  model_id: string;
  dataset_id: string;
  status: 'extracting' | 'ready' | 'error';
  config: { layers: number[]; hook_types: string[]; batch_size: number; max_samples: number | null; context_length: number };
  manifest: { samples: number; tokens: number; d_model: number; tokens_per_second: number | null; peak_rss_mb: number } | null;
  size_bytes: number | null;
  job_id: string | null;
  error: { code: string; message: string } | null;
  created_at: string;
  updated_at: string;
}

// --- training ---------------------------------------------------------------------------------

export type EncoderType = 'sparse' | 'topk' | 'jumprelu' | 'skip' | 'transcoder';

export interface MetricRow {
  step: number;
  tokens: number;
  loss: number | null;
  mse: number | null;
  sparsity_loss: number | null;
  l0: number | null;
  dead_latents: number | null;
  explained_variance: number | null;
  learning_rate: number | null;
  activations_per_s: number | null;
  memory_mb?: number | null;
  eta_s?: number | null;
}

export interface Evaluation {
  explained_variance?: number;
  l0?: number;
  dead_latents?: number;
  never_fired?: number;
  held_out_tokens?: number;
  ce_loss_original?: number;
  ce_loss_with_sae?: number;
  ce_loss_zero_ablation?: number;
  ce_loss_recovered?: number | null;
  kl_divergence?: number;
  density_histogram?: { log10_edges: number[]; counts: number[] };
  imported?: boolean;
  evaluated_at?: number;
}

export interface Training {
  id: string;
  model_id: string;
  dataset_id: string | null;
  activation_id: string | null;
  layer: number;
  hook_type: string;
  encoder_type: EncoderType;
  config: { hyperparameters: Record<string, unknown>; seed?: number; auto_save_interval?: number;
            source?: 'stored' | 'streamed' | 'imported'; origin?: string; d_sae?: number };
  status: 'queued' | 'running' | 'paused' | 'completed' | 'stopped' | 'failed' | 'cancelled';
  job_id: string | null;
  step: number;
  total_steps: number;
  latest: MetricRow | null;
  evaluation: Evaluation | null;
  error: string | null;
  created_at: string;
  updated_at: string;
}

export interface CheckpointInfo {
  step: number;
  tokens: number;
  loss: number | null;
  saved_at: string;
}

export interface TemplateItem {
  id: string;
  kind: string;
  name: string;
  description: string;
  is_favorite: boolean;
  config: Record<string, unknown>;
}

// --- features ---------------------------------------------------------------------------------

export interface FeatureExample {
  tokens: string[];
  activations: number[];
  max_index: number;
}

export interface FeatureRow {
  index: number;
  label: string;
  name: string | null;
  auto_label: string;
  frequency: number;
  max_activation: number;
  mean_activation: number;
  score: number | null;
  is_favorite: boolean;
  example: FeatureExample | null;
}

export interface FeatureContext extends FeatureExample {
  sample: number;
  position: number;
  token_ids: number[];
  max_activation: number;
}

export interface LogitLens {
  positive: [string, number][];
  negative: [string, number][];
  logsumexp?: number;
}

export interface Ablation {
  perplexity_original: number | null;
  perplexity_ablated: number | null;
  perplexity_delta: number | null;
  impact_score: number | null;
  contexts: number;
  tokens: number;
  fired_tokens: number;
}

export interface FeatureDetail {
  index: number;
  label: string;
  name: string | null;
  auto_label: string;
  llm_label: string | null;
  description: string | null;
  is_favorite: boolean;
  frequency: number;
  max_activation: number;
  mean_activation: number;
  active_samples: number;
  score: number | null;
  histogram: { log10_edges: number[]; counts: number[] };
  top_tokens: [string, number][];
  logit_lens: LogitLens;
  examples: FeatureContext[];
  quantile_examples: (FeatureContext & { activation: number; quantile: string })[];
  ablation: Ablation | null;
  map: [number, number] | null;
}

export interface FeatureExtraction {
  training_id: string;
  status: 'none' | 'extracting' | 'ready' | 'error';
  job_id: string | null;
  config: { eval_samples: number; top_k_examples: number; context_length: number; dataset_id: string };
  summary: { features: number; alive: number; dead: number; interpretable_share: number; mean_score: number;
             activation_rate: number; samples: number; tokens: number; tokens_per_second: number } | null;
  map_status: string | null;
  error: string | null;
}

export interface MapPoint {
  index: number;
  x: number;
  y: number;
  frequency: number;
  label: string;
  score: number | null;
}

// --- steering ---------------------------------------------------------------------------------

export type SteeringMode = 'add' | 'clamp' | 'ablate';

/** One feature in a steering request or preset: coefficient in units of its typical max activation. */
export interface SteeringFeatureSetting {
  index: number;
  coefficient: number;
  mode: SteeringMode;
}

/** A preset's config (also the shape "Save Current" posts). */
export interface SteeringConfig {
  training_id: string;
  features: SteeringFeatureSetting[];
  intervention_layer: number | null;
  temperature: number;
  top_p: number;
  max_tokens: number;
  seed: number | null;
  prompt: string;
}

export interface SteeringRequest extends SteeringConfig {
  stream: boolean;
}

export interface SteeringSide {
  text: string;
  tokens: string[];
  token_ids: number[];
}

export interface TokenShift {
  token: string;
  token_id: number;
  baseline_prob: number;
  steered_prob: number;
  delta: number;
}

export interface SteeringMetrics {
  kl_divergence: number | null;
  perplexity_unsteered: number | null;
  perplexity_steered: number | null;
  perplexity_delta: number | null;
  semantic_similarity: number | null;
  word_overlap: number | null;
  shift_position: number;
  token_probability_shifts: TokenShift[];
}

export interface SteeringResult {
  training_id: string;
  prompt: string;
  seed: number;
  intervention_layer: number;
  hook_point: string;
  features: (SteeringFeatureSetting & { label: string; typical_max: number; value: number })[];
  steering_vector_norm: number;
  unsteered: SteeringSide;
  steered: SteeringSide;
  first_divergence: number | null;
  metrics: SteeringMetrics;
  feature_activations: { index: number; unsteered: number[]; steered: number[] }[];
  timing: { prompt_tokens: number; generated_tokens: number; ms_per_token: number | null;
            time_to_first_token_ms: number | null; total_ms: number; device: string; stopped_at_context?: boolean };
}

/** `data` of a `steering.token` event. */
export interface SteeringToken {
  job_id: string;
  side: 'unsteered' | 'steered';
  text: string;
  index: number;
}

export interface SteeringPreset extends TemplateItem {
  config: SteeringConfig & Record<string, unknown>;
  created_at: string;
  updated_at: string;
}

/** POST /api/<kind>/<id>/apply: the settings fitted to the target, and what was changed. */
export interface AppliedTemplate<C = Record<string, unknown>> {
  template_id: string;
  config: C;
  notes: string[];
}
