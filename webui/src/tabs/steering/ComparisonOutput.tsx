import { Check, Copy, LoaderCircle } from 'lucide-react';
import { useMemo, useState } from 'react';

import type { SteeringResult } from '../../api/types';
import { countWords, diffTokens } from './diff';
import type { Segment } from './diff';
import type { SideName, SteeringRun } from './useSteeringRun';

type View = 'side' | 'diff' | 'unified';
const VIEWS: [View, string][] = [['diff', 'Word-level Diff'], ['side', 'Side by Side'], ['unified', 'Unified Diff']];

const MARKS: Record<Segment['kind'], string> = {
  same: '',
  added: 'bg-emerald-500/30 border-b-2 border-emerald-400 text-emerald-100',
  removed: 'bg-red-500/15 border-b-2 border-red-400/60 text-slate-200',
};

/** The two outputs, unsteered and steered: live text while tokens stream, then where they differ. */
export function ComparisonOutput({ run }: { run: SteeringRun }) {
  const [view, setView] = useState<View>('diff');
  const generating = run.status === 'starting' || run.status === 'running';
  const result = run.status === 'completed' ? run.result : null;
  const diff = useMemo(() => (result ? diffTokens(result.unsteered.token_ids, result.unsteered.tokens,
    result.steered.token_ids, result.steered.tokens) : null), [result]);

  const text = (side: SideName) => (result ? result[side].text : run.pieces[side].join(''));
  return (
    <div className="space-y-3" data-testid="steering-output">
      <div className="flex items-center justify-between gap-4">
        <div className="text-sm text-slate-400" data-testid="steering-divergence">
          {result && <Divergence result={result} changed={diff?.changed ?? null} />}
          {generating && 'Generating both sides with the same seed...'}
          {run.status === 'failed' && run.error && <span className="text-red-400" data-testid="steering-error">
            Generation failed: {run.error}</span>}
          {run.status === 'cancelled' && <span data-testid="steering-stopped">Generation stopped: the text below is what
            had streamed</span>}
        </div>
        {result && (
          <div className="flex gap-2 shrink-0" role="tablist" aria-label="View">
            {VIEWS.map(([v, label]) => (
              <button key={v} type="button" role="tab" aria-selected={view === v} data-testid={`steering-view-${v}`}
                      onClick={() => setView(v)}
                      className={`px-3 py-1 rounded text-sm whitespace-nowrap ${view === v ? 'bg-emerald-600 text-white' : 'bg-slate-800 text-slate-300 hover:bg-slate-700'}`}>
                {label}</button>
            ))}
          </div>
        )}
      </div>
      {result && diff && view === 'unified' ? (
        <div data-testid="steering-output-unified">
          <div className="flex items-center gap-4 mb-3 text-sm">
            <span className="flex items-center gap-2"><span className="w-3 h-3 rounded-sm bg-red-500/30 border-b-2 border-red-400/60" />Baseline only</span>
            <span className="flex items-center gap-2"><span className="w-3 h-3 rounded-sm bg-emerald-500/30 border-b-2 border-emerald-400" />Steered only</span>
          </div>
          <div className="bg-slate-900/50 border border-slate-800 rounded-lg p-4 min-h-[200px] text-sm leading-relaxed text-slate-300 whitespace-pre-wrap break-words">
            <span className="text-slate-500">{run.prompt}</span>
            {diff.unified.map((segment, i) => (
              <span key={i} className={segment.kind === 'removed' ? `${MARKS.removed} line-through` : MARKS[segment.kind]}
                    data-testid={segment.kind === 'same' ? undefined : `diff-${segment.kind}`}>{segment.text}</span>
            ))}
          </div>
        </div>
      ) : (
        <div className="grid grid-cols-2 gap-6">
          {(['unsteered', 'steered'] as const).map((side) => (
            <OutputPanel key={side} side={side} run={run} text={text(side)} generating={generating}
                         segments={result && diff && view === 'diff' ? diff[side === 'steered' ? 'steered' : 'baseline'] : null} />
          ))}
        </div>
      )}
    </div>
  );
}

