// A tiny History-API router: one path segment per tab; `/` shows Datasets, any other path is not found
// (the app says so, with links to the tabs, instead of showing a tab under a bogus address).
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

/** The tab a path shows, or null when it names none. */
export function tabFromPath(pathname: string): TabId | null {
  const first = pathname.replace(/^\/+/, '').split('/')[0]?.toLowerCase() ?? '';
  if (first === '') return 'datasets';
  return (TABS as readonly string[]).includes(first) ? (first as TabId) : null;
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

/** The active tab (null on a path that is no tab), the path, and a function that switches tabs
 * (pushState; back/forward work). */
export function useTab(): [TabId | null, (tab: TabId) => void, string] {
  const path = useSyncExternalStore(subscribe, currentPath, currentPath);
  const go = useCallback((tab: TabId) => navigate(`/${tab}`), []);
  return [tabFromPath(path), go, path];
}
