import { Square, Zap } from 'lucide-react';

import { Card } from '../../components/Card';
import { Field, NumberInput, PrimaryButton, inputClass } from '../../components/Form';
import { useFieldValidity } from '../../hooks/useFieldValidity';

export interface GenerationSettings {
  prompt: string;
  layer: number;
  temperature: number;
  maxTokens: number;
  topP: number;
  /** null: the server draws one (and returns it). */
  seed: number | null;
}

export const DEFAULT_SETTINGS: Omit<GenerationSettings, 'layer'> = {
  prompt: '', temperature: 0.7, maxTokens: 100, topP: 1.0, seed: 42,
};

// Prompts in the style of the demo corpus (Python docstrings and the language reference).
export const EXAMPLE_PROMPTS = [
  'Return the number of',
  'This module provides functions for',
  'If the argument is a string,',
  'Raise ValueError if',
  'The optional argument',
];

/** The right card: the SAE's model, prompt, intervention layer and sampling, and the Generate button. */
export function GenerationConfig({ settings, onChange, modelName, saeLayer, layers, layerLocked, lockReason,
                                   canGenerate, generating, onGenerate, onCancel }: {
  settings: GenerationSettings;
  onChange: (changes: Partial<GenerationSettings>) => void;
  modelName: string;
  saeLayer: number;
  /** The model's layer count (the slider spans 0..layers-1). */
  layers: number;
  layerLocked: boolean;
  lockReason: string;
  canGenerate: boolean;
  generating: boolean;
  onGenerate: () => void;
  onCancel: () => void;
}) {
  const nextExample = () => {
    const at = EXAMPLE_PROMPTS.indexOf(settings.prompt);
    onChange({ prompt: EXAMPLE_PROMPTS[(at + 1) % EXAMPLE_PROMPTS.length] });
  };
  const middle = Math.floor((layers - 1) / 2);
  const fields = useFieldValidity();  // the number fields: Generate waits while one cannot be used
  return (
    <Card title="Generation Configuration" testId="steering-config">
      <div className="space-y-4">
        <Field label="Model" htmlFor="steering-model" hint="The SAE fixes the model it steers">
          <div id="steering-model" data-testid="steering-model" aria-readonly="true"
               className={`${inputClass} text-slate-300 bg-slate-900/60 cursor-default truncate`}>{modelName}</div>
        </Field>

        <div>
          <div className="flex items-center justify-between mb-2">
            <label htmlFor="steering-prompt" className="text-sm font-medium text-slate-300">Prompt</label>
            <button type="button" data-testid="steering-example" onClick={nextExample}
                    className="text-xs text-emerald-400 hover:text-emerald-300">Load Example</button>
          </div>
          <textarea id="steering-prompt" data-testid="steering-prompt" rows={4} maxLength={8000}
                    placeholder="Enter your prompt here..." value={settings.prompt}
                    onChange={(e) => onChange({ prompt: e.target.value })}
                    className={`${inputClass} resize-none`} />
          <div className="text-xs text-slate-500 mt-1 text-right" data-testid="steering-prompt-count">
            {settings.prompt.length.toLocaleString('en-US')} characters</div>
        </div>

        <div>
          <label htmlFor="steering-layer" className="block text-sm font-medium text-slate-300 mb-2">
            Intervention Layer: <span data-testid="steering-layer-value">{settings.layer}</span>
            {settings.layer === saeLayer && <span className="text-slate-500 font-normal"> (the SAE&apos;s layer)</span>}
            {settings.layer !== saeLayer && settings.layer === middle && <span className="text-slate-500 font-normal"> (middle)</span>}
          </label>
          <input id="steering-layer" data-testid="steering-layer" type="range" min={0} max={Math.max(0, layers - 1)} step={1}
                 value={settings.layer} disabled={layerLocked}
                 onChange={(e) => onChange({ layer: Number(e.target.value) })}
                 className="w-full accent-emerald-500 cursor-pointer disabled:opacity-50 disabled:cursor-not-allowed" />
          <p className="text-xs text-slate-500 mt-1">
            {layerLocked ? lockReason : 'Layer whose residual stream the steering vector is added to'}</p>
        </div>

        <div className="grid grid-cols-2 gap-4">
          <Field label="Temperature" htmlFor="steering-temperature" hint="0 = greedy">
            <NumberInput id="steering-temperature" testId="steering-temperature" min={0} max={2} step={0.1}
                         value={settings.temperature} onChange={(v) => onChange({ temperature: v })}
                         onValidity={fields.track('temperature')} />
          </Field>
          <Field label="Max Tokens" htmlFor="steering-max-tokens">
            <NumberInput id="steering-max-tokens" testId="steering-max-tokens" min={1} max={2048} integer
                         value={settings.maxTokens} onChange={(v) => onChange({ maxTokens: v })}
                         onValidity={fields.track('max_tokens')} />
          </Field>
          <Field label="Top-p" htmlFor="steering-top-p" hint="Nucleus sampling (1 = off)">
            <NumberInput id="steering-top-p" testId="steering-top-p" min={0.05} max={1} step={0.05}
                         value={settings.topP} onChange={(v) => onChange({ topP: v })}
                         onValidity={fields.track('top_p')} />
          </Field>
          <Field label="Random Seed" htmlFor="steering-seed" hint="Both sides sample with it; empty = random">
            <NumberInput id="steering-seed" testId="steering-seed" min={0} max={2 ** 31 - 1} integer optional
                         placeholder="random" value={settings.seed} onChange={(v) => onChange({ seed: v })}
                         onValidity={fields.track('seed')} />
          </Field>
        </div>

        <PrimaryButton data-testid="steering-generate" disabled={!canGenerate || !fields.valid} busy={generating}
                       busyLabel="Generating..." icon={<Zap className="w-5 h-5" />} onClick={onGenerate}>
          Generate Comparison
        </PrimaryButton>
        {generating && (
          <button type="button" data-testid="steering-cancel" onClick={onCancel}
                  className="w-full text-sm text-slate-400 hover:text-slate-200 flex items-center justify-center gap-1">
            <Square className="w-3 h-3" aria-hidden="true" /> Stop</button>
        )}
        {!canGenerate && !generating && (
          <p className="text-xs text-slate-500 text-center" data-testid="steering-generate-hint">
            Enter a prompt and select at least one feature</p>
        )}
      </div>
    </Card>
  );
}
