import type { ActivationSet, Model } from '../api/types';
import { useResourceList } from './useResourceList';

const MODEL_EVENTS = ['model.updated'];
const MODEL_TARGETS = ['model'];
const SET_EVENTS = ['activations.updated'];
const SET_TARGETS = ['activations'];

export function useModels() {
  const { items, ...rest } = useResourceList<Model>('/api/models', MODEL_EVENTS, MODEL_TARGETS);
  return { models: items, ...rest };
}

export function useActivationSets() {
  const { items, ...rest } = useResourceList<ActivationSet>('/api/activations', SET_EVENTS, SET_TARGETS);
  return { sets: items, ...rest };
}
