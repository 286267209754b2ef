// The appliance API's shapes, as the UI uses them. They come from the API's own OpenAPI document:
// `schema.d.ts` is generated from `openapi.json` (written by `python -m appliance.api.apidoc`; see
// README, Development), so a field the API adds, drops or renames breaks this build instead of a
// page. The few types declared here by hand are either UI-only, or narrow a field the document
// only describes loosely (a status the API types as a plain string, an open JSON object); each says
// which. Timestamps are ISO 8601 UTC strings unless a field says otherwise.
import type { components, paths } from './schema';

type Schemas = components['schemas'];

/**
 * A generated shape with some fields narrowed where the document is loose. Every key of `N` must be
 * a field of `T`, so a narrowing cannot outlive the field it narrows.
 */
type Narrow<T, N extends { [K in keyof N]: K extends keyof T ? unknown : never }> = Omit<T, keyof N> & N;

/**
 * The actions the API allows now on a resource (named after its endpoints: "pause", "delete"...),
 * computed by the API from the resource's status; the UI shows a button when its action is listed.
 * Always sent; the document marks it optional only because the field has a default.
 */
type WithActions = { actions: string[] };

/** What a GET answers in its envelope's `data` (for shapes whose component names are not stable). */
type Answer<P extends keyof paths> = paths[P] extends {
  get: { responses: { 200: { content: { 'application/json': { data: infer D } } } } };
} ? D : never;

// --- envelope ---------------------------------------------------------------------------------

export type Pagination = Schemas['Pagination'];
export type Meta = Schemas['Meta'];
export type ErrorBody = Schemas['ErrorBody'];

export interface Envelope<T> {
  data: T;
  meta: Meta;
}

// --- system -----------------------------------------------------------------------------------

export type ComponentStatus = Schemas['ComponentStatus'];
/** Narrowed: the document types `status` as a string. */
export type Health = Narrow<Schemas['Health'], { status: 'healthy' | 'degraded' }>;
export type WorkerInfo = Schemas['WorkerInfo'];
/** Narrowed: the document types `platform_kind` as a string. */
export type SystemInfo = Narrow<Schemas['SystemInfo'], { platform_kind: 'jetson' | 'nvidia' | 'cpu' }>;
/** One monitoring sample; any field a device cannot report is absent or null (never invented). */
export type MetricsSample = Schemas['SystemMetricsEvent']['data'];
export type SystemMetrics = Schemas['Metrics'];
/** The data disk and what takes its space, largest first (GET /api/system/storage). */
export type Storage = Schemas['Storage'];
export type StorageItem = Schemas['StorageItem'];
export type StoragePruned = Schemas['StoragePruned'];

// --- jobs and events --------------------------------------------------------------------------

export type Job = Schemas['Job'];
export type JobStatus = Job['status'];
export type JobError = Schemas['JobError'];
export type JobTarget = Schemas['JobTarget'];
export type Accepted = Narrow<Schemas['Accepted'], { status: JobStatus }>;

export const ACTIVE_STATUSES: readonly JobStatus[] = ['queued', 'running', 'paused'];
export const FINAL_STATUSES: readonly JobStatus[] = ['completed', 'failed', 'cancelled'];

export function isActive(status: JobStatus): boolean {
  return ACTIVE_STATUSES.includes(status);
}

/** The `data:` of every SSE message: a union tagged by `type`, one member per event. */
export type StreamEvent = Schemas['StreamEvent'];
export type StreamEventType = StreamEvent['type'];
/** The event of one type, e.g. `EventOf<'training.progress'>`. */
export type EventOf<K extends StreamEventType> = Extract<StreamEvent, { type: K }>;

/** The `*.progress` events (each job kind reports on its own), and what they all carry. */
export type ProgressEvent = Extract<StreamEvent, { type: `${string}.progress` }>;
export type JobProgress = ProgressEvent['data'];

// --- datasets ---------------------------------------------------------------------------------

export type DatasetStatus = 'downloading' | 'ingesting' | 'ready' | 'error';

/** UI-side: the document describes a dataset's `stats` as an open object. */
export interface HistogramBucket {
  range: string;
  count: number;
}

