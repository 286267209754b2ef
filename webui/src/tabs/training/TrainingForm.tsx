import { ChevronDown, ChevronUp, Play } from 'lucide-react';
import { useEffect, useMemo, useState } from 'react';

import { apiGet, apiPost, errorMessage } from '../../api/client';
import type {
  Accepted, ActivationSet, Dataset, EncoderType, Hyperparameters, Model, TemplateItem, TrainingDefaults,
} from '../../api/types';
import { Card } from '../../components/Card';
import { Field, inputClass, NumberInput, PrimaryButton, selectClass } from '../../components/Form';
import {
  describeExcluded, SPECIAL_TOKENS_DEFAULT, SpecialTokensField, specialTokensBody, specialTokensValid,
} from '../../components/SpecialTokens';
import { useToast } from '../../components/Toasts';
import { ToggleRow } from '../../components/Toggle';
import { useFieldValidity } from '../../hooks/useFieldValidity';
import { useRequest } from '../../hooks/useRequest';

const ENCODERS: [EncoderType, string][] = [
  ['sparse', 'Sparse Autoencoder'], ['topk', 'TopK Autoencoder'], ['batchtopk', 'BatchTopK Autoencoder'],
  ['matryoshka_batchtopk', 'Matryoshka BatchTopK Autoencoder'], ['jumprelu', 'JumpReLU Autoencoder'],
  ['gated', 'Gated Autoencoder'], ['skip', 'Skip Autoencoder'], ['transcoder', 'Transcoder'],
];
// k is the active latents per token for TopK, their average over the batch for the batch variants.
const K_ARCHITECTURES: EncoderType[] = ['topk', 'batchtopk', 'matryoshka_batchtopk'];

// The hyperparameters this form sets; the rest keep the API's defaults.
const FORM_FIELDS = ['learning_rate', 'batch_size', 'l1_coefficient', 'l0_coefficient', 'expansion_factor',
  'total_steps', 'lr_decay', 'optimizer', 'ghost_grads', 'k', 'target_l0', 'matryoshka_widths'] as const;
// Their defaults depend on the architecture (the API's by_encoder_type): they follow the Encoder Type
// until the user edits them (or a template names them).
const PER_ARCHITECTURE = ['learning_rate', 'l1_coefficient'] as const;
// Not on the form, but the start request fits it to the run's length (see start below).
const FITTED_FIELDS = ['log_every'] as const;
type Hyper = Pick<Required<Hyperparameters>, (typeof FORM_FIELDS)[number] | (typeof FITTED_FIELDS)[number]>
  & { auto_save_interval: number };
// Not a hyperparameter: the start request's own default, the interval between automatic checkpoints.
const AUTO_SAVE_INTERVAL = 500;

/** The form's starting values: the API's defaults (GET /api/training/defaults), the one set there is. */
function fromDefaults(defaults: Required<Hyperparameters>): Hyper {
  const picked = Object.fromEntries([...FORM_FIELDS, ...FITTED_FIELDS].map((key) => [key, defaults[key]])) as
    Omit<Hyper, 'auto_save_interval'>;
  return { ...picked, auto_save_interval: AUTO_SAVE_INTERVAL };
}

/** ``encoder``'s defaults for the settings that depend on the architecture, but those in ``keep``. */
function architectureDefaults(defaults: TrainingDefaults | null, encoder: EncoderType,
  keep: ReadonlySet<string>): Partial<Hyper> {
  const own = defaults?.by_encoder_type[encoder];
  if (!own) return {};
  return Object.fromEntries(PER_ARCHITECTURE.filter((key) => !keep.has(key)).map((key) => [key, own[key] ?? null]));
}
const HOOKS: [string, string][] = [['residual', 'Residual stream'], ['mlp', 'MLP output'], ['attention', 'Attention output']];
const L1_ARCHITECTURES: EncoderType[] = ['sparse', 'skip', 'transcoder', 'gated'];
// Ghost grads act on the plain ReLU encoders' latents; the gated encoder has its own auxiliary loss.
const GHOST_ARCHITECTURES: EncoderType[] = ['sparse', 'skip', 'transcoder'];
// The architectures with a sparsity coefficient: a target L0 adapts it during training instead.
const COEFFICIENT_ARCHITECTURES: EncoderType[] = [...L1_ARCHITECTURES, 'jumprelu'];

