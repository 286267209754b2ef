import { Cpu } from 'lucide-react';

import { PageTitle } from '../../components/Card';
import { EmptyState } from '../../components/EmptyState';

export function ModelsTab() {
  return (
    <div data-testid="tab-models" className="space-y-6">
      <PageTitle>Model Management</PageTitle>
      <EmptyState icon={Cpu} iconClassName="text-purple-400" title="No models yet"
                  description="Models you download or import will appear here, ready for activation extraction." />
    </div>
  );
}
