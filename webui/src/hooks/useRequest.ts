// A request a control starts (a form's submit, a button's action): busy while it runs, and on failure a
// toast with the API's message while the control keeps what the user typed, so they can correct it and
// try again.
import { useCallback, useState } from 'react';

import { apiDelete, errorMessage } from '../api/client';
import { useToast } from '../components/Toasts';

export function useRequest(failTitle: string) {
  const [busy, setBusy] = useState(false);
  const { push } = useToast();
  /** Runs `work`; true when it succeeded, false when it failed (and a toast said why). */
  const run = useCallback(async (work: () => Promise<unknown>): Promise<boolean> => {
    setBusy(true);
    try {
      await work();
      return true;
    } catch (err) {
      push({ type: 'error', title: failTitle, message: errorMessage(err) });
      return false;
    } finally {
      setBusy(false);
    }
  }, [failTitle, push]);
  return { busy, run };
}

/** Deletes a resource once the user confirms `question`, then runs `after` (a reload). */
export function useConfirmedDelete() {
  const { run } = useRequest('Not deleted');
  return useCallback((path: string, question: string, after: () => Promise<unknown> | void) => {
    if (!window.confirm(question)) return;
    void run(async () => {
      await apiDelete(path);
      await after();
    });
  }, [run]);
}
