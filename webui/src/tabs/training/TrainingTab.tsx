import { Activity } from 'lucide-react';

import { PageTitle } from '../../components/Card';
import { EmptyState } from '../../components/EmptyState';

export function TrainingTab() {
  return (
    <div data-testid="tab-training" className="space-y-6">
      <PageTitle>Training Configuration</PageTitle>
      <div>
        <h3 className="text-xl font-semibold">Training Jobs</h3>
        <EmptyState icon={Activity} iconClassName="text-emerald-400" title="No training jobs yet"
                    description="Sparse autoencoders you train will appear here with live metrics." />
      </div>
    </div>
  );
}
