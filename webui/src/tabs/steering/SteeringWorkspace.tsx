import { useCallback, useEffect, useRef, useState } from 'react';

import { apiGet } from '../../api/client';
import type { FeatureDetail, FeatureRow, Model, SteeringConfig, Training } from '../../api/types';
import { useToast } from '../../components/Toasts';
import { widthsOf } from '../features/groups';
import { ComparisonMetrics } from './ComparisonMetrics';
import { ComparisonOutput } from './ComparisonOutput';
import { FeaturePicker, MAX_FEATURES } from './FeaturePicker';
import type { SelectedFeature } from './FeaturePicker';
import { DEFAULT_SETTINGS, GenerationConfig } from './GenerationConfig';
import type { GenerationSettings } from './GenerationConfig';
import { PresetsPanel } from './PresetsPanel';
import { useSteeringRun } from './useSteeringRun';

interface Saved {
  features: SelectedFeature[];
  settings: GenerationSettings;
}

const storageKey = (trainingId: string) => `mistudio.steering.${trainingId}`;

/** The set-up of an SAE survives a switch to another tab (for this browser session). */
function restore(training: Training): Saved {
  const fresh: Saved = { features: [], settings: { ...DEFAULT_SETTINGS, layer: training.layer } };
  try {
    const raw = window.sessionStorage.getItem(storageKey(training.id));
    if (!raw) return fresh;
    const saved = JSON.parse(raw) as Partial<Saved>;
    const features = Array.isArray(saved.features) ? saved.features.filter((f) => typeof f?.index === 'number'
      && typeof f.coefficient === 'number' && ['add', 'clamp', 'ablate'].includes(f.mode)) : [];
    return { features: features.slice(0, MAX_FEATURES), settings: { ...fresh.settings, ...(saved.settings ?? {}) } };
  } catch {
    return fresh;
  }
}

const signature = (features: { index: number; coefficient: number; mode: string }[]) =>
  features.map((f) => `${f.index}:${f.coefficient}:${f.mode}`).sort().join(',');

