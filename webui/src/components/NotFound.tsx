import { Compass } from 'lucide-react';
import type { MouseEvent } from 'react';

import { TAB_LABELS, TABS } from '../router';
import type { TabId } from '../router';

const WHAT: Record<TabId, string> = {
  datasets: 'Download, upload and tokenize text datasets',
  models: 'Load models, inspect them and extract activations',
  training: 'Train sparse autoencoders and follow their runs',
  features: 'Browse, label and explain the features an SAE learned',
  steering: 'Generate text with features boosted or suppressed',
};

/** What an address that names no tab shows: the address, and a link to every tab. */
export function NotFound({ path, onGo }: { path: string; onGo: (tab: TabId) => void }) {
  // Real links (open in a new tab, copy the address); a plain click stays in the app.
  const follow = (tab: TabId) => (event: MouseEvent<HTMLAnchorElement>) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    onGo(tab);
  };
  return (
    <section data-testid="not-found" aria-labelledby="not-found-title"
             className="bg-slate-900/50 border border-slate-800 rounded-lg p-6 max-w-3xl mx-auto">
      <div className="flex items-start gap-4">
        <Compass className="w-10 h-10 text-slate-500 shrink-0" aria-hidden="true" strokeWidth={1.5} />
        <div className="min-w-0">
          <h2 id="not-found-title" className="text-xl font-semibold text-slate-100">Page not found</h2>
          <p className="mt-1 text-slate-400">
            There is no page at <code data-testid="not-found-path"
                                      className="font-mono text-slate-300 break-all">{path}</code>.
            Pick a section:
          </p>
        </div>
      </div>
      <ul className="mt-6 grid grid-cols-1 sm:grid-cols-2 gap-3">
        {TABS.map((id) => (
          <li key={id}>
            <a href={`/${id}`} onClick={follow(id)} data-testid={`not-found-link-${id}`}
               className="block h-full rounded-lg bg-slate-800/40 hover:bg-slate-800 px-4 py-3 transition-colors">
              <span className="font-medium text-emerald-400">{TAB_LABELS[id]}</span>
              <span className="block mt-1 text-sm text-slate-400">{WHAT[id]}</span>
            </a>
          </li>
        ))}
      </ul>
    </section>
  );
}
