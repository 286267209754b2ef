import { LoaderCircle } from 'lucide-react';
import type { ButtonHTMLAttributes, ReactNode } from 'react';

/** The input style every form shares: slate-900, slate-700 border, rounded-lg, emerald border on focus. */
export const inputClass = 'w-full px-4 py-2 bg-slate-900 border border-slate-700 rounded-lg text-slate-100 '
  + 'placeholder-slate-500 focus:outline-none focus:border-emerald-500 disabled:opacity-50';
export const selectClass = inputClass;

export function Field({ label, htmlFor, hint, children }: {
  label: ReactNode; htmlFor?: string; hint?: ReactNode; children: ReactNode;
}) {
  return (
    <div>
      <label htmlFor={htmlFor} className="block text-sm font-medium text-slate-300 mb-2">{label}</label>
      {children}
      {hint && <p className="text-xs text-slate-500 mt-1">{hint}</p>}
    </div>
  );
}

/** Full-width emerald button; grey and inert while disabled; a spinner and `busyLabel` while busy. */
export function PrimaryButton({ busy = false, busyLabel, icon, children, className = '', ...rest }:
  ButtonHTMLAttributes<HTMLButtonElement> & { busy?: boolean; busyLabel?: ReactNode; icon?: ReactNode }) {
  return (
    <button type="button" {...rest} disabled={rest.disabled || busy}
            className={`w-full px-6 py-3 bg-emerald-600 hover:bg-emerald-700 disabled:bg-slate-700 disabled:text-slate-300 disabled:cursor-not-allowed rounded-lg flex items-center justify-center gap-2 transition-colors font-medium ${className}`}>
      {busy ? <LoaderCircle className="w-5 h-5 animate-spin" aria-hidden="true" /> : icon}
      {busy && busyLabel ? busyLabel : children}
    </button>
  );
}

export function SecondaryButton({ children, className = '', ...rest }: ButtonHTMLAttributes<HTMLButtonElement>) {
  return (
    <button type="button" {...rest}
            className={`px-4 py-2 bg-slate-700 hover:bg-slate-600 rounded-lg transition-colors disabled:opacity-50 disabled:cursor-not-allowed ${className}`}>
      {children}
    </button>
  );
}

/** A Hugging Face access token: masked, never autocompleted, monospaced so a pasted token reads clearly. */
export function HfTokenInput({ id, testId, value, onChange }: {
  id: string; testId: string; value: string; onChange: (value: string) => void;
}) {
  return (
    <input id={id} data-testid={testId} type="password" className={`${inputClass} font-mono`} value={value}
           placeholder="hf_xxxxxxxxxxxxxxxxxxxx" autoComplete="off" onChange={(e) => onChange(e.target.value)} />
  );
}