/** UI-side: the document describes a dataset's `stats` as an open object. */
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
  // Rows left out at import: no value in the text column (missing), or only whitespace (blank).
  skipped_rows?: { missing: number; blank: number };
}

export type TokenizeSettings = Schemas['TokenizeSettings'];

export interface TopToken {
  id: number;
  token: string;
  text: string;
  count: number;
  share: number;
}

/** UI-side: the document describes a tokenization's `stats` as an open object. */
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

/** Narrowed: `status` is a string and `settings`/`stats` open objects in the document. */
export type Tokenization = Narrow<Schemas['Tokenization'], {
  status: 'tokenizing' | 'ready' | 'error';
  settings: TokenizeSettings;
  stats: TokenStats | null;
} & WithActions>;

/** Narrowed: `source`, `status` are strings and `stats` an open object in the document. */
export type Dataset = Narrow<Schemas['Dataset'], {
  source: 'huggingface' | 'upload' | 'local' | 'demo';
  status: DatasetStatus;
  stats: DatasetStats | null;
  tokenizations?: Tokenization[];
} & WithActions>;

export type Sample = Answer<'/api/datasets/{dataset_id}/samples'>[number];
export type TokenizerInfo = Schemas['TokenizerInfo'];
export type PreviewToken = Schemas['PreviewToken'];
export type TokenPreview = Schemas['Preview'];

// --- models and activations -------------------------------------------------------------------

export type ModelStatus = 'downloading' | 'loading' | 'quantizing' | 'ready' | 'error';
export type Precision = 'fp32' | 'fp16' | 'bf16' | 'q8' | 'q4';

/** Narrowed: `source`, `precision`, `status` are strings and `memory_mb` an open map in the document. */
export type Model = Narrow<Schemas['Model'], {
  source: 'huggingface' | 'local' | 'demo';
  precision: Precision;
  status: ModelStatus;
  memory_mb: Record<Precision, number> | null;
} & WithActions>;

export type Architecture = Answer<'/api/models/{model_id}/architecture'>;
export type HookPoint = NonNullable<Architecture['hook_points']>[number];

/** Narrowed: the document types a precision's `name` as a string. */
export type PrecisionSupport = Narrow<Schemas['PrecisionSupport'], { name: Precision }>;
export type Capabilities = Narrow<Schemas['Capabilities'], {
  device: 'cpu' | 'cuda';
  precisions: PrecisionSupport[];
}>;

/** Narrowed: `status` is a string and `config`/`manifest` open objects in the document. */
export type ActivationSet = Narrow<Schemas['ActivationSet'], {
  status: 'extracting' | 'ready' | 'error';
  // Sets extracted before special tokens could be left out have no exclude_special_tokens: they kept them.
  config: { layers: number[]; hook_types: string[]; batch_size: number; max_samples: number | null;
            context_length: number; exclude_special_tokens?: boolean; special_token_ids?: number[] | null };
  manifest: { samples: number; tokens: number; d_model: number; tokens_per_second: number | null;
              peak_rss_mb: number } | null;
} & WithActions>;

// --- training ---------------------------------------------------------------------------------

export type EncoderType = Schemas['StartRequest']['encoder_type'];
export type Hyperparameters = Schemas['Hyperparameters'];
/** GET /api/training/defaults: a sparse SAE's defaults, flat, and every architecture's in by_encoder_type. */
export type TrainingDefaults = Schemas['TrainingDefaults'];

/** UI-side: a training's `latest` is an open object in the document (the row `training.progress` carries). */
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
  /** Target-L0 mode: the sparsity coefficient this step trained with (null for the k architectures). */
  sparsity_coefficient?: number | null;
}

/** UI-side: a training's `evaluation` is an open object in the document. */
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

export type TrainingStatus = 'queued' | 'running' | 'paused' | 'completed' | 'stopped' | 'failed' | 'cancelled';