/** "256, 512, 1024" as a list of widths; null when blank (the default groups); undefined when not numbers. */
function parseWidths(text: string): number[] | null | undefined {
  if (!text.trim()) return null;
  const widths = text.split(/[\s,]+/).filter(Boolean).map(Number);
  return widths.every((w) => Number.isInteger(w) && w > 0) ? widths : undefined;
}

export function TrainingForm({ datasets, models, sets, onStarted }: {
  datasets: Dataset[]; models: Model[]; sets: ActivationSet[]; onStarted: () => void;
}) {
  const [datasetId, setDatasetId] = useState('');
  const [modelId, setModelId] = useState('');
  const [encoder, setEncoder] = useState<EncoderType>('sparse');
  const [setId, setSetId] = useState('');
  const [layer, setLayer] = useState<number | null>(null);
  const [hookType, setHookType] = useState('residual');
  const [source, setSource] = useState<'stored' | 'streamed'>('stored');
  const [contextLength, setContextLength] = useState(128);
  const [maxSamples, setMaxSamples] = useState(2000);
  const [special, setSpecial] = useState(SPECIAL_TOKENS_DEFAULT);  // streamed only: a stored set made its choice
  const [advanced, setAdvanced] = useState(false);
  const [hyper, setHyper] = useState<Hyper | null>(null);  // null until the API's defaults arrive
  const [defaults, setDefaults] = useState<TrainingDefaults | null>(null);
  // The per-architecture settings the user set (or a template named): a change of architecture keeps them.
  const [edited, setEdited] = useState<ReadonlySet<string>>(new Set());
  const [templates, setTemplates] = useState<TemplateItem[]>([]);
  const [widthsText, setWidthsText] = useState('');  // the Matryoshka widths as typed
  const fields = useFieldValidity();  // the number fields: Start waits while one cannot be sent
  const { busy, run } = useRequest('Training not started');
  const { push } = useToast();

  const matching = useMemo(() => sets.filter((s) => s.status === 'ready' && s.model_id === modelId
    && s.dataset_id === datasetId), [sets, modelId, datasetId]);
  const streaming = source === 'streamed' || matching.length === 0;
  const chosen = streaming ? undefined : matching.find((s) => s.id === setId) ?? matching[0];
  const model = models.find((m) => m.id === modelId);
  // Layers and hooks: what the activation set holds, or (streaming) every layer of the model.
  const layerChoices = chosen ? chosen.config.layers : Array.from({ length: model?.layers ?? 0 }, (_, i) => i);
  const hookChoices = (chosen ? HOOKS.filter(([h]) => chosen.config.hook_types.includes(h)) : HOOKS);
  const transcoder = encoder === 'transcoder';
  const transcoderReady = !chosen || (chosen.config.hook_types.includes('mlp_in') && chosen.config.hook_types.includes('mlp'));
  useEffect(() => {
    if (chosen && chosen.id !== setId) setSetId(chosen.id);
    if (layerChoices.length && (layer === null || !layerChoices.includes(layer))) setLayer(layerChoices[layerChoices.length - 1]);
    if (hookChoices.length && !hookChoices.some(([h]) => h === hookType)) setHookType(hookChoices[0][0]);
  }, [chosen, setId, layer, hookType, layerChoices, hookChoices]);

  useEffect(() => {
    apiGet<TemplateItem[]>('/api/templates/training').then(setTemplates).catch(() => setTemplates([]));
    apiGet<TrainingDefaults>('/api/training/defaults').then((d) => {
      setDefaults(d);
      // The flat fields are a sparse SAE's, the form's first encoder.
      setHyper((h) => h ?? fromDefaults(d as Required<Hyperparameters>));
    }).catch((err) => push({ type: 'error', title: 'Training defaults not loaded', message: errorMessage(err) }));
  }, [push]);

  const set = <K extends keyof Hyper>(key: K, value: Hyper[K]) => {
    setHyper((h) => h && { ...h, [key]: value });
    setEdited((e) => new Set(e).add(key));
  };

  const chooseEncoder = (next: EncoderType) => {
    setEncoder(next);
    setHyper((h) => h && { ...h, ...architectureDefaults(defaults, next, edited) });
  };

  const applyTemplate = async (id: string) => {
    try {
      const applied = await apiPost<{ config: { encoder_type: EncoderType; hyperparameters: Partial<Hyper> } }>(
        `/api/templates/training/${id}/apply`, {});
      // What the template leaves unset (null) takes its architecture's defaults.
      const named = Object.fromEntries(Object.entries(applied.config.hyperparameters).filter(([, v]) => v != null));
      const kept = new Set(PER_ARCHITECTURE.filter((key) => key in named));
      setEncoder(applied.config.encoder_type);
      setEdited(kept);
      // The architecture-specific settings come from the template or not at all.
      setHyper((h) => h && { ...h, ...architectureDefaults(defaults, applied.config.encoder_type, kept),
                             target_l0: null, matryoshka_widths: null, ...named });
      setWidthsText((named.matryoshka_widths as number[] | undefined)?.join(', ') ?? '');
      setAdvanced(true);
    } catch (err) {
      push({ type: 'error', title: 'Template not applied', message: errorMessage(err) });
    }
  };

  const saveTemplate = async () => {
    const name = window.prompt('Template name');
    if (!name || !hyper) return;
    try {
      const { auto_save_interval: _, ...all } = hyper;
      // Unedited per-architecture settings stay unnamed: the template then follows the defaults.
      const hp = Object.fromEntries(Object.entries(all).filter(([key]) =>
        !(PER_ARCHITECTURE as readonly string[]).includes(key) || edited.has(key)));
      const created = await apiPost<TemplateItem>('/api/templates/training', { name, config: { encoder_type: encoder,
        hyperparameters: hp } });
      setTemplates((t) => [created, ...t]);
      push({ type: 'success', title: 'Template saved', message: name });
    } catch (err) {
      push({ type: 'error', title: 'Template not saved', message: errorMessage(err) });
    }
  };

  const start = async () => {
    if (layer === null || (!chosen && !streaming) || !hyper) return;
    const { auto_save_interval: autoSave, ...hp } = hyper;
    const from = chosen ? { activation_id: chosen.id }
      : { model_id: modelId, dataset_id: datasetId, context_length: contextLength, max_samples: maxSamples,
          ...specialTokensBody(special) };
    await run(async () => {
      await apiPost<Accepted>('/api/training/start', {
        ...from, layer, hook_type: transcoder ? 'mlp_in' : hookType, encoder_type: encoder, auto_save_interval: autoSave,
        hyperparameters: { ...hp, ghost_grads: hp.ghost_grads && GHOST_ARCHITECTURES.includes(encoder),
                           // Only the L1 architectures have an L1 term; the others record none.
                           l1_coefficient: L1_ARCHITECTURES.includes(encoder) ? hp.l1_coefficient : null,
                           target_l0: COEFFICIENT_ARCHITECTURES.includes(encoder) ? hp.target_l0 : null,
                           matryoshka_widths: encoder === 'matryoshka_batchtopk' ? hp.matryoshka_widths : null,
                           warmup_steps: Math.min(100, Math.floor(hp.total_steps / 10)),
                           // A chart point at least every log_every steps (the API's default), and
                           // about a hundred over a short run.
                           log_every: Math.min(hp.log_every, Math.max(1, Math.floor(hp.total_steps / 100))) },
      });
      onStarted();
    });
  };

  return (
    <Card testId="training-form">
      <div className="space-y-4">
        <div className="grid grid-cols-1 md:grid-cols-3 gap-4">
          <ReadySelect id="train-dataset" label="Dataset" items={datasets} value={datasetId} onChange={setDatasetId} />
          <ReadySelect id="train-model" label="Model" items={models} value={modelId} onChange={setModelId} />
          <Field label="Encoder Type" htmlFor="train-encoder">
            <select id="train-encoder" data-testid="train-encoder" className={selectClass} value={encoder}
                    onChange={(e) => chooseEncoder(e.target.value as EncoderType)}>
              {ENCODERS.map(([value, label]) => <option key={value} value={value}>{label}</option>)}
            </select>
          </Field>
        </div>
        {datasetId && modelId && (
          <div className="space-y-4" data-testid="train-source">
            <div className="grid grid-cols-1 md:grid-cols-3 gap-4">
              <Field label="Activations" htmlFor="train-source-kind"
                     hint={streaming ? 'computed by the model while the SAE trains, through a shuffle buffer' : undefined}>
                <select id="train-source-kind" data-testid="train-source-kind" className={selectClass}
                        value={streaming ? 'streamed' : 'stored'} onChange={(e) => setSource(e.target.value as 'stored' | 'streamed')}>
                  <option value="stored" disabled={matching.length === 0}>
                    {matching.length ? 'A stored activation set' : 'A stored activation set (none yet)'}</option>
                  <option value="streamed">Stream from the model</option>
                </select>
              </Field>
              {chosen ? (
                <Field label="Activation Set" htmlFor="train-set">
                  <select id="train-set" data-testid="train-set" className={selectClass} value={chosen.id}
                          onChange={(e) => setSetId(e.target.value)}>
                    {matching.map((s) => (
                      <option key={s.id} value={s.id}>{(s.manifest?.tokens ?? 0).toLocaleString('en-US')} tokens · layers {s.config.layers.join(', ')}</option>
                    ))}
                  </select>
                </Field>
              ) : (
                <div className="grid grid-cols-2 gap-2">
                  <Field label="Context" htmlFor="train-context">
                    <NumberInput id="train-context" integer min={2} max={32768} value={contextLength}
                                 onChange={setContextLength} onValidity={fields.track('context')} />
                  </Field>
                  <Field label="Samples" htmlFor="train-samples">
                    <NumberInput id="train-samples" testId="train-samples" integer min={1} value={maxSamples}
                                 onChange={setMaxSamples} onValidity={fields.track('samples')} />
                  </Field>
                </div>
              )}
              <div className="grid grid-cols-2 gap-2">
                <Field label="Layer" htmlFor="train-layer">
                  <select id="train-layer" data-testid="train-layer" className={selectClass} value={layer ?? ''}
                          onChange={(e) => setLayer(Number(e.target.value))}>
                    {layerChoices.map((l) => <option key={l} value={l}>Layer {l}</option>)}
                  </select>
                </Field>
                <Field label="Hook" htmlFor="train-hook">
                  {transcoder ? (
                    <select id="train-hook" data-testid="train-hook" className={selectClass} disabled value="mlp_in">
                      <option value="mlp_in">MLP in → MLP out</option>
                    </select>
                  ) : (
                    <select id="train-hook" data-testid="train-hook" className={selectClass} value={hookType}
                            onChange={(e) => setHookType(e.target.value)}>
                      {hookChoices.map(([h, label]) => <option key={h} value={h}>{label}</option>)}
                    </select>
                  )}
                </Field>
              </div>
            </div>
            {chosen ? (
              <div data-testid="train-special-recorded">
                <ToggleRow label="Leave out special tokens (BOS/EOS/PAD)" disabled onChange={() => undefined}
                           checked={chosen.config.exclude_special_tokens ?? false}
                           description={`As the activation set was extracted: ${describeExcluded(chosen.excluded_token_ids)}`} />
              </div>
            ) : <SpecialTokensField testId="train-special" value={special} onChange={setSpecial} />}
            {transcoder && !transcoderReady && (
              <p className="text-sm text-yellow-400">This activation set lacks the MLP input and output: extract
                "MLP Input + Output" in the Models tab, or stream from the model.</p>
            )}
          </div>
        )}
        <div className="flex gap-2">
          <select aria-label="Load template" data-testid="train-template" className={`${selectClass} max-w-xs`} value=""
                  onChange={(e) => { if (e.target.value) void applyTemplate(e.target.value); }}>
            <option value="">Load template...</option>
            {templates.map((t) => <option key={t.id} value={t.id}>{t.is_favorite ? '★ ' : ''}{t.name}</option>)}
          </select>
          <button type="button" onClick={() => void saveTemplate()}
                  className="px-4 py-2 bg-slate-800 hover:bg-slate-700 rounded-lg text-sm">Save as template</button>
        </div>
        <button type="button" data-testid="train-advanced-toggle" onClick={() => setAdvanced(!advanced)}
                className="w-full flex items-center justify-between px-4 py-3 bg-slate-800 rounded-lg hover:bg-slate-700">
          <span>Advanced Hyperparameters</span>
          {advanced ? <ChevronUp className="w-5 h-5" /> : <ChevronDown className="w-5 h-5" />}
        </button>
        {advanced && hyper && (
          <div className="grid grid-cols-1 md:grid-cols-2 gap-4 pt-4 border-t border-slate-800" data-testid="train-advanced">
            <Field label="Learning Rate" htmlFor="hp-lr">
              <NumberInput id="hp-lr" testId="train-lr" step={0.0001} min={0} minExclusive max={0.1}
                           value={hyper.learning_rate} onChange={(v) => set('learning_rate', v)}
                           onValidity={fields.track('learning_rate')} />
            </Field>
            <NumberSelect id="hp-batch" label="Batch Size" value={hyper.batch_size}
                          choices={[64, 128, 256, 512, 1024, 2048, 4096]} onChange={(v) => set('batch_size', v)} />
            {K_ARCHITECTURES.includes(encoder) ? (
              <Field label={encoder === 'topk' ? 'Active latents (k)' : 'Average active latents (k)'} htmlFor="hp-k"
                     hint={encoder === 'topk' ? undefined : 'the k × batch largest activations over the whole batch'}>
                <NumberInput id="hp-k" testId="train-k" integer min={1} max={4096} value={hyper.k}
                             onChange={(v) => set('k', v)} onValidity={fields.track('k')} />
              </Field>
            ) : hyper.target_l0 != null ? (
              <Field label={encoder === 'jumprelu' ? 'L0 Coefficient' : 'L1 Coefficient (λ)'} htmlFor="hp-coef-auto">
                <p id="hp-coef-auto" data-testid="train-coefficient-auto" className="text-sm text-slate-400 py-2">
                  adapted during training to reach the target L0 (starts at this architecture's default)</p>
              </Field>
            ) : encoder === 'jumprelu' ? (
              <Field label="L0 Coefficient" htmlFor="hp-l0" hint="on activations normalised to mean norm √d">
                <NumberInput id="hp-l0" testId="train-l0" step={0.1} min={0} max={100} value={hyper.l0_coefficient}
                             onChange={(v) => set('l0_coefficient', v)} onValidity={fields.track('l0_coefficient')} />
              </Field>
            ) : (
              <Field label="L1 Coefficient (λ)" htmlFor="hp-l1"
                     hint="on activations normalised to mean norm √d; the default is this architecture's">
                <NumberInput id="hp-l1" testId="train-l1" step={0.1} min={0} max={100} value={hyper.l1_coefficient}
                             onChange={(v) => set('l1_coefficient', v)} onValidity={fields.track('l1_coefficient')} />
              </Field>
            )}
            {COEFFICIENT_ARCHITECTURES.includes(encoder) && (
              <Field label="Target L0 (blank = off)" htmlFor="hp-target-l0"
                     hint="active latents per token wanted; the coefficient adapts to reach it">
                <NumberInput id="hp-target-l0" testId="train-target-l0" optional min={1} max={1048576} step={1}
                             value={hyper.target_l0} onChange={(v) => set('target_l0', v)}
                             onValidity={fields.track('target_l0')} />
              </Field>
            )}
            {encoder === 'matryoshka_batchtopk' && (
              <Field label="Matryoshka group widths" htmlFor="hp-widths"
                     hint={widthsText !== '' && parseWidths(widthsText) === undefined ? 'whole numbers, e.g. 256, 512, 1024'
                       : 'nested prefix sizes, increasing, the last = the SAE width; blank: 1/16, 1/8, 1/4, 1/2, all'}>
                <input id="hp-widths" data-testid="train-widths" type="text" className={inputClass} value={widthsText}
                       placeholder="1/16, 1/8, 1/4, 1/2, all of the latents"
                       onChange={(e) => {
                         setWidthsText(e.target.value);
                         const widths = parseWidths(e.target.value);
                         if (widths !== undefined) set('matryoshka_widths', widths);
                       }} />
              </Field>
            )}
            <NumberSelect id="hp-exp" label="Expansion Factor" value={hyper.expansion_factor} choices={[2, 4, 8, 16, 32]}
                          unit="x" onChange={(v) => set('expansion_factor', v)} />
            <Field label="Training Steps" htmlFor="hp-steps">
              <NumberInput id="hp-steps" testId="train-steps" integer min={1} max={10_000_000} value={hyper.total_steps}
                           onChange={(v) => set('total_steps', v)} onValidity={fields.track('total_steps')} />
            </Field>
            <Field label="Optimizer" htmlFor="hp-optimizer">
              <select id="hp-optimizer" data-testid="train-optimizer" className={selectClass} value={hyper.optimizer}
                      onChange={(e) => set('optimizer', e.target.value as Hyper['optimizer'])}>
                <option value="adamw">AdamW</option>
                <option value="adam">Adam</option>
                <option value="sgd">SGD</option>
              </select>
            </Field>
            <Field label="LR Schedule" htmlFor="hp-schedule">
              <select id="hp-schedule" className={selectClass} value={hyper.lr_decay}
                      onChange={(e) => set('lr_decay', e.target.value as Hyper['lr_decay'])}>
                <option value="constant">Constant</option>
                <option value="linear">Linear</option>
                <option value="cosine">Cosine</option>
                <option value="exponential">Exponential</option>
              </select>
            </Field>
            <ToggleRow label="Ghost Gradient Penalty" checked={hyper.ghost_grads && GHOST_ARCHITECTURES.includes(encoder)}
                       disabled={!GHOST_ARCHITECTURES.includes(encoder)} onChange={(on) => set('ghost_grads', on)}
                       description={GHOST_ARCHITECTURES.includes(encoder) ? 'revives dead latents (L1 architectures)'
                         : K_ARCHITECTURES.includes(encoder) ? 'the k architectures revive dead latents with AuxK'
                           : encoder === 'gated' ? 'not used by Gated' : 'not used by JumpReLU'} />
            <Field label="Auto-save every N steps (0 = off)" htmlFor="hp-autosave">
              <NumberInput id="hp-autosave" testId="train-autosave" integer min={0} max={10_000_000}
                           value={hyper.auto_save_interval} onChange={(v) => set('auto_save_interval', v)}
                           onValidity={fields.track('auto_save_interval')} />
            </Field>
          </div>
        )}
        <PrimaryButton data-testid="train-start" disabled={!datasetId || !modelId || layer === null || !hyper || (transcoder && !transcoderReady)
                         || !fields.valid
                         || (streaming && !specialTokensValid(special))
                         || (encoder === 'matryoshka_batchtopk' && parseWidths(widthsText) === undefined)}
                       busy={busy}
                       icon={<Play className="w-5 h-5" aria-hidden="true" />} onClick={() => void start()}>
          Start Training
        </PrimaryButton>
      </div>
    </Card>
  );
}

/** A select of the datasets or models that are ready: only those can feed a training. */
function ReadySelect({ id, label, items, value, onChange }: {
  id: string; label: string; items: { id: string; name: string; status: string }[]; value: string;
  onChange: (id: string) => void;
}) {
  return (
    <Field label={label} htmlFor={id}>
      <select id={id} data-testid={id} className={selectClass} value={value} onChange={(e) => onChange(e.target.value)}>
        <option value="">Select {label.toLowerCase()}...</option>
        {items.filter((x) => x.status === 'ready').map((x) => <option key={x.id} value={x.id}>{x.name}</option>)}
      </select>
    </Field>
  );
}

function NumberSelect({ id, label, value, choices, unit = '', onChange }: {
  id: string; label: string; value: number; choices: number[]; unit?: string; onChange: (value: number) => void;
}) {
  return (
    <Field label={label} htmlFor={id}>
      <select id={id} className={selectClass} value={value} onChange={(e) => onChange(Number(e.target.value))}>
        {choices.map((x) => <option key={x} value={x}>{x}{unit}</option>)}
      </select>
    </Field>
  );
}
