import { LoaderCircle } from 'lucide-react';
import { useEffect, useRef, useState } from 'react';
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

interface NumberInputBase {
  id: string;
  testId?: string;
  min?: number;
  max?: number;
  /** `min` itself is refused (a learning rate must be > 0). */
  minExclusive?: boolean;
  /** Only whole numbers fit. */
  integer?: boolean;
  step?: number | 'any';
  placeholder?: string;
  /** Added to the shared input style. */
  className?: string;
  /** Replaces the shared input style (a compact field inside a line of text). */
  inputClassName?: string;
  'aria-label'?: string;
  /** Hears whether the text can be used, so the form can hold its submit (see useFieldValidity). */
  onValidity?: (valid: boolean) => void;
}

/** A required number (`onChange` never hears an empty field; a null value shows empty and unsendable) or an
 * `optional` one (empty: null). */
export type NumberInputProps = NumberInputBase & (
  { optional?: false; value: number | null; onChange: (value: number) => void }
  | { optional: true; value: number | null; onChange: (value: number | null) => void });

const formatBound = (n: number) => n.toLocaleString('en-US', { maximumFractionDigits: 6 });

/**
 * The one number field of every form. The text is kept exactly as typed: clearing it leaves it empty
 * (never the minimum, so clearing "500" and typing "200" gives 200), and `onChange` hears only values
 * that fit. What does not fit (empty when required, out of range, not whole) is said under the field and
 * reported through `onValidity`: the form holds its submit rather than send a value the user did not type.
 */
export function NumberInput(props: NumberInputProps) {
  const { id, testId, value, min, max, minExclusive = false, integer = false, step, placeholder,
    className = '', inputClassName = inputClass, onValidity } = props;
  const optional = props.optional === true;
  const [text, setText] = useState(value === null ? '' : String(value));
  const [badInput, setBadInput] = useState(false);  // the browser holds text that is not a number ("-", "1e")
  const [focused, setFocused] = useState(false);
  const heard = useRef<number | null>(value);
  useEffect(() => {
    // A change from outside (a template, a reset, a clamp) replaces what is typed.
    if (value !== heard.current) {
      heard.current = value;
      setText(value === null ? '' : String(value));
      setBadInput(false);
    }
  }, [value]);

  const problem = ((): string | null => {
    if (badInput) return 'Enter a number.';
    if (text.trim() === '') return optional ? null : 'Enter a value.';
    const n = Number(text);
    if (!Number.isFinite(n)) return 'Enter a number.';
    if (integer && !Number.isInteger(n)) return 'Must be a whole number.';
    if (min !== undefined && (minExclusive ? n <= min : n < min)) {
      return `Must be ${minExclusive ? 'greater than' : 'at least'} ${formatBound(min)}.`;
    }
    if (max !== undefined && n > max) return `Must be at most ${formatBound(max)}.`;
    return null;
  })();

  const report = useRef(onValidity);
  report.current = onValidity;
  useEffect(() => { report.current?.(problem === null); }, [problem]);
  // A field that goes away (a collapsed section, another architecture) no longer holds the form.
  useEffect(() => () => report.current?.(true), []);

  const change = (raw: string, bad: boolean) => {
    setText(raw);
    setBadInput(bad);
    if (bad) return;
    const n = raw.trim() === '' ? null : Number(raw);
    const fits = n === null ? optional : Number.isFinite(n) && (!integer || Number.isInteger(n))
      && (min === undefined || (minExclusive ? n > min : n >= min)) && (max === undefined || n <= max);
    if (!fits) return;
    heard.current = n;
    (props.onChange as (value: number | null) => void)(n);
  };

  // An emptied field is not scolded while the user is still typing in it.
  const shown = problem !== null && !(focused && text === '' && !badInput) ? problem : null;
  const errorId = `${id}-error`;
  return (
    <>
      <input id={id} data-testid={testId} type="number" inputMode={integer ? 'numeric' : 'decimal'}
             min={min} max={max} step={step ?? (integer ? 1 : 'any')} placeholder={placeholder}
             aria-label={props['aria-label']} aria-invalid={problem !== null}
             aria-describedby={shown ? errorId : undefined}
             className={`${inputClassName} ${shown ? '!border-red-500' : ''} ${className}`} value={text}
             onChange={(e) => change(e.target.value, e.target.validity.badInput)}
             onFocus={() => setFocused(true)} onBlur={() => setFocused(false)} />
      {shown && (
        <span id={errorId} role="alert" data-testid={testId ? `${testId}-error` : undefined}
              className="block text-xs text-red-400 mt-1">{shown}</span>
      )}
    </>
  );
}
