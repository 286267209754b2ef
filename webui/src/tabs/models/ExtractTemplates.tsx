import { useEffect, useState } from 'react';

import { apiGet, apiPost, errorMessage } from '../../api/client';
import type { AppliedTemplate, Model, TemplateItem } from '../../api/types';
import { inputClass, selectClass } from '../../components/Form';
import { useToast } from '../../components/Toasts';

/** What the extraction dialog holds that a template saves and restores. */
export interface ExtractSettings {
  layers: number[];
  hookTypes: string[];
  batchSize: number;
  maxSamples: number | null;  // null: every sample of the dataset
  contextLength: number;
}

interface AppliedConfig {
  layers: number[]; hook_types: string[]; batch_size: number; max_samples: number | null; context_length: number;
}

const URL = '/api/templates/extraction';

/** The layers as a template keeps them, so it fits any model: every layer, or depths (0 = first, 1 = last). */
function layerSpec(layers: number[], count: number): Record<string, unknown> {
  if (count > 0 && layers.length === count) return { all_layers: true };
  return { depths: layers.map((l) => (count > 1 ? Math.round((l / (count - 1)) * 10_000) / 10_000 : 0)) };
}

/** Load (choose one: it is applied to this model), save (the dialog's settings, model-free) and the notes on
 * what applying had to change (a layer the model lacks, a hook type it has not). */
export function ExtractTemplates({ model, current, onApply }: {
  model: Model;
  current: () => ExtractSettings;
  // Returns notes of its own (e.g. how "every sample" was set) shown with the API's.
  onApply: (settings: ExtractSettings) => string[];
}) {
  const [templates, setTemplates] = useState<TemplateItem[]>([]);
  const [notes, setNotes] = useState<string[] | null>(null);
  const [applied, setApplied] = useState<string | null>(null);
  const [naming, setNaming] = useState(false);
  const [name, setName] = useState('');
  const { push } = useToast();

  useEffect(() => {
    apiGet<TemplateItem[]>(URL).then(setTemplates)
      .catch((err) => push({ type: 'error', title: 'Templates not loaded', message: errorMessage(err) }));
  }, [push]);

  const apply = async (id: string) => {
    try {
      const result = await apiPost<AppliedTemplate<AppliedConfig>>(`${URL}/${id}/apply`, { model_id: model.id });
      const c = result.config;
      const own = onApply({ layers: c.layers, hookTypes: c.hook_types, batchSize: c.batch_size,
                            maxSamples: c.max_samples, contextLength: c.context_length });
      setApplied(id);
      setNotes([...result.notes, ...own]);
    } catch (err) {
      push({ type: 'error', title: 'Template not applied', message: errorMessage(err) });
    }
  };

  const save = async () => {
    const s = current();
    try {
      const created = await apiPost<TemplateItem>(URL, {
        name: name.trim(),
        description: `Saved from ${model.name} (layers ${s.layers.join(', ')} of ${model.layers ?? '?'})`,
        config: { ...layerSpec(s.layers, model.layers ?? 0), hook_types: s.hookTypes, batch_size: s.batchSize,
                  max_samples: s.maxSamples, context_length: s.contextLength },
      });
      setTemplates((t) => [created, ...t]);
      setApplied(created.id);
      setNaming(false);
      setName('');
      push({ type: 'success', title: 'Template saved', message: created.name });
    } catch (err) {
      push({ type: 'error', title: 'Template not saved', message: errorMessage(err) });
    }
  };

  return (
    <div className="space-y-2" data-testid="extract-templates">
      <div className="flex gap-2">
        <select aria-label="Load template" data-testid="extract-template" className={selectClass} value={applied ?? ''}
                onChange={(e) => { if (e.target.value) void apply(e.target.value); }}>
          <option value="">Load template...</option>
          {templates.map((t) => (
            <option key={t.id} value={t.id} title={t.description}>{t.is_favorite ? '★ ' : ''}{t.name}</option>
          ))}
        </select>
        <button type="button" data-testid="extract-template-save" aria-expanded={naming} onClick={() => setNaming(!naming)}
                className="shrink-0 px-4 py-2 bg-slate-800 hover:bg-slate-700 rounded-lg text-sm">Save as template</button>
      </div>
      {naming && (
        <form className="flex gap-2" onSubmit={(e) => { e.preventDefault(); if (name.trim()) void save(); }}>
          <input aria-label="Template name" data-testid="extract-template-name" className={inputClass} value={name}
                 placeholder="Template name" maxLength={200} autoFocus onChange={(e) => setName(e.target.value)} />
          <button type="submit" data-testid="extract-template-save-confirm" disabled={!name.trim()}
                  className="shrink-0 px-4 py-2 bg-emerald-600 hover:bg-emerald-700 disabled:opacity-50 rounded-lg text-sm">
            Save
          </button>
        </form>
      )}
      {notes && notes.length > 0 && (
        <ul className="text-sm text-yellow-400 space-y-1" data-testid="extract-template-notes">
          {notes.map((n) => <li key={n}>{n}</li>)}
        </ul>
      )}
    </div>
  );
}
