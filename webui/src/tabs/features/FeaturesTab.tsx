import { Search } from 'lucide-react';

import { PageTitle } from '../../components/Card';
import { EmptyState } from '../../components/EmptyState';

export function FeaturesTab() {
  return (
    <div data-testid="tab-features" className="space-y-6">
      <PageTitle>Feature Discovery</PageTitle>
      <EmptyState icon={Search} iconClassName="text-emerald-400" title="No trained SAEs yet"
                  description="Feature discovery starts from a completed training." />
    </div>
  );
}
