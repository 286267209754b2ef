interface TokenChipProps {
  token: string;
  /** Activation of this token; with `max` it sets the emerald intensity. */
  activation?: number;
  max?: number;
  /** 'table' = feature table chip (xs); 'gradient' = examples chip (sm); 'plain' = slate-700 tokenizer chip. */
  variant?: 'table' | 'gradient' | 'plain';
  title?: string;
}

/** Line breaks and tabs as visible marks, so a chip keeps one line. */
const visible = (token: string) => token.replace(/\n/g, '↵').replace(/\t/g, '⇥');

/** A mono token chip, shaded emerald by activation (intensity = activation ÷ max, capped at 1). */
export function TokenChip({ token: raw, activation, max, variant = 'table', title }: TokenChipProps) {
  const token = visible(raw);
  if (variant === 'plain' || activation === undefined) {
    return (
      <span className="inline-block px-2 py-1 bg-slate-700 rounded font-mono text-sm text-slate-200" title={title}>
        {token}
      </span>
    );
  }
  const peak = max && max > 0 ? max : 1;
  const intensity = Math.min(Math.max(activation / peak, 0), 1);
  const table = variant === 'table';
  const style = {
    backgroundColor: `rgba(16, 185, 129, ${((table ? 0.4 : 0.3) * intensity).toFixed(3)})`,
    color: intensity > (table ? 0.6 : 0.5) ? '#ffffff' : table ? '#cbd5e1' : '#e2e8f0',
    border: table && intensity > 0.7 ? '1px solid rgba(16, 185, 129, 0.5)' : '1px solid transparent',
  };
  return (
    <span className={`inline-block rounded font-mono whitespace-pre ${table ? 'px-1 py-0.5 text-xs' : 'px-1 py-0.5 text-sm'}`}
          style={style} title={title ?? `Activation: ${activation.toFixed(table ? 3 : 4)}`}>
      {token}
    </span>
  );
}