/** Narrowed: `encoder_type`, `status` are strings and `config`/`latest`/`evaluation` open objects in the document. */
export type Training = Narrow<Schemas['Training'], {
  encoder_type: EncoderType;
  // A streamed run's excluded_token_ids appear when its worker has resolved them (it starts).
  config: { hyperparameters: Record<string, unknown>; seed?: number; auto_save_interval?: number;
            source?: 'stored' | 'streamed' | 'imported'; origin?: string; d_sae?: number;
            exclude_special_tokens?: boolean; special_token_ids?: number[] | null; excluded_token_ids?: number[] };
  status: TrainingStatus;
  latest: MetricRow | null;
  evaluation: Evaluation | null;
} & WithActions>;

export type CheckpointInfo = Schemas['Checkpoint'];
export type TemplateItem = Schemas['Template'];

// --- features ---------------------------------------------------------------------------------

export type FeatureRow = Schemas['FeatureRow'];
export type FeatureExample = NonNullable<FeatureRow['example']>;

/** UI-side: a feature's `examples` are open objects in the document. */
export interface FeatureContext extends FeatureExample {
  sample: number;
  position: number;
  token_ids: number[];
  max_activation: number;
}

export type LogitLens = Schemas['LogitLens'];

/** UI-side: a feature's `ablation` is an open object in the document. */
export interface Ablation {
  perplexity_original: number | null;
  perplexity_ablated: number | null;
  perplexity_delta: number | null;
  impact_score: number | null;
  contexts: number;
  tokens: number;
  fired_tokens: number;
}

/** Narrowed: `examples`, `quantile_examples`, `ablation` are open objects and `map` a list in the document. */
export type FeatureDetail = Narrow<Schemas['FeatureDetail'], {
  examples: FeatureContext[];
  quantile_examples: (FeatureContext & { activation: number; quantile: string })[];
  ablation: Ablation | null;
  map: [number, number] | null;
}>;

/** Narrowed: the document types the extraction's `status` as a string. */
export type FeatureExtraction = Narrow<Schemas['Extraction'], { status: 'none' | 'extracting' | 'ready' | 'error' }>;
export type MapPoint = Schemas['MapPoint'];

// --- explanations (a language model explains features; a judge scores them) ---------------------

/** GET /api/settings/labeling: the explainer's settings (the key is write-only: only whether one is set). */
export type LabelingView = Schemas['LabelingView'];
export type ExplainRequest = Schemas['ExplainRequest'];
export type FeatureExplanation = Answer<'/api/training/{training_id}/features/{index}/explanations'>[number];
export type JudgeScore = NonNullable<FeatureExplanation['detection']>;
export type JudgeExample = JudgeScore['examples'][number];

/** UI-side: a job's `result` is an open object in the document; this is a `features.explain` job's. */
export interface ExplainResult {
  training_id: string;
  explainer: string;
  requested: number;
  cached: number;
  explained: number;
  scored: number;
  /** Per-feature states that gave no score ("timeout", "unauthorized", "malformed"...), with their counts. */
  failed: Record<string, number>;
  calls: number;
  stopped: 'cap' | null;
}

// --- steering ---------------------------------------------------------------------------------

export type SteeringFeatureSetting = Schemas['FeatureIn'];
export type SteeringMode = SteeringFeatureSetting['mode'];
export type SteeringRequest = Schemas['GenerateRequest'];

/** UI-side: a preset's config (also the shape "Save Current" posts); templates hold open objects. */
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

/** UI-side: POST /api/steering (and `steering.completed`) answer an open object in the document. */
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
  /** appliance/contracts/steering.py SteeringTiming: each side per token on its own, their ratio, and
   *  ms_per_token (the whole run's wall time per token drawn, both sides together). */
  timing: { prompt_tokens: number; generated_tokens: number; unsteered_ms_per_token: number | null;
            steered_ms_per_token: number | null; overhead_ratio: number | null; ms_per_token: number | null;
            time_to_first_token_ms: number | null; total_ms: number; device: string; stopped_at_context?: boolean };
}

/** `data` of a `steering.token` event. */
export type SteeringToken = EventOf<'steering.token'>['data'];

export type SteeringPreset = Narrow<TemplateItem, { config: SteeringConfig & Record<string, unknown> }>;

/** POST /api/<kind>/<id>/apply: the settings fitted to the target, and what was changed. */
export type AppliedTemplate<C = Record<string, unknown>> = Narrow<Schemas['Applied'], { config: C }>;
