import { Database } from 'lucide-react';

import { PageTitle } from '../../components/Card';
import { EmptyState } from '../../components/EmptyState';

export function DatasetsTab() {
  return (
    <div data-testid="tab-datasets" className="space-y-6">
      <PageTitle>Dataset Management</PageTitle>
      <EmptyState icon={Database} iconClassName="text-blue-400" title="No datasets yet"
                  description="Datasets you download from Hugging Face or import will appear here." />
    </div>
  );
}
