import { Download } from 'lucide-react';
import type { ReactNode } from 'react';

import { Card } from './Card';
import { PrimaryButton } from './Form';

/**
 * A "download from the Hugging Face Hub" card (datasets, models): the kind's own fields, then the
 * button. Enter submits too, once `ready` (a repository is named).
 */
export function DownloadCard({ title, testId, ready, busy, onSubmit, button, buttonTestId, children }: {
  title?: string;
  testId: string;
  ready: boolean;
  busy: boolean;
  onSubmit: () => void;
  button: ReactNode;
  buttonTestId: string;
  children: ReactNode;
}) {
  return (
    <Card title={title} testId={testId}>
      <form className="space-y-4" onSubmit={(e) => { e.preventDefault(); if (ready) onSubmit(); }}>
        {children}
        <PrimaryButton type="submit" data-testid={buttonTestId} disabled={!ready} busy={busy}
                       icon={<Download className="w-5 h-5" aria-hidden="true" />}>
          {button}
        </PrimaryButton>
      </form>
    </Card>
  );
}
