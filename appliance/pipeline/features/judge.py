"""Explain a feature, then judge the explanation, with a language model (a ``Chat``), in the manner of
EleutherAI's delphi: the prompts, the reading of the replies, and the scores.

- **Explain**: the explainer reads excerpts where the feature fires, the tokens where it fires marked
  «like this», and answers one short phrase on a line "[EXPLANATION]: ...".
- **Detection**: given the explanation, does the judge tell activating held-out contexts from ones where the
  feature is silent? **Fuzzing**: does it tell contexts marked where the feature fires from the same kind of
  contexts marked at random tokens? Contexts are shuffled (seeded) and shown ``BATCH`` to a call; the judge
  answers a list such as [1, 0, 0, 1, 0].
- **Replies are read leniently**: the first bracketed list of the right length (1/0, true/false, yes/no),
  else exactly that many 1s and 0s, else "Example N: yes" lines. A call whose reply cannot be read counts its
  contexts as unanswered; with fewer than half answered, or one class with no answer, there is no score.
- **Score**: balanced accuracy (TPR + TNR) / 2 over the answered contexts, with a 95% percentile bootstrap
  interval (``BOOTSTRAP`` resamples of the positives and the negatives separately, seeded).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.pipeline.features.chat import Chat
from appliance.pipeline.features.evidence import Excerpt

BATCH = 5  # contexts per judge call
BOOTSTRAP = 200
EXPLANATION_TOKENS = 120  # the explainer's reply at most (a short phrase, some models reason first)
JUDGE_TOKENS = 60  # a judge's reply at most (a list of BATCH digits)
EXPLANATION_CHARS = 200
OPEN, CLOSE = "«", "»"

EXPLAIN_SYSTEM = (
    "You are a meticulous AI researcher studying one feature of a language model. You will see short text "
    f"excerpts where the feature is active; the tokens where it is active are marked {OPEN}like this{CLOSE}. "
    "Some excerpts are its strongest activations, others come from across its range. Work out what the marked "
    "tokens and their contexts have in common, and describe the feature in one short phrase (at most 15 "
    "words): name the tokens or the concept it responds to. Do not start with 'this feature'. End your "
    "answer with a line of the form\n[EXPLANATION]: <your description>"
)
DETECTION_SYSTEM = (
    "You are an intelligent and meticulous linguistics researcher. You will be given an explanation of a "
    "feature of text, such as 'male pronouns' or 'the word \"if\" in code', and several text examples. For "
    "each example in turn, decide whether the feature, as explained, is present in it: 1 if it is, 0 if it "
    "is not. Answer with a list of 1s and 0s, one per example in order, for example [1, 0, 0, 1, 0], and "
    "nothing else."
)
FUZZING_SYSTEM = (
    "You are an intelligent and meticulous linguistics researcher. You will be given an explanation of a "
    "feature of text and several text examples in which some tokens are marked "
    f"{OPEN}like this{CLOSE}. For each example in turn, decide whether the marked tokens are ones the "
    "feature, as explained, responds to: 1 if they are all correctly marked, 0 if they are not. Answer with "
    "a list of 1s and 0s, one per example in order, for example [1, 0, 0, 1, 0], and nothing else."
)
_TRUE, _FALSE = {"1", "true", "yes", "y"}, {"0", "false", "no", "n"}


def render(excerpt: Excerpt, marked: bool = True) -> str:
    """An excerpt as one line of text: newlines written as \\n, marked tokens in « »."""
    where = set(excerpt.marked) if marked else set()
    parts = [f"{OPEN}{t}{CLOSE}" if i in where else t for i, t in enumerate(excerpt.tokens)]
    # Not stripped: a token's leading space is part of it.
    return "".join(parts).replace("\r", "\\r").replace("\n", "\\n")


def explain_messages(excerpts: list[Excerpt]) -> list[dict[str, str]]:
    lines = [f"Excerpt {n}: {render(e)}" for n, e in enumerate(excerpts, 1)]
    return [
        {"role": "system", "content": EXPLAIN_SYSTEM},
        {"role": "user", "content": "Excerpts where the feature is active:\n\n" + "\n".join(lines)},
    ]


def parse_explanation(reply: str) -> str | None:
    """The phrase after "[EXPLANATION]:" (else the reply's last non-empty line), without the quotes or bold
    around it and a full stop, at most EXPLANATION_CHARS; None when nothing is left."""
    found = re.findall(r"\[?EXPLANATION\]?\s*:\s*(.+)", reply, flags=re.IGNORECASE)
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    text = found[-1].strip() if found else (lines[-1] if lines else "")
    text = text.strip().rstrip(".").strip("*").strip()
    while len(text) > 1 and text[0] == text[-1] and text[0] in "\"'`":  # quoted whole, not a quote inside
        text = text[1:-1].strip()
    text = text.rstrip(".").strip()
    return text[:EXPLANATION_CHARS] or None


def judge_messages(method: str, explanation: str, batch: list[Excerpt]) -> list[dict[str, str]]:
    system = DETECTION_SYSTEM if method == "detection" else FUZZING_SYSTEM
    lines = [f"Example {n}: {render(e, marked=method == 'fuzzing')}" for n, e in enumerate(batch, 1)]
    user = f"Feature explanation: {explanation}\n\n" + "\n".join(lines) + f"\n\nAnswer with a list of {len(batch)}."
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _answer(word: str) -> bool | None:
    word = word.strip().strip("\"'.").lower()
    return True if word in _TRUE else False if word in _FALSE else None


def parse_answers(reply: str, count: int) -> list[bool] | None:
    """The judge's ``count`` answers in order, or None when the reply does not hold them (module docstring)."""
    for group in re.findall(r"\[([^\[\]]*)\]", reply):
        words = [w for w in re.split(r"[,\s]+", group) if w]
        answers = [_answer(w) for w in words]
        if len(answers) == count and all(a is not None for a in answers):
            return [bool(a) for a in answers]
    digits = re.findall(r"(?<![\w.])[01](?![\w.])", reply)
    if len(digits) == count:
        return [d == "1" for d in digits]
    lines = dict(re.findall(r"(?im)^\W*example\s*(\d+)\s*[:=\-]\s*(\w+)", reply))
    answers = [_answer(lines.get(str(n), "")) for n in range(1, count + 1)]
    return [bool(a) for a in answers] if all(a is not None for a in answers) else None


@dataclass
class Judged:
    """One judge's verdict on an explanation: the examples it saw with its answers, and the score (None when
    too few answers could be read)."""

    examples: list[dict[str, Any]]
    balanced_accuracy: float | None
    low: float | None
    high: float | None
    correct: int
    answered: int
    calls: int

    def as_json(self) -> dict[str, Any]:
        return {
            "balanced_accuracy": self.balanced_accuracy,
            "low": self.low,
            "high": self.high,
            "correct": self.correct,
            "total": len(self.examples),
            "answered": self.answered,
            "examples": self.examples,
        }


def calls_for(contexts: int) -> int:
    return -(-contexts // BATCH)


def judge(chat: Chat, method: str, explanation: str, contexts: list[Excerpt], seed: list[int]) -> Judged:
    """Ask the judge about every context, ``BATCH`` to a call, in a seeded random order (a ChatError stops it)."""
    rng = np.random.default_rng(seed)
    order = [contexts[i] for i in rng.permutation(len(contexts))]
    truth: list[bool] = []
    answers: list[bool | None] = []
    calls = 0
    for start in range(0, len(order), BATCH):
        batch = order[start : start + BATCH]
        calls += 1
        parsed = parse_answers(chat(judge_messages(method, explanation, batch), JUDGE_TOKENS), len(batch))
        truth += [e.truth for e in batch]
        answers += parsed if parsed is not None else [None] * len(batch)
    examples = [
        {
            "tokens": e.tokens,
            "highlighted": e.marked if method == "fuzzing" else [],
            "truth": t,
            "answer": a,
            "sample": e.sample,
        }
        for e, t, a in zip(order, truth, answers)
    ]
    done = [(t, a) for t, a in zip(truth, answers) if a is not None]
    correct = sum(t == a for t, a in done)
    score = balanced_accuracy([t for t, _ in done], [t == a for t, a in done], seed)
    if 2 * len(done) < len(order) or score is None:
        return Judged(examples, None, None, None, correct, len(done), calls)
    return Judged(examples, *score, correct=correct, answered=len(done), calls=calls)


def balanced_accuracy(truth: list[bool], correct: list[bool], seed: list[int]) -> tuple[float, float, float] | None:
    """(balanced accuracy, 95% low, high) of answers whose correctness is ``correct``; None without both a
    positive and a negative."""
    t, c = np.asarray(truth, dtype=bool), np.asarray(correct, dtype=np.float64)
    pos, neg = c[t], c[~t]
    if len(pos) == 0 or len(neg) == 0:
        return None
    point = (pos.mean() + neg.mean()) / 2
    rng = np.random.default_rng([*seed, BOOTSTRAP])
    tpr = pos[rng.integers(0, len(pos), (BOOTSTRAP, len(pos)))].mean(axis=1)
    tnr = neg[rng.integers(0, len(neg), (BOOTSTRAP, len(neg)))].mean(axis=1)
    low, high = np.percentile((tpr + tnr) / 2, [2.5, 97.5])
    return round(float(point), 4), round(float(min(low, point)), 4), round(float(max(high, point)), 4)


def judged_json(judged: dict[str, Judged]) -> str:
    return json.dumps({method: j.as_json() for method, j in judged.items()})