/** Feature selection, generation settings, the comparison, its metrics and the presets of one SAE. */
export function SteeringWorkspace({ training, model }: { training: Training; model: Model | undefined }) {
  const [initial] = useState(() => restore(training));
  const [features, setFeatures] = useState<SelectedFeature[]>(initial.features);
  const [settings, setSettings] = useState<GenerationSettings>(initial.settings);
  const { push } = useToast();
  const onFailed = useCallback((message: string) => push({ type: 'error', title: 'Generation failed', message }), [push]);
  const { run, start, cancel } = useSteeringRun(onFailed);
  const labels = useRef(new Map<number, string>());

  useEffect(() => {
    window.sessionStorage.setItem(storageKey(training.id), JSON.stringify({ features, settings }));
  }, [training.id, features, settings]);

  const residual = training.hook_type === 'residual';
  const nonAdd = features.some((f) => f.mode !== 'add');
  const layerLocked = !residual || nonAdd;
  const lockReason = !residual
    ? `This SAE reads the ${training.hook_type} output: it steers at its own layer ${training.layer}`
    : `Clamp and ablate act where the SAE reads: its own layer ${training.layer}`;
  useEffect(() => {
    if (layerLocked && settings.layer !== training.layer) setSettings((s) => ({ ...s, layer: training.layer }));
  }, [layerLocked, settings.layer, training.layer]);
  const layers = Math.max(model?.layers ?? 0, training.layer + 1);

  const add = (row: FeatureRow) => {
    labels.current.set(row.index, row.label);
    setFeatures((list) => (list.some((f) => f.index === row.index) || list.length >= MAX_FEATURES ? list
      : [...list, { index: row.index, label: row.label, coefficient: 0, mode: 'add' }]));
  };
  const change = (index: number, changes: Partial<SelectedFeature>) =>
    setFeatures((list) => list.map((f) => (f.index === index ? { ...f, ...changes } : f)));
  const remove = (index: number) => setFeatures((list) => list.filter((f) => f.index !== index));

  const config = (): SteeringConfig => ({
    training_id: training.id,
    features: features.map(({ index, coefficient, mode }) => ({ index, coefficient, mode })),
    intervention_layer: settings.layer,
    temperature: settings.temperature,
    top_p: settings.topP,
    max_tokens: settings.maxTokens,
    seed: settings.seed,
    prompt: settings.prompt,
  });

  const generating = run.status === 'starting' || run.status === 'running';
  const canGenerate = settings.prompt.trim() !== '' && features.length > 0 && !generating;
  const generate = () => {
    if (!canGenerate) return;
    const request = config();
    void start({ ...request, intervention_layer: layerLocked || settings.layer === training.layer ? null : settings.layer });
  };

  const apply = async (applied: SteeringConfig, notes: string[]) => {
    const missing = applied.features.filter((f) => !labels.current.has(f.index));
    await Promise.all(missing.map(async (f) => {
      try {
        const detail = await apiGet<FeatureDetail>(`/api/training/${training.id}/features/${f.index}?examples=0&window=1`);
        labels.current.set(f.index, detail.label);
      } catch {
        labels.current.set(f.index, `Feature ${f.index}`);
      }
    }));
    setFeatures(applied.features.slice(0, MAX_FEATURES).map((f) => ({
      index: f.index, coefficient: f.coefficient ?? 0, mode: f.mode ?? 'add',
      label: labels.current.get(f.index) ?? `Feature ${f.index}` })));
    setSettings((s) => ({
      prompt: applied.prompt ? applied.prompt : s.prompt,
      layer: applied.intervention_layer ?? training.layer,
      temperature: applied.temperature ?? s.temperature,
      topP: applied.top_p ?? s.topP,
      maxTokens: applied.max_tokens ?? s.maxTokens,
      seed: applied.seed === undefined ? s.seed : applied.seed,
    }));
    push({ type: notes.length ? 'warning' : 'success', title: 'Preset loaded',
      message: notes.length ? notes.join(' ') : `${applied.features.length} features • Layer ${applied.intervention_layer ?? training.layer}` });
  };

  // Keep labels known from the selection (restored ones included) for presets.
  for (const f of features) if (!labels.current.has(f.index)) labels.current.set(f.index, f.label);

  const shown = run.result ?? run.lastResult;
  const norm = run.lastResult && signature(run.lastResult.features) === signature(features)
    ? run.lastResult.steering_vector_norm : null;
  const showOutput = run.status !== 'idle';

  // The results follow the features in the wide column, with the configuration beside them: at 1440x900 they
  // appear under the features, not below the config column's full height with an empty area beside it.
  return (
    <div className="grid grid-cols-5 gap-6 items-start" data-testid="steering-workspace">
      <div className="col-span-3 min-w-0 space-y-6" data-testid="steering-main">
        <FeaturePicker trainingId={training.id} features={features} onAdd={add} onChange={change} onRemove={remove}
                       widths={widthsOf(training)}
                       onClear={() => setFeatures([])} vectorNorm={norm} />
        {showOutput && <ComparisonOutput run={run} />}
        {shown && <ComparisonMetrics result={shown} stale={run.result === null} />}
      </div>
      <div className="col-span-2 min-w-0 space-y-6" data-testid="steering-side">
        <GenerationConfig settings={settings} onChange={(c) => setSettings((s) => ({ ...s, ...c }))}
                          modelName={model ? `${model.name} (${model.precision.toUpperCase()})` : training.model_id}
                          saeLayer={training.layer} layers={layers} layerLocked={layerLocked} lockReason={lockReason}
                          canGenerate={canGenerate} generating={generating} onGenerate={generate}
                          onCancel={() => void cancel()} />
        <PresetsPanel trainingId={training.id} saeLayer={training.layer} current={config} onApply={apply} />
      </div>
    </div>
  );
}
