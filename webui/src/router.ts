// A tiny History-API router: one path segment per tab; `/` and unknown paths show Datasets.
import { useCallback, useSyncExternalStore } from 'react';

export const TABS = ['datasets', 'models', 'training', 'features', 'steering'] as const;
export type TabId = (typeof TABS)[number];

export const TAB_LABELS: Record<TabId, string> = {
  datasets: 'Datasets',
  models: 'Models',
  training: 'Training',
  features: 'Features',
  steering: 'Steering',
};

const NAVIGATE = 'mistudio:navigate';

export function tabFromPath(pathname: string): TabId {
  const first = pathname.replace(/^\/+/, '').split('/')[0]?.toLowerCase() ?? '';
  return (TABS as readonly string[]).includes(first) ? (first as TabId) : 'datasets';
}

function subscribe(onChange: () => void): () => void {
  window.addEventListener('popstate', onChange);
  window.addEventListener(NAVIGATE, onChange);
  return () => {
    window.removeEventListener('popstate', onChange);
    window.removeEventListener(NAVIGATE, onChange);
  };
}

const currentPath = () => window.location.pathname;

export function navigate(path: string): void {
  if (window.location.pathname === path) return;
  window.history.pushState(null, '', path);
  window.dispatchEvent(new Event(NAVIGATE));
}

/** The active tab and a function that switches tabs (pushState; back/forward work). */
export function useTab(): [TabId, (tab: TabId) => void] {
  const path = useSyncExternalStore(subscribe, currentPath, currentPath);
  const go = useCallback((tab: TabId) => navigate(`/${tab}`), []);
  return [tabFromPath(path), go];
}
