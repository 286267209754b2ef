import { Sparkles } from 'lucide-react';
import { useEffect, useState } from 'react';

import { apiGet, apiPost, apiRequest, errorMessage } from '../../api/client';
import type { Accepted } from '../../api/types';
import { Field, inputClass, PrimaryButton, selectClass } from '../../components/Form';
import { ProgressBar } from '../../components/ProgressBar';
import { useToast } from '../../components/Toasts';
import { useJobs } from '../../hooks/useJobs';

interface Labeling {
  provider: 'none' | 'local' | 'openai';
  endpoint: string | null;
  model: string | null;
  examples: number;
  has_api_key: boolean;
}

/** Optional labels written by a language model: the SAE's own model or an OpenAI-compatible endpoint. */
export function LabelingPanel({ trainingId, onDone }: { trainingId: string; onDone: () => void }) {
  const [settings, setSettings] = useState<Labeling | null>(null);
  const [key, setKey] = useState('');
  const [top, setTop] = useState(50);
  const [jobId, setJobId] = useState<string | null>(null);
  const { byId } = useJobs();
  const { push } = useToast();
  const job = jobId ? byId[jobId] : undefined;

  useEffect(() => { apiGet<Labeling>('/api/settings/labeling').then(setSettings).catch(() => undefined); }, []);
  useEffect(() => {
    if (!job || job.status === 'queued' || job.status === 'running') return;
    if (job.status === 'completed') push({ type: 'success', title: 'Features labelled', message: job.message });
    else push({ type: 'error', title: 'Labelling failed', message: job.error?.message ?? job.status });
    setJobId(null);
    onDone();
  }, [job?.status]); // eslint-disable-line react-hooks/exhaustive-deps

  if (!settings) return null;
  const save = async () => {
    try {
      const { has_api_key: _, ...values } = settings;
      setSettings((await apiRequest<Labeling>('/api/settings/labeling', { method: 'PUT',
        body: { ...values, ...(key ? { api_key: key } : {}) } })).data);
      setKey('');
      push({ type: 'success', title: 'Labelling settings saved', message: settings.provider });
    } catch (err) {
      push({ type: 'error', title: 'Not saved', message: errorMessage(err) });
    }
  };
  const start = async () => {
    try {
      setJobId((await apiPost<Accepted>(`/api/training/${trainingId}/features/label`, { top })).job_id);
    } catch (err) {
      push({ type: 'error', title: 'Labelling not started', message: errorMessage(err) });
    }
  };
  const set = (change: Partial<Labeling>) => setSettings({ ...settings, ...change });
  return (
    <div className="space-y-3" data-testid="labeling-panel">
      <div className="grid grid-cols-1 md:grid-cols-4 gap-3">
        <Field label="Labeller" htmlFor="label-provider">
          <select id="label-provider" data-testid="label-provider" className={selectClass} value={settings.provider}
                  onChange={(e) => set({ provider: e.target.value as Labeling['provider'] })}>
            <option value="none">None (labels from the evidence)</option>
            <option value="local">This SAE's model</option>
            <option value="openai">OpenAI-compatible endpoint</option>
          </select>
        </Field>
        {settings.provider === 'openai' && (
          <>
            <Field label="Endpoint" htmlFor="label-endpoint">
              <input id="label-endpoint" className={inputClass} placeholder="http://127.0.0.1:8080/v1" value={settings.endpoint ?? ''}
                     onChange={(e) => set({ endpoint: e.target.value || null })} />
            </Field>
            <Field label="Model" htmlFor="label-model">
              <input id="label-model" className={inputClass} value={settings.model ?? ''} onChange={(e) => set({ model: e.target.value || null })} />
            </Field>
            <Field label="API key" htmlFor="label-key" hint={settings.has_api_key ? 'a key is saved (write-only)' : 'optional'}>
              <input id="label-key" type="password" className={inputClass} value={key} autoComplete="off"
                     onChange={(e) => setKey(e.target.value)} />
            </Field>
          </>
        )}
      </div>
      <div className="flex items-end gap-3">
        <button type="button" onClick={() => void save()} className="px-4 py-2 bg-slate-800 hover:bg-slate-700 rounded-lg text-sm">Save settings</button>
        <Field label="Features (most frequent)" htmlFor="label-top">
          <input id="label-top" type="number" min={1} max={2000} className={`${inputClass} w-28`} value={top}
                 onChange={(e) => setTop(Math.max(1, Math.min(2000, Number(e.target.value) || 1)))} />
        </Field>
        <PrimaryButton data-testid="label-start" disabled={settings.provider === 'none' || jobId !== null}
                       icon={<Sparkles className="w-4 h-4" />} onClick={() => void start()}>Label Features</PrimaryButton>
      </div>
      {job && <div><ProgressBar value={job.progress} /><p className="text-xs text-slate-500 mt-1">{job.message}</p></div>}
    </div>
  );
}
