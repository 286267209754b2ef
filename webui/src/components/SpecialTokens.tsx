import { Field, inputClass } from './Form';
import { ToggleRow } from './Toggle';

/**
 * Whether a job leaves special-token positions (BOS/EOS/PAD) out of what it reads, and optionally
 * the exact token ids to leave out instead of the tokenizer's special tokens. `ids` is the text as
 * typed, so a half-typed list is not rewritten under the cursor.
 */
export interface SpecialTokens {
  exclude: boolean;
  ids: string;
}

export const SPECIAL_TOKENS_DEFAULT: SpecialTokens = { exclude: true, ids: '' };

/** The typed ids as a list (null: none given, the tokenizer's special tokens), or why they are not one. */
export function parseTokenIds(text: string): { ids: number[] | null; error: string | null } {
  const parts = text.split(',').map((p) => p.trim()).filter((p) => p !== '');
  if (parts.length === 0) return { ids: null, error: null };
  const bad = parts.find((p) => !/^\d+$/.test(p) || !Number.isSafeInteger(Number(p)));
  if (bad !== undefined) {
    return { ids: null, error: `"${bad}" is not a token id: give whole numbers ≥ 0, separated by commas (e.g. 0, 50256)` };
  }
  return { ids: [...new Set(parts.map(Number))], error: null };
}

/** The request fields every job that reads activations takes; ids only when some were typed. */
export function specialTokensBody(value: SpecialTokens): { exclude_special_tokens: boolean; special_token_ids?: number[] } {
  const { ids } = parseTokenIds(value.ids);
  return value.exclude && ids ? { exclude_special_tokens: true, special_token_ids: ids }
    : { exclude_special_tokens: value.exclude };
}

/** What a resource recorded as left out: "special tokens left out: <|endoftext|> (id 0)", or "kept". */
export function describeExcluded(ids: number[] | null | undefined, texts: Record<number, string> = {}): string {
  if (!ids || ids.length === 0) return 'special tokens kept';
  const named = ids.map((id) => (texts[id] !== undefined ? `${texts[id]} (id ${id})` : `id ${id}`));
  return `special tokens left out: ${named.join(', ')}`;
}

/** The switch and, while it is on, the optional list of ids; `testId` prefixes both controls' test ids. */
export function SpecialTokensField({ value, onChange, testId }: {
  value: SpecialTokens; onChange: (value: SpecialTokens) => void; testId: string;
}) {
  const { error } = parseTokenIds(value.ids);
  return (
    <div className="space-y-2" data-testid={testId}>
      <ToggleRow label="Leave out special tokens (BOS/EOS/PAD)" testId={`${testId}-toggle`} checked={value.exclude}
                 onChange={(exclude) => onChange({ ...value, exclude })}
                 description={'The start-of-text token\'s activation is the same in every sample: kept, it takes '
                   + 'latents that say nothing about the text.'} />
      {value.exclude && (
        <Field label="Advanced: token ids to leave out" htmlFor={`${testId}-ids`}
               hint={error ? <span className="text-red-400" data-testid={`${testId}-ids-error`}>{error}</span>
                 : 'comma-separated; empty leaves out the tokenizer\'s special tokens'}>
          <input id={`${testId}-ids`} data-testid={`${testId}-ids`} className={`${inputClass} font-mono`}
                 value={value.ids} placeholder="the tokenizer's special tokens" aria-invalid={error !== null}
                 onChange={(e) => onChange({ ...value, ids: e.target.value })} />
        </Field>
      )}
    </div>
  );
}

/** Whether the field holds something a request can be made from (the ids parse). */
export function specialTokensValid(value: SpecialTokens): boolean {
  return !value.exclude || parseTokenIds(value.ids).error === null;
}
