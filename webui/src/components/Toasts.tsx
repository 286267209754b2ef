import { CircleCheckBig, CircleX, Info, TriangleAlert, X } from 'lucide-react';
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState } from 'react';
import type { ReactNode } from 'react';

export type ToastType = 'error' | 'warning' | 'success' | 'info';

export interface ToastInput {
  type?: ToastType;
  title: string;
  message?: string;
  /** Milliseconds before it goes away by itself; null: it stays until dismissed. By default an error or a
   * warning stays (a user who looked away must still read it) and a success or a note fades after 5 s. */
  durationMs?: number | null;
}

interface ToastItem extends Required<Omit<ToastInput, 'message'>> {
  id: number;
  message?: string;
}

const FADES_AFTER_MS: Record<ToastType, number | null> = { error: null, warning: null, success: 5000, info: 5000 };

interface ToastApi {
  push: (toast: ToastInput) => number;
  dismiss: (id: number) => void;
}

const ToastContext = createContext<ToastApi | null>(null);

const STYLES: Record<ToastType, { border: string; icon: typeof Info; iconColor: string }> = {
  error: { border: 'border-red-500', icon: CircleX, iconColor: 'text-red-400' },
  warning: { border: 'border-yellow-500', icon: TriangleAlert, iconColor: 'text-yellow-400' },
  success: { border: 'border-emerald-500', icon: CircleCheckBig, iconColor: 'text-emerald-400' },
  info: { border: 'border-blue-500', icon: Info, iconColor: 'text-blue-400' },
};

function Toast({ toast, onDismiss }: { toast: ToastItem; onDismiss: (id: number) => void }) {
  useEffect(() => {
    if (toast.durationMs === null) return undefined;
    const timer = window.setTimeout(() => onDismiss(toast.id), toast.durationMs);
    return () => window.clearTimeout(timer);
  }, [toast.id, toast.durationMs, onDismiss]);
  const style = STYLES[toast.type];
  const Icon = style.icon;
  return (
    <div role={toast.type === 'error' ? 'alert' : 'status'} data-testid="toast" data-type={toast.type}
         className={`pointer-events-auto flex items-start gap-3 p-4 bg-slate-900 border ${style.border} rounded-lg shadow-xl`}>
      <Icon className={`w-5 h-5 shrink-0 mt-0.5 ${style.iconColor}`} aria-hidden="true" />
      <div className="flex-1 min-w-0">
        <div className="text-sm font-medium text-slate-100">{toast.title}</div>
        {toast.message && <div className="text-sm text-slate-400 mt-1 break-words">{toast.message}</div>}
      </div>
      <button type="button" aria-label="Dismiss" onClick={() => onDismiss(toast.id)}
              className="text-slate-500 hover:text-slate-300 transition-colors">
        <X className="w-4 h-4" />
      </button>
    </div>
  );
}

/** Toasts in the top-right corner: errors and warnings stay until dismissed, the others fade after 5 s.
 * Use `useToast().push(...)`. */
export function ToastProvider({ children }: { children: ReactNode }) {
  const [toasts, setToasts] = useState<ToastItem[]>([]);
  const nextId = useRef(1);

  const dismiss = useCallback((id: number) => setToasts((list) => list.filter((t) => t.id !== id)), []);
  const push = useCallback((input: ToastInput) => {
    const id = nextId.current++;
    const type = input.type ?? 'info';
    const toast: ToastItem = { id, type, title: input.title, message: input.message,
      durationMs: input.durationMs === undefined ? FADES_AFTER_MS[type] : input.durationMs };
    setToasts((list) => [...list.slice(-4), toast]);
    return id;
  }, []);
  const api = useMemo(() => ({ push, dismiss }), [push, dismiss]);

  return (
    <ToastContext.Provider value={api}>
      {children}
      <div className="fixed top-4 right-4 z-[60] flex flex-col gap-2 w-96 max-w-[calc(100vw-2rem)] pointer-events-none"
           aria-live="polite">
        {toasts.map((toast) => <Toast key={toast.id} toast={toast} onDismiss={dismiss} />)}
      </div>
    </ToastContext.Provider>
  );
}

export function useToast(): ToastApi {
  const ctx = useContext(ToastContext);
  if (!ctx) throw new Error('useToast must be used inside <ToastProvider>');
  return ctx;
}
