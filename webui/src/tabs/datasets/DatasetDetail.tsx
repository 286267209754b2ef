import { useState } from 'react';

import type { Dataset } from '../../api/types';
import { Modal, ModalTabs } from '../../components/Modal';
import { formatBytes, formatNumber } from './format';
import { OverviewPanel } from './OverviewPanel';
import { SamplesPanel } from './SamplesPanel';
import { StatisticsPanel } from './StatisticsPanel';
import { TokenizationPanel } from './TokenizationPanel';

const TABS = ['overview', 'samples', 'tokenization', 'statistics'] as const;
type Tab = typeof TABS[number];

export function DatasetDetail({ dataset, onClose, onChanged }: {
  dataset: Dataset; onClose: () => void; onChanged: () => void;
}) {
  const [tab, setTab] = useState<Tab>('overview');
  return (
    <Modal testId="dataset-detail" title={dataset.name} onClose={onClose}
           subtitle={`${formatBytes(dataset.size_bytes)} • ${formatNumber(dataset.num_samples)} samples`}
           tabs={<ModalTabs tabs={TABS} active={tab} onChange={setTab} />}>
      {tab === 'overview' && <OverviewPanel dataset={dataset} />}
      {tab === 'samples' && <SamplesPanel dataset={dataset} />}
      {tab === 'tokenization' && <TokenizationPanel dataset={dataset} onChanged={onChanged} />}
      {tab === 'statistics' && <StatisticsPanel dataset={dataset} />}
    </Modal>
  );
}
