import { TooltipCard, useTooltipAnchor } from './Tooltip';

interface TokenChipProps {
  token: string;
  /** Activation of this token; with `max` it sets the emerald intensity. */
  activation?: number;
  max?: number;
  /** 'table' = feature table chip (xs); 'gradient' = examples chip (sm); 'plain' = slate-700 tokenizer chip. */
  variant?: 'table' | 'gradient' | 'plain';
  title?: string;
  /** For the tooltip: the token ids the chip shows (several when a character spans tokens) and their positions. */
  ids?: number[];
  positions?: number[];
}

/**
 * Line breaks and tabs as visible marks, so a chip keeps one line. A replacement character never shows: the server
 * writes a partial character as byte escapes, and one stored by an older extraction reads as its escape.
 */
export const visible = (token: string) => token.replace(/\n/g, '↵').replace(/\t/g, '⇥').replace(/\uFFFD/g, '\\ufffd');

/** A token in quotes for a list or a sentence: "the", " a", "\xe2\x80" (byte escapes shown once, not doubled). */
export const quoteToken = (token: string) => `"${visible(token).replace(/"/g, '\\"')}"`;

const span = (values: number[]) => (values.length > 1 && values[values.length - 1] !== values[0]
  ? `${values[0]}–${values[values.length - 1]}` : `${values[0]}`);

/** A mono token chip, shaded emerald by activation (intensity = activation ÷ max, capped at 1), with a styled tooltip. */
export function TokenChip({ token: raw, activation, max, variant = 'table', title, ids, positions }: TokenChipProps) {
  const { anchor, handlers } = useTooltipAnchor();
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
  const where = [ids?.length ? `token id${ids.length > 1 ? 's' : ''} ${ids.join(', ')}` : null,
    positions?.length ? `position ${span(positions)}` : null].filter(Boolean).join(' • ');
  return (
    <span className={`inline-block rounded font-mono whitespace-pre ${table ? 'px-1 py-0.5 text-xs' : 'px-1 py-0.5 text-sm'}`}
          style={style} data-testid="token-chip" {...handlers}>
      {token}
      <TooltipCard anchor={anchor} testId="token-tooltip">
        <div className="font-mono text-sm text-slate-100 whitespace-pre" data-testid="token-tooltip-token">{quoteToken(raw)}</div>
        <div>{title ?? <>Activation <span className="text-emerald-400 tabular-nums" data-testid="token-tooltip-activation">
          {activation.toFixed(4)}</span></>}</div>
        {where && <div className="text-slate-500" data-testid="token-tooltip-where">{where}</div>}
      </TooltipCard>
    </span>
  );
}

interface ContextChipsProps {
  tokens: string[];
  activations: number[];
  max: number;
  /** joined[i]: token i's text is in token i-1's chip (a character split over tokens); absent in older data. */
  joined?: boolean[];
  ids?: number[];
  /** The position in its sample of the first token, for the tooltip. */
  first?: number;
  variant?: 'table' | 'gradient';
}

/** A context's tokens as chips; tokens that together make one character show as one chip with their strongest activation. */
export function ContextChips({ tokens, activations, max, joined, ids, first, variant = 'gradient' }: ContextChipsProps) {
  const groups: number[][] = [];
  tokens.forEach((_, i) => {
    if (joined?.[i] && groups.length) groups[groups.length - 1].push(i);
    else groups.push([i]);
  });
  return (
    <div className="flex flex-wrap gap-0.5">
      {groups.map((group) => (
        <TokenChip key={group[0]} variant={variant} token={group.map((i) => tokens[i]).join('')} max={max}
                   activation={Math.max(...group.map((i) => activations[i] ?? 0))}
                   ids={ids ? group.map((i) => ids[i]) : undefined}
                   positions={first === undefined ? undefined : group.map((i) => first + i)} />
      ))}
    </div>
  );
}
