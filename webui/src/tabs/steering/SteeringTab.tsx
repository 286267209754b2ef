import { Zap } from 'lucide-react';

import { PageTitle } from '../../components/Card';
import { EmptyState } from '../../components/EmptyState';

export function SteeringTab() {
  return (
    <div data-testid="tab-steering" className="space-y-6">
      <PageTitle>Model Steering</PageTitle>
      <EmptyState icon={Zap} iconClassName="text-yellow-400" title="No SAEs to steer yet"
                  description="Steering needs a trained SAE and its features." />
    </div>
  );
}
