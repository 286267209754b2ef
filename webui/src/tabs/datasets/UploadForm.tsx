import { Upload } from 'lucide-react';
import { useRef, useState } from 'react';

import { uploadFile } from '../../api/client';
import type { Accepted } from '../../api/types';
import { Card } from '../../components/Card';
import { Field, inputClass, PrimaryButton, selectClass } from '../../components/Form';
import { ProgressBar } from '../../components/ProgressBar';
import { useRequest } from '../../hooks/useRequest';

const ACCEPT = '.jsonl,.json,.csv,.parquet,.txt';

/** "Import from file": the same card style as the download form; the file streams to the device. */
export function UploadForm({ onStarted }: { onStarted: () => void }) {
  const [file, setFile] = useState<File | null>(null);
  const [column, setColumn] = useState('text');
  const [txtMode, setTxtMode] = useState<'line' | 'paragraph'>('line');
  const [sent, setSent] = useState(0);  // the share of the file sent so far
  const input = useRef<HTMLInputElement>(null);
  const { busy, run } = useRequest('Upload failed');
  const isText = file?.name.toLowerCase().endsWith('.txt') ?? false;

  const submit = () => file && run(async () => {
    setSent(0);
    await uploadFile<Accepted>('/api/datasets/upload', file,
      isText ? { txt_mode: txtMode } : { text_column: column.trim() || 'text' }, setSent);
    setFile(null);
    if (input.current) input.current.value = '';
    onStarted();
  });

  return (
    <Card title="Import from File" testId="datasets-upload-form">
      <div className="space-y-4">
        <Field label="File (JSON Lines, JSON, CSV, Parquet or text)" htmlFor="dataset-file">
          <input id="dataset-file" ref={input} data-testid="dataset-upload-input" type="file" accept={ACCEPT}
                 className={`${inputClass} file:mr-4 file:px-3 file:py-1 file:rounded file:border-0 file:bg-slate-700 file:text-slate-200`}
                 onChange={(e) => setFile(e.target.files?.[0] ?? null)} />
        </Field>
        {isText ? (
          <Field label="One sample per" htmlFor="dataset-txt-mode">
            <select id="dataset-txt-mode" className={selectClass} value={txtMode}
                    onChange={(e) => setTxtMode(e.target.value as 'line' | 'paragraph')}>
              <option value="line">Line</option>
              <option value="paragraph">Paragraph (blank-line separated)</option>
            </select>
          </Field>
        ) : (
          <Field label="Text column" htmlFor="dataset-upload-column">
            <input id="dataset-upload-column" data-testid="dataset-upload-column" className={inputClass} value={column}
                   onChange={(e) => setColumn(e.target.value)} />
          </Field>
        )}
        {busy && <ProgressBar value={sent} color="blue" label="Uploading" showPercent size="sm" />}
        <PrimaryButton data-testid="dataset-upload-button" disabled={!file} busy={busy} busyLabel="Uploading..."
                       icon={<Upload className="w-5 h-5" aria-hidden="true" />} onClick={() => void submit()}>
          Import Dataset
        </PrimaryButton>
      </div>
    </Card>
  );
}