function Divergence({ result, changed }: { result: SteeringResult; changed: { baseline: number; steered: number } | null }) {
  if (result.first_divergence === null) {
    return <span>Identical outputs: the steering did not change any generated token</span>;
  }
  return (
    <span>
      The outputs part at generated token <span className="text-slate-200 tabular-nums">{result.first_divergence + 1}</span>
      {changed && <> • {changed.steered} of {result.steered.tokens.length} steered tokens differ from the baseline</>}
    </span>
  );
}

function OutputPanel({ side, run, text, generating, segments }: {
  side: SideName; run: SteeringRun; text: string; generating: boolean; segments: Segment[] | null;
}) {
  const [copied, setCopied] = useState(false);
  const steered = side === 'steered';
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setCopied(true);
      window.setTimeout(() => setCopied(false), 1500);
    } catch {
      setCopied(false);
    }
  };
  const tokens = run.result ? run.result[side].tokens.length : run.pieces[side].filter((p) => p !== undefined).length;
  const waiting = generating && text === '';
  return (
    <div data-testid={`steering-output-${side}`} data-streamed={run.streamed[side]} data-status={run.status}>
      <div className="flex items-center justify-between mb-3">
        <h3 className="text-lg font-semibold flex items-center gap-2">
          <span className={`w-2 h-2 rounded-full ${steered ? 'bg-emerald-400' : 'bg-slate-400'}`} aria-hidden="true" />
          {steered ? 'Steered' : 'Unsteered (Baseline)'}
          {generating && !waiting && (
            <LoaderCircle className={`w-4 h-4 animate-spin ${steered ? 'text-emerald-400' : 'text-slate-400'}`} aria-label="Streaming" />
          )}
        </h3>
        <button type="button" aria-label={`Copy ${steered ? 'steered' : 'baseline'} text`} title="Copy"
                data-testid="steering-copy" disabled={!text} onClick={() => void copy()}
                className="text-slate-400 hover:text-slate-200 disabled:opacity-40 transition-colors">
          {copied ? <Check className="w-4 h-4 text-emerald-400" /> : <Copy className="w-4 h-4" />}
        </button>
      </div>
      <div className={`bg-slate-900/50 border rounded-lg p-4 min-h-[200px] ${steered ? 'border-emerald-800/30' : 'border-slate-800'}`}>
        {waiting ? (
          <div className="flex justify-center pt-2">
            <LoaderCircle className={`w-6 h-6 animate-spin ${steered ? 'text-emerald-400' : 'text-slate-400'}`} aria-label="Generating" />
          </div>
        ) : text === '' && run.status !== 'completed' ? (
          <p className="text-sm text-slate-500">No generation yet</p>
        ) : (
          <p className="text-slate-300 whitespace-pre-wrap break-words text-sm leading-relaxed">
            <span className="text-slate-500" data-testid="steering-prompt-echo">{run.prompt}</span>
            <span data-testid="steering-text">
              {segments ? segments.map((segment, i) => (
                <span key={i} className={MARKS[segment.kind]}
                      data-testid={segment.kind === 'same' ? undefined : `diff-${segment.kind}`}>{segment.text}</span>
              )) : text}
            </span>
            {generating && <span className={`inline-block w-2 h-4 align-text-bottom ml-0.5 animate-pulse ${steered ? 'bg-emerald-400' : 'bg-slate-400'}`} aria-hidden="true" />}
            {run.status === 'completed' && text === '' && <span className="text-slate-500">(no tokens: the model ended at once)</span>}
          </p>
        )}
      </div>
      <div className="text-xs text-slate-500 mt-2 tabular-nums" data-testid="steering-counts">
        {countWords(text).toLocaleString('en-US')} words • {text.length.toLocaleString('en-US')} characters • {tokens} tokens
      </div>
    </div>
  );
}
