import { ChevronDown, ChevronUp, Play } from 'lucide-react';
import { useEffect, useMemo, useState } from 'react';

import { apiGet, apiPost, errorMessage } from '../../api/client';
import type { Accepted, ActivationSet, Dataset, EncoderType, Model, TemplateItem } from '../../api/types';
import { Card } from '../../components/Card';
import { Field, inputClass, PrimaryButton, selectClass } from '../../components/Form';
import { useToast } from '../../components/Toasts';

const ENCODERS: [EncoderType, string][] = [
  ['sparse', 'Sparse Autoencoder'], ['topk', 'TopK Autoencoder'], ['jumprelu', 'JumpReLU Autoencoder'],
  ['skip', 'Skip Autoencoder'], ['transcoder', 'Transcoder'],
];

interface Hyper {
  learning_rate: number;
  batch_size: number;
  l1_coefficient: number;
  expansion_factor: number;
  total_steps: number;
  lr_decay: 'cosine' | 'linear' | 'constant';
  k: number;
  auto_save_interval: number;
}

const DEFAULTS: Hyper = { learning_rate: 0.001, batch_size: 256, l1_coefficient: 4, expansion_factor: 8,
  total_steps: 1000, lr_decay: 'cosine', k: 16, auto_save_interval: 500 };

