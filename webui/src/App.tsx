import { Cpu, HardDrive } from 'lucide-react';
import { useEffect, useRef, useState } from 'react';
import type { ComponentType } from 'react';

import { ConnectionIndicator } from './components/ConnectionIndicator';
import { JobsIndicator } from './components/JobsIndicator';
import { NotFound } from './components/NotFound';
import { StorageView } from './components/StorageView';
import { SystemMonitor } from './components/SystemMonitor';
import { SystemSummary } from './components/SystemSummary';
import { TokenPrompt } from './components/TokenPrompt';
import { useAuth } from './hooks/useAuth';
import { EventStreamProvider, useEventStream } from './hooks/useEventStream';
import { useHealth } from './hooks/useHealth';
import { JobsProvider } from './hooks/useJobs';
import { useSystemInfo } from './hooks/useSystemInfo';
import { useSystemMetrics } from './hooks/useSystemMetrics';
import { TAB_LABELS, TABS, useTab } from './router';
import type { TabId } from './router';
import { DatasetsTab } from './tabs/datasets/DatasetsTab';
import { FeaturesTab } from './tabs/features/FeaturesTab';
import { ModelsTab } from './tabs/models/ModelsTab';
import { SteeringTab } from './tabs/steering/SteeringTab';
import { TrainingTab } from './tabs/training/TrainingTab';

const PANELS: Record<TabId, ComponentType> = {
  datasets: DatasetsTab,
  models: ModelsTab,
  training: TrainingTab,
  features: FeaturesTab,
  steering: SteeringTab,
};

function Shell() {
  const auth = useAuth();
  const stream = useEventStream();
  const health = useHealth({ paused: auth.needsToken, authVersion: auth.version });
  const info = useSystemInfo({ generation: stream.generation, paused: auth.needsToken, authVersion: auth.version });
  const metrics = useSystemMetrics({ generation: stream.generation, paused: auth.needsToken });
  const [monitorOpen, setMonitorOpen] = useState(false);
  const [storageOpen, setStorageOpen] = useState(false);
  const [tab, setTab, path] = useTab();

  // Health back while the stream waits out its backoff: reconnect now.
  const { reconnect } = stream;
  useEffect(() => {
    if (health.ok) reconnect();
  }, [health.ok, health.lastCheckedAt, reconnect]);

  // The stream came back first: check health now rather than in up to 5 s.
  const { refresh } = health;
  const seenGeneration = useRef(0);
  useEffect(() => {
    if (stream.generation > 1 && stream.generation !== seenGeneration.current) refresh();
    seenGeneration.current = stream.generation;
  }, [stream.generation, refresh]);

  const Panel = tab ? PANELS[tab] : null;
  return (
    <div className="min-h-screen bg-slate-950 text-slate-100">
      <header className="border-b border-slate-800 bg-slate-900/50 backdrop-blur">
        <div className="max-w-7xl mx-auto px-6 py-4 flex items-center justify-between">
          <div className="flex items-center gap-3">
            <Cpu className="w-8 h-8 text-emerald-400" aria-hidden="true" />
            <div>
              <h1 className="text-xl font-semibold">MechInterp Studio</h1>
              <p className="text-sm text-slate-400">Edge AI Feature Discovery Platform</p>
            </div>
          </div>
          <div className="flex items-center gap-4 text-sm text-slate-400">
            <JobsIndicator />
            <SystemSummary sample={metrics.latest} info={info} onOpen={() => setMonitorOpen(true)} />
            <button type="button" data-testid="storage-open" onClick={() => setStorageOpen(true)}
                    title="Open the storage view: what takes the data disk"
                    className="flex items-center gap-1 px-2 py-1 rounded-lg hover:bg-slate-800/60 hover:text-slate-300 transition-colors">
              <HardDrive className="w-4 h-4" aria-hidden="true" /> Storage
            </button>
            <ConnectionIndicator health={health} stream={stream.state} />
            <span data-testid="device-name" title={info ? `${info.platform} • Python ${info.python}` : undefined}>
              {info?.device_name ?? '—'}
            </span>
          </div>
        </div>
      </header>

      <nav className="border-b border-slate-800 bg-slate-900/30">
        <div className="max-w-7xl mx-auto px-6">
          <div className="flex gap-8" role="tablist" aria-label="Sections">
            {TABS.map((id) => (
              <button key={id} type="button" role="tab" aria-selected={tab === id} aria-controls="main-panel"
                      onClick={() => setTab(id)}
                      className={`py-4 px-2 border-b-2 transition-colors capitalize ${tab === id
                        ? 'border-emerald-400 text-emerald-400'
                        : 'border-transparent text-slate-400 hover:text-slate-300'}`}>
                {TAB_LABELS[id]}
              </button>
            ))}
          </div>
        </div>
      </nav>

      <main id="main-panel" role={Panel ? 'tabpanel' : undefined} className="max-w-7xl mx-auto px-6 py-8">
        {Panel ? <Panel key={tab} /> : <NotFound path={path} onGo={setTab} />}
      </main>

      {monitorOpen && (
        <SystemMonitor info={info} latest={metrics.latest} history={metrics.history} onClose={() => setMonitorOpen(false)} />
      )}
      {storageOpen && <StorageView onClose={() => setStorageOpen(false)} />}
      {auth.needsToken && <TokenPrompt onSubmit={auth.submitToken} />}
    </div>
  );
}

export default function App() {
  const auth = useAuth();
  return (
    <EventStreamProvider paused={auth.needsToken} authVersion={auth.version}>
      <JobsProvider>
        <Shell />
      </JobsProvider>
    </EventStreamProvider>
  );
}
