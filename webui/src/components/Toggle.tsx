interface ToggleProps {
  checked: boolean;
  onChange: (checked: boolean) => void;
  /** Used for the aria-label: "Toggle <label> on/off". */
  label: string;
  disabled?: boolean;
  testId?: string;
}

/** A 48×24 pill switch: emerald when on, slate-600 when off, white 16 px knob. */
export function Toggle({ checked, onChange, label, disabled = false, testId }: ToggleProps) {
  return (
    <button type="button" role="switch" aria-checked={checked} aria-label={`Toggle ${label} ${checked ? 'off' : 'on'}`}
            data-testid={testId}
            disabled={disabled} onClick={() => onChange(!checked)}
            className={`relative w-12 h-6 rounded-full transition-colors shrink-0 disabled:opacity-50 disabled:cursor-not-allowed ${
              checked ? 'bg-emerald-600' : 'bg-slate-600'}`}>
      <span className={`absolute left-0 top-1 w-4 h-4 bg-white rounded-full transition-transform ${
        checked ? 'translate-x-7' : 'translate-x-1'}`} />
    </button>
  );
}

/** A toggle in a tinted row, label on the left, as settings lists show them. */
export function ToggleRow({ label, description, ...toggle }: ToggleProps & { description?: string }) {
  return (
    <div className="flex items-center justify-between gap-4 p-4 bg-slate-800/30 rounded-lg">
      <div>
        <div className="text-sm font-medium text-slate-300">{label}</div>
        {description && <div className="text-xs text-slate-500 mt-1">{description}</div>}
      </div>
      <Toggle label={label} {...toggle} />
    </div>
  );
}
