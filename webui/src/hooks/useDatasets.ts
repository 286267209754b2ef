import type { Dataset, StreamEventType } from '../api/types';
import { useResourceList } from './useResourceList';

const EVENTS: StreamEventType[] = ['dataset.updated'];
const TARGETS = ['dataset'];

export function useDatasets() {
  const { items, ...rest } = useResourceList<Dataset>('/api/datasets', EVENTS, TARGETS);
  return { datasets: items, ...rest };
}
