import type { ActivationSet, Model, StreamEventType, Training } from '../api/types';
import { useResourceList } from './useResourceList';

const MODEL_EVENTS: StreamEventType[] = ['model.updated'];
const MODEL_TARGETS = ['model'];
const SET_EVENTS: StreamEventType[] = ['activations.updated'];
const SET_TARGETS = ['activations'];

export function useModels() {
  const { items, ...rest } = useResourceList<Model>('/api/models', MODEL_EVENTS, MODEL_TARGETS);
  return { models: items, ...rest };
}

export function useActivationSets() {
  const { items, ...rest } = useResourceList<ActivationSet>('/api/activations', SET_EVENTS, SET_TARGETS);
  return { sets: items, ...rest };
}

const TRAINING_EVENTS: StreamEventType[] = ['training.updated'];
const TRAINING_TARGETS = ['training'];

export function useTrainings() {
  const { items, ...rest } = useResourceList<Training>('/api/training', TRAINING_EVENTS, TRAINING_TARGETS);
  return { trainings: items, ...rest };
}
