// GET /api/system/info: on mount, after a token is accepted, and after every stream reconnect.
import { useEffect, useRef, useState } from 'react';

import { apiGet } from '../api/client';
import type { SystemInfo } from '../api/types';

export function useSystemInfo({ generation, paused, authVersion }: {
  generation: number; paused: boolean; authVersion: number;
}): SystemInfo | null {
  const [info, setInfo] = useState<SystemInfo | null>(null);
  const loaded = useRef(false);

  useEffect(() => {
    if (paused) return;
    // The stream's first open follows the initial load closely: no second request for it.
    if (generation === 1 && loaded.current) return;
    apiGet<SystemInfo>('/api/system/info', { timeoutMs: 10000 })
      .then((data) => {
        loaded.current = true;
        setInfo(data);
      })
      .catch((err) => console.debug('[system] info not loaded', err));
  }, [generation, paused, authVersion]);

  return info;
}
