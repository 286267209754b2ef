import { useEffect, useState } from 'react';

import { apiGet } from '../../api/client';
import type { FeatureExplanation, JudgeExample, JudgeScore } from '../../api/types';
import { MetricTile } from '../../components/MetricTile';
import { fixed } from './scores';

const METHODS = {
  detection: { title: 'Detection', truth: ['activating', 'not activating'],
    about: 'the judge reads the explanation and tells contexts where the feature fires from ones where it does not' },
  fuzzing: { title: 'Fuzzing', truth: ['correct highlights', 'random highlights'],
    about: 'the judge tells the tokens where the feature fires from randomly highlighted ones' },
} as const;

/** Line breaks and tabs as visible marks, so a context stays on its line. */
const visible = (token: string) => token.replace(/\n/g, '↵').replace(/\t/g, '⇥');

/** The language-model explanations of one feature (one per explainer), each with its detection and fuzzing scores
 * and the held-out contexts the judge saw. */
export function Explanations({ base }: { base: string }) {
  const [rows, setRows] = useState<FeatureExplanation[] | null>(null);
  const [failed, setFailed] = useState<string | null>(null);
  useEffect(() => {
    apiGet<FeatureExplanation[]>(`${base}/explanations`).then(setRows)
      .catch((err) => { setRows([]); setFailed(String(err?.message ?? err)); });
  }, [base]);
  if (rows === null) return <p className="text-slate-500">Loading...</p>;
  return (
    <div data-testid="feature-explanations" className="space-y-6">
      <div>
        <h4 className="font-semibold">Explanations</h4>
        <p className="text-sm text-slate-400">Written by a language model from this feature's top and range examples, then
          scored by a judge on held-out contexts the explainer never saw (balanced accuracy: 0.5 is chance).</p>
      </div>
      {failed && <p className="text-sm text-red-400">{failed}</p>}
      {rows.length === 0 && !failed && (
        <p className="text-slate-500" data-testid="explanations-empty">No explanation yet: run "Explain &amp; score" from the
          feature browser.</p>
      )}
      {rows.map((row) => <ExplanationCard key={row.explainer} row={row} />)}
    </div>
  );
}

function ExplanationCard({ row }: { row: FeatureExplanation }) {
  return (
    <div className="bg-slate-800/30 rounded-lg p-4 space-y-4" data-testid="explanation">
      <div>
        <p className="text-lg" data-testid="explanation-text">{row.explanation ?? <span className="text-slate-500 italic">no explanation</span>}</p>
        <p className="text-xs text-slate-500 mt-1" data-testid="explanation-method">
          {row.model || row.explainer} via {row.provider}{row.method ? ` • ${row.method}` : ''} • {row.calls} calls
          {' '}• {new Date(row.created_at * 1000).toLocaleString()}</p>
        {row.state !== 'scored' && row.state !== 'explained' && (
          <p className="text-sm text-yellow-400 mt-2" data-testid="explanation-state">{row.state}: {row.message}</p>
        )}
      </div>
      <div className="grid grid-cols-1 md:grid-cols-2 gap-4">
        {(['detection', 'fuzzing'] as const).map((method) => <JudgeBlock key={method} method={method} score={row[method]} />)}
      </div>
      {row.explainer_examples.length > 0 && <ExplainerSaw excerpts={row.explainer_examples} />}
    </div>
  );
}

/** The excerpts the explainer read (not the judge's: those are held out), the tokens it saw marked. */
function ExplainerSaw({ excerpts }: { excerpts: FeatureExplanation['explainer_examples'] }) {
  const [open, setOpen] = useState(false);
  return (
    <div>
      <button type="button" data-testid="explainer-toggle" onClick={() => setOpen(!open)} className="text-sm text-slate-400 hover:text-slate-200">
        {open ? '▾' : '▸'} What the explainer saw ({excerpts.length} excerpts)</button>
      {open && (
        <div className="space-y-1 mt-2">
          {excerpts.map((excerpt, i) => (
            <div key={i} className="flex gap-2 items-start text-sm" data-testid="explainer-excerpt">
              <span className="text-xs text-slate-500 w-12 shrink-0">{excerpt.kind}</span>
              <Marked tokens={excerpt.tokens} marked={excerpt.marked} />
            </div>
          ))}
        </div>
      )}
    </div>
  );
}

/** Tokens in a row, the marked ones highlighted as the language model saw them marked. */
function Marked({ tokens, marked }: { tokens: string[]; marked: number[] }) {
  const where = new Set(marked);
  return (
    <div className="flex flex-wrap gap-0.5 font-mono">
      {tokens.map((token, i) => (
        <span key={i} data-highlighted={where.has(i) ? 'true' : undefined}
              className={`px-0.5 rounded whitespace-pre ${where.has(i) ? 'bg-emerald-600/40 text-white border border-emerald-500/60' : 'text-slate-300'}`}>
          {visible(token)}</span>
      ))}
    </div>
  );
}

function JudgeBlock({ method, score }: { method: keyof typeof METHODS; score: JudgeScore | null }) {
  const [open, setOpen] = useState(false);
  const { title, truth, about } = METHODS[method];
  return (
    <div data-testid={`judge-${method}`} className="space-y-2">
      <MetricTile label={title} color="purple"
                  value={score?.balanced_accuracy == null ? null : fixed(score.balanced_accuracy)}
                  caption={score === null ? 'not scored' : score.balanced_accuracy == null
                    ? `too few answers could be read (${score.answered} of ${score.total}) • ${about}`
                    : `${score.low != null && score.high != null ? `95% interval ${fixed(score.low)}–${fixed(score.high)} • ` : ''}`
                      + `${score.correct} of ${score.total} right • ${about}`} />
      {score !== null && score.examples.length > 0 && (
        <>
          <button type="button" data-testid={`judge-${method}-toggle`} onClick={() => setOpen(!open)}
                  className="text-sm text-slate-400 hover:text-slate-200">
            {open ? '▾' : '▸'} What the judge saw ({score.examples.length} contexts)</button>
          {open && (
            <div className="space-y-2">
              {score.examples.map((example, i) => <JudgedContext key={i} example={example} truth={truth} />)}
            </div>
          )}
        </>
      )}
    </div>
  );
}

function JudgedContext({ example, truth }: { example: JudgeExample; truth: readonly [string, string] }) {
  const right = example.answer === null ? null : example.answer === example.truth;
  return (
    <div data-testid="judged-context" className="bg-slate-900/60 rounded p-2 text-sm">
      <Marked tokens={example.tokens} marked={example.highlighted} />
      <div className="flex justify-between text-xs mt-1">
        <span className="text-slate-500">truth: {example.truth ? truth[0] : truth[1]}</span>
        <span data-testid="judged-answer"
              className={right === null ? 'text-slate-500' : right ? 'text-emerald-400' : 'text-red-400'}>
          judge: {example.answer === null ? 'no answer' : example.answer ? truth[0] : truth[1]}
          {right !== null && (right ? ' ✓' : ' ✗')}</span>
      </div>
    </div>
  );
}