export function TrainingForm({ datasets, models, sets, onStarted }: {
  datasets: Dataset[]; models: Model[]; sets: ActivationSet[]; onStarted: () => void;
}) {
  const [datasetId, setDatasetId] = useState('');
  const [modelId, setModelId] = useState('');
  const [encoder, setEncoder] = useState<EncoderType>('sparse');
  const [setId, setSetId] = useState('');
  const [layer, setLayer] = useState<number | null>(null);
  const [hookType, setHookType] = useState('residual');
  const [advanced, setAdvanced] = useState(false);
  const [hyper, setHyper] = useState<Hyper>(DEFAULTS);
  const [templates, setTemplates] = useState<TemplateItem[]>([]);
  const [busy, setBusy] = useState(false);
  const { push } = useToast();

  const matching = useMemo(() => sets.filter((s) => s.status === 'ready' && s.model_id === modelId
    && s.dataset_id === datasetId), [sets, modelId, datasetId]);
  const chosen = matching.find((s) => s.id === setId) ?? matching[0];
  useEffect(() => {
    if (chosen && chosen.id !== setId) setSetId(chosen.id);
    if (chosen && (layer === null || !chosen.config.layers.includes(layer))) setLayer(chosen.config.layers[chosen.config.layers.length - 1] ?? 0);
    if (chosen && !chosen.config.hook_types.includes(hookType)) setHookType(chosen.config.hook_types[0]);
  }, [chosen, setId, layer, hookType]);

  useEffect(() => {
    apiGet<TemplateItem[]>('/api/templates/training').then(setTemplates).catch(() => setTemplates([]));
  }, []);

  const set = <K extends keyof Hyper>(key: K, value: Hyper[K]) => setHyper((h) => ({ ...h, [key]: value }));

  const applyTemplate = async (id: string) => {
    try {
      const applied = await apiPost<{ config: { encoder_type: EncoderType; hyperparameters: Partial<Hyper> } }>(
        `/api/templates/training/${id}/apply`, {});
      setEncoder(applied.config.encoder_type);
      setHyper((h) => ({ ...h, ...applied.config.hyperparameters }));
      setAdvanced(true);
    } catch (err) {
      push({ type: 'error', title: 'Template not applied', message: errorMessage(err) });
    }
  };

  const saveTemplate = async () => {
    const name = window.prompt('Template name');
    if (!name) return;
    try {
      const { auto_save_interval: _, ...hp } = hyper;
      const created = await apiPost<TemplateItem>('/api/templates/training', { name, config: { encoder_type: encoder,
        hyperparameters: hp } });
      setTemplates((t) => [created, ...t]);
      push({ type: 'success', title: 'Template saved', message: name });
    } catch (err) {
      push({ type: 'error', title: 'Template not saved', message: errorMessage(err) });
    }
  };

  const start = async () => {
    if (!chosen || layer === null) return;
    setBusy(true);
    try {
      const { auto_save_interval: autoSave, ...hp } = hyper;
      await apiPost<Accepted>('/api/training/start', {
        activation_id: chosen.id, layer, hook_type: hookType, encoder_type: encoder, auto_save_interval: autoSave,
        hyperparameters: { ...hp, ...(encoder === 'jumprelu' ? { l0_coefficient: hp.l1_coefficient } : {}),
                           warmup_steps: Math.min(100, Math.floor(hp.total_steps / 10)),
                           log_every: Math.max(1, Math.floor(hp.total_steps / 100)) },
      });
      onStarted();
    } catch (err) {
      push({ type: 'error', title: 'Training not started', message: errorMessage(err) });
    } finally {
      setBusy(false);
    }
  };

  const ready = (d: { status: string }) => d.status === 'ready';
  return (
    <Card testId="training-form">
      <div className="space-y-4">
        <div className="grid grid-cols-1 md:grid-cols-3 gap-4">
          <Field label="Dataset" htmlFor="train-dataset">
            <select id="train-dataset" data-testid="train-dataset" className={selectClass} value={datasetId}
                    onChange={(e) => setDatasetId(e.target.value)}>
              <option value="">Select dataset...</option>
              {datasets.filter(ready).map((d) => <option key={d.id} value={d.id}>{d.name}</option>)}
            </select>
          </Field>
          <Field label="Model" htmlFor="train-model">
            <select id="train-model" data-testid="train-model" className={selectClass} value={modelId}
                    onChange={(e) => setModelId(e.target.value)}>
              <option value="">Select model...</option>
              {models.filter(ready).map((m) => <option key={m.id} value={m.id}>{m.name}</option>)}
            </select>
          </Field>
          <Field label="Encoder Type" htmlFor="train-encoder">
            <select id="train-encoder" data-testid="train-encoder" className={selectClass} value={encoder}
                    onChange={(e) => setEncoder(e.target.value as EncoderType)}>
              {ENCODERS.map(([value, label]) => <option key={value} value={value}>{label}</option>)}
            </select>
          </Field>
        </div>
        {datasetId && modelId && (
          matching.length === 0 ? (
            <p className="text-sm text-yellow-400" data-testid="train-no-activations">
              No activation set for this model and dataset yet: extract activations in the Models tab first.
            </p>
          ) : (
            <div className="grid grid-cols-1 md:grid-cols-3 gap-4">
              <Field label="Activation Set" htmlFor="train-set">
                <select id="train-set" data-testid="train-set" className={selectClass} value={chosen?.id ?? ''}
                        onChange={(e) => setSetId(e.target.value)}>
                  {matching.map((s) => (
                    <option key={s.id} value={s.id}>{(s.manifest?.tokens ?? 0).toLocaleString('en-US')} tokens · layers {s.config.layers.join(', ')}</option>
                  ))}
                </select>
              </Field>
              <Field label="Layer" htmlFor="train-layer">
                <select id="train-layer" data-testid="train-layer" className={selectClass} value={layer ?? ''}
                        onChange={(e) => setLayer(Number(e.target.value))}>
                  {(chosen?.config.layers ?? []).map((l) => <option key={l} value={l}>Layer {l}</option>)}
                </select>
              </Field>
              <Field label="Hook" htmlFor="train-hook">
                <select id="train-hook" data-testid="train-hook" className={selectClass} value={hookType}
                        onChange={(e) => setHookType(e.target.value)}>
                  {(chosen?.config.hook_types ?? []).map((h) => <option key={h} value={h}>{h}</option>)}
                </select>
              </Field>
            </div>
          )
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
        {advanced && (
          <div className="grid grid-cols-1 md:grid-cols-2 gap-4 pt-4 border-t border-slate-800" data-testid="train-advanced">
            <Field label="Learning Rate" htmlFor="hp-lr">
              <input id="hp-lr" type="number" step="0.0001" className={inputClass} value={hyper.learning_rate}
                     onChange={(e) => set('learning_rate', Number(e.target.value))} />
            </Field>
            <Field label="Batch Size" htmlFor="hp-batch">
              <select id="hp-batch" className={selectClass} value={hyper.batch_size}
                      onChange={(e) => set('batch_size', Number(e.target.value))}>
                {[64, 128, 256, 512, 1024, 2048, 4096].map((b) => <option key={b} value={b}>{b}</option>)}
              </select>
            </Field>
            {encoder === 'topk' ? (
              <Field label="Active latents (k)" htmlFor="hp-k">
                <input id="hp-k" type="number" min={1} className={inputClass} value={hyper.k}
                       onChange={(e) => set('k', Number(e.target.value))} />
              </Field>
            ) : (
              <Field label={encoder === 'jumprelu' ? 'L0 Coefficient' : 'L1 Coefficient (λ)'} htmlFor="hp-l1"
                     hint="on activations normalised to mean norm √d">
                <input id="hp-l1" type="number" step="0.1" className={inputClass} value={hyper.l1_coefficient}
                       onChange={(e) => set('l1_coefficient', Number(e.target.value))} />
              </Field>
            )}
            <Field label="Expansion Factor" htmlFor="hp-exp">
              <select id="hp-exp" className={selectClass} value={hyper.expansion_factor}
                      onChange={(e) => set('expansion_factor', Number(e.target.value))}>
                {[2, 4, 8, 16, 32].map((x) => <option key={x} value={x}>{x}x</option>)}
              </select>
            </Field>
            <Field label="Training Steps" htmlFor="hp-steps">
              <input id="hp-steps" data-testid="train-steps" type="number" min={1} className={inputClass}
                     value={hyper.total_steps} onChange={(e) => set('total_steps', Math.max(1, Number(e.target.value)))} />
            </Field>
            <Field label="LR Schedule" htmlFor="hp-schedule">
              <select id="hp-schedule" className={selectClass} value={hyper.lr_decay}
                      onChange={(e) => set('lr_decay', e.target.value as Hyper['lr_decay'])}>
                <option value="constant">Constant</option>
                <option value="linear">Linear</option>
                <option value="cosine">Cosine</option>
              </select>
            </Field>
            <Field label="Auto-save every N steps (0 = off)" htmlFor="hp-autosave">
              <input id="hp-autosave" data-testid="train-autosave" type="number" min={0} className={inputClass}
                     value={hyper.auto_save_interval} onChange={(e) => set('auto_save_interval', Math.max(0, Number(e.target.value)))} />
            </Field>
          </div>
        )}
        <PrimaryButton data-testid="train-start" disabled={!chosen || layer === null} busy={busy}
                       icon={<Play className="w-5 h-5" aria-hidden="true" />} onClick={() => void start()}>
          Start Training
        </PrimaryButton>
      </div>
    </Card>
  );
}
