"""The ``features.explain`` job: explain features with a language model, then score each explanation by
detection and fuzzing on held-out contexts the explainer never saw (``evidence``: what each sees; ``judge``:
prompts, replies, scores; ``chat``: the providers).

- **Which features**: ``ExplainParams.features``, in order (the API picks them: the best scored, then the most
  frequent). Per feature: one explainer call (its ``examples`` strongest excerpts and as many from across its
  range), then, with ``score``, ceil(2N / 5) detection and as many fuzzing calls (N = ``examples_per_class``).
- **A cache, and resume**: each result is a row of ``feature_explanations`` per feature and explainer, written
  as soon as it is in. A later run (POST the same request again) skips features with a final row (scored,
  explained, malformed), re-uses an explanation it already has (a feature is never explained twice) and tries
  the endpoint's failures (timeout, unauthorized, unreachable, upstream_error) again; ``redo`` ignores it all.
- **In flight**: up to ``concurrency`` features at an endpoint (one for the local model); each reserves its
  calls before its first, so the cap (``max_calls``) never cuts a feature in half: the run stops there with
  ``stopped: "cap"``. A cancel lets each feature in flight finish the call it is in, keeps every explanation
  already answered, and ends the job.
- **An endpoint that is down** fails the job (UPSTREAM_UNAVAILABLE) when its first ``DOWN_AFTER`` features in
  a row could not reach it or were refused (or every feature was, in a shorter run), before any success.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from threading import Event, Lock
from typing import Any

from appliance.contracts.events import FeaturesUpdated
from appliance.contracts.feature_arrays import arrays_for
from appliance.contracts.labeling import SECRET
from appliance.contracts.params.features import ExplainParams
from appliance.contracts.token_text import token_text
from appliance.data import explanations as sql
from appliance.data.database import Row
from appliance.data.secrets import read_secret
from appliance.errors import UpstreamUnavailable
from appliance.jobs.context import JobContext, JobInterrupted
from appliance.pipeline.features.chat import Chat, ChatError, openai_chat
from appliance.pipeline.features.evidence import Evidence, gather
from appliance.pipeline.features.judge import (
    BATCH,
    BOOTSTRAP,
    EXPLANATION_TOKENS,
    Judged,
    calls_for,
    explain_messages,
    judge,
    judged_json,
    parse_explanation,
)

DOWN_AFTER = 3  # features in a row that could not reach the endpoint, before any success: the job fails
TRANSPORT = ("unreachable", "unauthorized")
POLL_S = 0.1  # how often the job looks for a cancel while features are in flight


@dataclass
class Outcome:
    """One feature's result in this run (``state`` None: nothing new to write)."""

    index: int
    state: str | None = None
    message: str | None = None
    explanation: str | None = None
    new_explanation: bool = False
    examples: str | None = None  # the explainer's excerpts, JSON
    judged: dict[str, Judged] | None = None
    calls: int = 0
    cached: bool = False
    capped: bool = False


class _Stopped(Exception):
    """The run halts (a cancel, an endpoint that is down): no new call."""


class _Budget:
    """The run's language-model calls, reserved a feature at a time."""

    def __init__(self, calls: int):
        self.left = calls
        self._lock = Lock()

    def take(self, calls: int) -> bool:
        with self._lock:
            if calls > self.left:
                return False
            self.left -= calls
            return True

    def give(self, calls: int) -> None:
        with self._lock:
            self.left += calls


def run(ctx: JobContext, params: ExplainParams) -> dict[str, Any]:
    from appliance.contracts.tokenization import load_tokenizer

    prior: dict[int, Row] = {}
    if not params.redo:
        prior = {r["idx"]: r for r in ctx.db.all(sql.cached(params.training_id, params.explainer))}
    todo = [i for i in params.features if not _done(prior.get(i), params.score)]
    job = _Run(ctx, params, cached=len(params.features) - len(todo))
    if todo:
        tokenizer = load_tokenizer(params.tokenizer, ctx.layout.root)
        texts: dict[int, str] = {}

        def text(token: int) -> str:
            if token not in texts:
                texts[token] = token_text(tokenizer, token)  # a partial character as byte escapes
            return texts[token]

        with _provider(ctx, params) as (chat, concurrency):
            job.all(todo, prior, chat, concurrency, text)
    return job.result()


def _done(row: Row | None, score: bool) -> bool:
    """Whether a cached row answers this run: a final state, and for a run that scores, not an explanation
    still waiting for its scores."""
    if row is None or row["state"] not in sql.FINAL:
        return False
    return not (score and row["state"] == "explained" and row["detection"] is None)


