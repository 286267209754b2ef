import { ChevronDown, ChevronUp, Upload } from 'lucide-react';
import { useRef, useState } from 'react';

import { apiPost, uploadFile } from '../../api/client';
import type { Accepted, Model } from '../../api/types';
import { Field, inputClass, PrimaryButton, selectClass } from '../../components/Form';
import { useToast } from '../../components/Toasts';
import { useRequest } from '../../hooks/useRequest';

/** Bring an SAE trained elsewhere (SAELens or sparsify layout) in as a finished training of a local model. */
export function ImportSaeCard({ models, onStarted }: { models: Model[]; onStarted: () => void }) {
  const ready = models.filter((m) => m.status === 'ready');
  const [open, setOpen] = useState(false);
  const [modelId, setModelId] = useState('');
  const [from, setFrom] = useState<'upload' | 'hub'>('upload');
  const [repo, setRepo] = useState('');
  const [subfolder, setSubfolder] = useState('');
  const [file, setFile] = useState<File | null>(null);
  const { busy, run } = useRequest('Import not started');
  const input = useRef<HTMLInputElement>(null);
  const { push } = useToast();
  const model = modelId || ready[0]?.id || '';

  const submit = () => run(async () => {
    if (from === 'upload' && file) {
      await uploadFile<Accepted>('/api/training/import/upload', file, { model_id: model });
      setFile(null);
      if (input.current) input.current.value = '';
    } else {
      await apiPost<Accepted>('/api/training/import', { model_id: model, repo_id: repo.trim(),
        ...(subfolder.trim() ? { subfolder: subfolder.trim() } : {}) });
    }
    push({ type: 'success', title: 'Import started', message: 'The SAE appears below when it is checked' });
    onStarted();
  });

  return (
    <div className="bg-slate-900/50 border border-slate-800 rounded-lg" data-testid="import-sae">
      <button type="button" onClick={() => setOpen(!open)} data-testid="import-sae-toggle"
              className="w-full flex items-center justify-between px-6 py-4 text-left">
        <span className="flex items-center gap-2 font-medium"><Upload className="w-4 h-4" /> Import an SAE (SAELens or sparsify)</span>
        {open ? <ChevronUp className="w-5 h-5" /> : <ChevronDown className="w-5 h-5" />}
      </button>
      {open && (
        <div className="px-6 pb-6 grid grid-cols-1 md:grid-cols-3 gap-4">
          <Field label="For model" htmlFor="import-model">
            <select id="import-model" data-testid="import-model" className={selectClass} value={model}
                    onChange={(e) => setModelId(e.target.value)}>
              {ready.map((m) => <option key={m.id} value={m.id}>{m.name}</option>)}
            </select>
          </Field>
          <Field label="From" htmlFor="import-from">
            <select id="import-from" className={selectClass} value={from} onChange={(e) => setFrom(e.target.value as 'upload' | 'hub')}>
              <option value="upload">A zip on this computer</option>
              <option value="hub">The Hugging Face Hub</option>
            </select>
          </Field>
          {from === 'upload' ? (
            <Field label="Zip of the SAE's folder" htmlFor="import-file">
              <input id="import-file" ref={input} data-testid="import-file" type="file" accept=".zip" className={inputClass}
                     onChange={(e) => setFile(e.target.files?.[0] ?? null)} />
            </Field>
          ) : (
            <div className="grid grid-cols-2 gap-2">
              <Field label="Repository" htmlFor="import-repo">
                <input id="import-repo" className={inputClass} placeholder="owner/name" value={repo} onChange={(e) => setRepo(e.target.value)} />
              </Field>
              <Field label="Folder" htmlFor="import-subfolder">
                <input id="import-subfolder" className={inputClass} placeholder="blocks.8.hook_resid_post" value={subfolder}
                       onChange={(e) => setSubfolder(e.target.value)} />
              </Field>
            </div>
          )}
          <div className="md:col-span-3">
            <PrimaryButton data-testid="import-start" busy={busy} busyLabel="Importing..."
                           disabled={!model || (from === 'upload' ? !file : !repo.trim())} onClick={() => void submit()}>
              Import SAE
            </PrimaryButton>
          </div>
        </div>
      )}
    </div>
  );
}
