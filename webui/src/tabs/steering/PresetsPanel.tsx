import { Save, Star, Trash2, Upload } from 'lucide-react';
import { useCallback, useEffect, useState } from 'react';

import { apiDelete, apiGet, apiPost, errorMessage } from '../../api/client';
import type { AppliedTemplate, SteeringConfig, SteeringPreset } from '../../api/types';
import { Card } from '../../components/Card';
import { inputClass } from '../../components/Form';
import { useToast } from '../../components/Toasts';

const PRESETS = '/api/steering/presets';

/** "Saved Steering Presets": this SAE's presets, favourites first; load, favourite,
 * delete, and save the current settings under a name. */
export function PresetsPanel({ trainingId, saeLayer, current, onApply }: {
  trainingId: string;
  saeLayer: number;
  /** The settings "Save Current" stores. */
  current: () => SteeringConfig;
  onApply: (config: SteeringConfig, notes: string[]) => Promise<void> | void;
}) {
  const [presets, setPresets] = useState<SteeringPreset[] | null>(null);
  const [saving, setSaving] = useState(false);
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const [busy, setBusy] = useState<string | null>(null);
  const { push } = useToast();

  const load = useCallback(async () => {
    try {
      const params = new URLSearchParams({ training_id: trainingId, limit: '200' });
      setPresets(await apiGet<SteeringPreset[]>(`${PRESETS}?${params}`));
    } catch (err) {
      setPresets([]);
      push({ type: 'error', title: 'Presets not loaded', message: errorMessage(err) });
    }
  }, [trainingId, push]);
  useEffect(() => { void load(); }, [load]);

  const act = async (id: string, what: string, fn: () => Promise<unknown>) => {
    setBusy(id);
    try {
      await fn();
    } catch (err) {
      push({ type: 'error', title: what, message: errorMessage(err) });
    } finally {
      setBusy(null);
    }
  };

  const save = () => act('new', 'Preset not saved', async () => {
    const created = await apiPost<SteeringPreset>(PRESETS, { name: name.trim(), description: description.trim(),
      config: current() });
    push({ type: 'success', title: 'Preset saved', message: created.name });
    setSaving(false);
    setName('');
    setDescription('');
    await load();
  });

  const apply = (preset: SteeringPreset) => act(preset.id, 'Preset not loaded', async () => {
    const applied = await apiPost<AppliedTemplate<SteeringConfig>>(`${PRESETS}/${preset.id}/apply`,
      { training_id: trainingId });
    await onApply(applied.config, applied.notes ?? []);
  });

  const favorite = (preset: SteeringPreset) => act(preset.id, 'Not saved', async () => {
    await apiPost(`${PRESETS}/${preset.id}/favorite`);
    await load();
  });

  const remove = (preset: SteeringPreset) => {
    if (!window.confirm(`Delete the preset "${preset.name}"?`)) return;
    void act(preset.id, 'Preset not deleted', async () => {
      await apiDelete(`${PRESETS}/${preset.id}`);
      await load();
    });
  };

  return (
    <Card title="Saved Steering Presets" testId="steering-presets"
          actions={!saving && (
            <button type="button" data-testid="steering-preset-save-open" onClick={() => setSaving(true)}
                    className="px-3 py-1.5 text-sm bg-emerald-600 hover:bg-emerald-700 rounded-lg flex items-center gap-1.5">
              <Save className="w-4 h-4" aria-hidden="true" /> Save Current</button>
          )}>
      {saving && (
        <form className="bg-slate-800/30 rounded-lg p-4 mb-4 space-y-3" data-testid="steering-preset-form"
              onSubmit={(e) => { e.preventDefault(); if (name.trim()) void save(); }}>
          <input data-testid="steering-preset-name" aria-label="Preset name" className={inputClass} placeholder="Preset name"
                 maxLength={200} value={name} onChange={(e) => setName(e.target.value)} autoFocus />
          <input data-testid="steering-preset-description" aria-label="Preset description" className={inputClass}
                 placeholder="Description (optional)" maxLength={1000} value={description}
                 onChange={(e) => setDescription(e.target.value)} />
          <p className="text-xs text-slate-500">Saves the selected features with their coefficients and modes, the layer,
            the sampling settings and the prompt.</p>
          <div className="flex gap-2 justify-end">
            <button type="button" onClick={() => setSaving(false)}
                    className="px-3 py-1.5 text-sm bg-slate-700 hover:bg-slate-600 rounded-lg">Cancel</button>
            <button type="submit" data-testid="steering-preset-save" disabled={!name.trim() || busy === 'new'}
                    className="px-3 py-1.5 text-sm bg-emerald-600 hover:bg-emerald-700 disabled:bg-slate-700 disabled:cursor-not-allowed rounded-lg">
              Save Preset</button>
          </div>
        </form>
      )}
      {presets !== null && presets.length === 0 && !saving && (
        <p className="text-sm text-slate-500 text-center py-4">No presets for this SAE yet. Set up features and save them here.</p>
      )}
      <div className="space-y-2">
        {(presets ?? []).map((preset) => {
          const n = preset.config.features?.length ?? 0;
          const layer = preset.config.intervention_layer ?? saeLayer;
          return (
            <div key={preset.id} data-testid="steering-preset" data-preset-id={preset.id}
                 className="bg-slate-800/30 rounded-lg p-3 flex items-center gap-3">
              <button type="button" aria-label={preset.is_favorite ? 'Unfavourite' : 'Favourite'} aria-pressed={preset.is_favorite}
                      data-testid="steering-preset-star" onClick={() => void favorite(preset)} disabled={busy === preset.id}>
                <Star className={`w-4 h-4 ${preset.is_favorite ? 'fill-yellow-400 text-yellow-400' : 'text-slate-500 hover:text-slate-300'}`} />
              </button>
              <div className="flex-1 min-w-0">
                <div className="font-medium truncate" title={preset.description || preset.name}>{preset.name}</div>
                <div className="text-xs text-slate-400">
                  {n} feature{n === 1 ? '' : 's'} • Layer {layer}
                  {preset.description && <span className="text-slate-500"> • {preset.description}</span>}
                </div>
              </div>
              <button type="button" data-testid="steering-preset-load" onClick={() => void apply(preset)} disabled={busy === preset.id}
                      className="px-3 py-1 text-sm bg-slate-700 hover:bg-slate-600 rounded flex items-center gap-1 disabled:opacity-50">
                <Upload className="w-3.5 h-3.5" aria-hidden="true" /> Load</button>
              <button type="button" data-testid="steering-preset-delete" onClick={() => remove(preset)} disabled={busy === preset.id}
                      aria-label={`Delete ${preset.name}`}
                      className="px-2 py-1 text-sm text-red-400 hover:text-red-300 hover:bg-slate-700 rounded disabled:opacity-50">
                <Trash2 className="w-4 h-4" /></button>
            </div>
          );
        })}
      </div>
    </Card>
  );
}
