// Which of a form's fields hold text that cannot be sent (an emptied required number, one out of range):
// the form's submit waits until none does, instead of sending a value the user did not type.
import { useCallback, useRef, useState } from 'react';

export function useFieldValidity() {
  const [invalid, setInvalid] = useState<ReadonlySet<string>>(new Set());
  const trackers = useRef(new Map<string, (valid: boolean) => void>());
  /** The `onValidity` of the field `name` (the same function on every render). */
  const track = useCallback((name: string) => {
    let tracker = trackers.current.get(name);
    if (!tracker) {
      tracker = (valid: boolean) => setInvalid((current) => {
        if (valid !== current.has(name)) return current;
        const next = new Set(current);
        if (valid) next.delete(name);
        else next.add(name);
        return next;
      });
      trackers.current.set(name, tracker);
    }
    return tracker;
  }, []);
  return { valid: invalid.size === 0, invalid, track };
}