@contextmanager
def _provider(ctx: JobContext, params: ExplainParams) -> Iterator[tuple[Chat, int]]:
    """The chat of the configured provider, and how many features may be in flight at once."""
    if params.settings.provider == "local":
        if params.local is None:  # the API always names the model for this provider
            raise ValueError("the local provider needs its model (ExplainParams.local)")
        # Imported here: the local provider is the only part of this job that loads a model.
        from appliance.pipeline.features.local_chat import estimate_local_chat, open_local_chat

        local = params.local
        with (
            ctx.memory.admit(ctx, estimate_local_chat(local.parameters, local.precision, local.model_path)),
            open_local_chat(ctx, local.model_path, local.precision, local.tokenizer) as chat,
        ):
            yield chat, 1
        return
    try:
        chat = openai_chat(params.settings, read_secret(ctx.layout.root, SECRET))
    except ChatError as exc:
        raise UpstreamUnavailable(exc.message) from None
    yield chat, params.settings.concurrency


class _Run:
    """One run over its features: the work of each (threads), and what the job's thread records."""

    def __init__(self, ctx: JobContext, params: ExplainParams, cached: int):
        self.ctx, self.params = ctx, params
        self.budget = _Budget(params.max_calls)
        self.halt = Event()  # no new call: a cancel, an endpoint that is down
        self.counts: Counter[str] = Counter(cached=cached)
        self.failed: Counter[str] = Counter()
        self.stopped: str | None = None
        self.succeeded = False
        self.streak = 0  # features in a row that could not reach the endpoint
        self.down: str | None = None
        self.last_failure = ""
        self.written = False

    # -- the job's thread -------------------------------------------------------------------------------
    def all(
        self, todo: list[int], prior: dict[int, Row], chat: Chat, concurrency: int, text: Callable[[int], str]
    ) -> None:
        arrays = arrays_for(self.ctx.layout.features(self.params.training_id))
        queue = iter(todo)
        pending: dict[Future[Outcome], int] = {}
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="explain") as pool:
            try:
                while True:
                    while not self.halt.is_set() and self.stopped is None and len(pending) < concurrency:
                        index = next(queue, None)
                        if index is None:
                            break
                        pending[pool.submit(self.work, arrays, index, prior.get(index), chat, text)] = index
                    if not pending:
                        break
                    done, _ = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                    for future in done:
                        del pending[future]
                        self.record(future.result())
                    if self.ctx.control is not None:
                        self.halt.set()  # the features in flight end their call; what they have is kept
            finally:
                self.halt.set()  # (after an error: the loop above ends with nothing pending)
                for future in pending:
                    self.record(future.result())
                if self.written:
                    self.ctx.event(
                        "features.updated", FeaturesUpdated(training_id=self.params.training_id, status="explained")
                    )
        self.ctx.check()
        attempted = sum(self.failed.values()) + self.counts["explained"] + self.counts["scored"]
        if self.down is None and not self.succeeded and attempted and self.failed.total() == self.streak:
            self.down = self.last_failure
        if self.down is not None:
            raise UpstreamUnavailable(
                f"The language model failed for the first {self.streak} features in a row (unreachable, or refusing"
                f" the key): {self.down}",
                details={"states": dict(self.failed)},
            )

    def record(self, out: Outcome) -> None:
        self.counts["calls"] += out.calls
        if out.cached:
            self.counts["cached"] += 1
        if out.capped:  # no new feature; those in flight have their calls
            self.stopped = "cap"
        if out.state is not None:
            self.ctx.db.write(*sql.result(self._row(out), time.time()))
            self.written = True
            self._count(out)
        done = self.counts["cached"] + self.counts["written"]
        total = len(self.params.features)
        self.ctx.progress(
            done / max(total, 1),
            f"Explained {done} of {total} features ({self.counts['calls']} calls)",
            training_id=self.params.training_id,
        )

    def _count(self, out: Outcome) -> None:
        assert out.state is not None
        self.counts["written"] += 1
        self.counts["explained"] += out.new_explanation
        self.counts["scored"] += out.state == "scored"
        if out.state not in ("scored", "explained"):
            self.failed[out.state] += 1
        if out.new_explanation or out.state in ("scored", "explained"):
            self.succeeded, self.streak = True, 0
        elif out.state in TRANSPORT:
            self.streak += 1
            self.last_failure = out.message or out.state
            if not self.succeeded and self.streak >= DOWN_AFTER and self.down is None:
                self.down = self.last_failure
                self.halt.set()
        else:
            self.streak = 0

    def _row(self, out: Outcome) -> sql.Result:
        judged = out.judged or {}
        scores: list[float | None] = []
        for method in ("detection", "fuzzing"):
            j = judged.get(method)
            scores += [j.balanced_accuracy, j.low, j.high] if j else [None, None, None]
        return sql.Result(
            training_id=self.params.training_id,
            index=out.index,
            explainer=self.params.explainer,
            state=str(out.state),
            message=out.message,
            explanation=out.explanation,
            method=self._method(judged) if judged else None,
            scores=tuple(scores),
            judged=judged_json(judged) if judged else None,
            explainer_examples=out.examples,
            calls=out.calls,
        )

    def _method(self, judged: dict[str, Judged]) -> str:
        shown = ", ".join(
            f"{m} {sum(e['truth'] for e in j.examples)}+{sum(not e['truth'] for e in j.examples)}"
            for m, j in judged.items()
        )
        return (
            f"{self.params.explainer}: {shown} held-out contexts, {BATCH} per call; balanced accuracy with a 95%"
            f" stratified bootstrap interval ({BOOTSTRAP} resamples)"
        )

    def result(self) -> dict[str, Any]:
        return {
            "training_id": self.params.training_id,
            "explainer": self.params.explainer,
            "requested": len(self.params.features),
            "cached": self.counts["cached"],
            "explained": self.counts["explained"],
            "scored": self.counts["scored"],
            "failed": dict(self.failed),
            "calls": self.counts["calls"],
            "stopped": self.stopped,
            # Neither done before nor answered now (a cap, a cancel): a later run takes them.
            "left": len(self.params.features) - self.counts["cached"] - self.counts["written"],
        }

    # -- a pool thread --------------------------------------------------------------------------------
    def work(self, arrays: Any, index: int, prior: Row | None, chat: Chat, text: Callable[[int], str]) -> Outcome:
        """One feature: explain it (unless it has an explanation), then judge it. Never raises: its failures
        are its state."""
        settings = self.params.settings
        out = Outcome(index)
        if prior is not None:
            out.explanation, out.examples = prior["explanation"], prior["explainer_examples"]
        evidence = gather(
            arrays,
            index,
            text,
            examples=settings.examples,
            per_class=settings.examples_per_class,
            excluded=set(self.params.excluded_token_ids),
            judged=self.params.score,
        )
        scoring = self.params.score and evidence.judgeable
        need = (out.explanation is None) + (
            calls_for(len(evidence.detection)) + calls_for(len(evidence.fuzzing)) if scoring else 0
        )
        if need == 0:  # explained before, and too few held-out contexts to score it now either
            out.cached = True
            return out
        if not self.budget.take(need):
            out.capped = True
            return out
        used = 0

        def call(messages: list[dict[str, str]], max_tokens: int) -> str:
            nonlocal used
            if self.halt.is_set() or self.ctx.control is not None:
                raise _Stopped
            used += 1
            return chat(messages, max_tokens)

        try:
            self._explain_and_judge(out, evidence, scoring, call)
        except ChatError as exc:  # scores are whole or none: a later run judges it again
            out.state, out.message, out.judged = exc.state, exc.message, None
        except (_Stopped, JobInterrupted):
            # Kept: an explanation answered before the stop (the next run scores it and never asks again).
            out.judged = None
            out.state = "explained" if out.new_explanation else None
            out.message = "Stopped before its scores: a later run scores it" if out.new_explanation else None
        finally:
            out.calls = used
            self.budget.give(need - used)
        return out

    def _explain_and_judge(self, out: Outcome, evidence: Evidence, scoring: bool, call: Chat) -> None:
        if out.explanation is None and not evidence.explainer:  # it fires in held-out samples only
            out.state, out.message = "malformed", "No excerpt outside the held-out samples to explain it from"
            return
        if out.explanation is None:
            out.examples = json.dumps([asdict(e) for e in evidence.explainer])
            reply = call(explain_messages(evidence.explainer), EXPLANATION_TOKENS)
            out.explanation = parse_explanation(reply)
            if out.explanation is None:
                out.state, out.message = "malformed", "The explainer's reply held no explanation"
                return
            out.new_explanation = True
        if not scoring:
            out.state = "explained"
            if self.params.score:
                out.message = (
                    f"Not scored: {evidence.held_out_firing} held-out positions where it fires, too few for"
                    " activating and non-activating contexts"
                )
            return
        out.judged = {}
        for number, (method, contexts) in enumerate((("detection", evidence.detection), ("fuzzing", evidence.fuzzing))):
            out.judged[method] = judge(call, method, out.explanation, contexts, [out.index, number])
        unread = [m for m, j in out.judged.items() if j.balanced_accuracy is None]
        if unread:
            out.state = "malformed"
            out.message = f"The judge's answers could not be read ({', '.join(unread)}): fewer than half answered"
        else:
            out.state = "scored"
