"""``mistudio demo``: the whole pipeline on the built-in demo kit, through the HTTP API of a running
appliance: demo dataset and model -> tokenization -> activations -> SAE training -> features ->
steering, with a progress bar per stage and a summary at the end.

It is a plain HTTP client on purpose (the standard library only: no torch, no worker code, no
database access), so what it shows is exactly what the API offers any other client, and it works
against an appliance on another machine (``--url``).

A completed run is recorded like a bench run (see :mod:`appliance.commands.bench.records`): its transcript
(what it printed, without the progress lines), the date, the machine and the duration go to
``docs/bench/demo.json`` of the source checkout, and the README's transcript is rendered from that
file, so it shows a run that happened. ``--no-record`` or an installed package records nothing;
``--record-dir DIR`` records elsewhere.

The finale steers with a feature chosen to show a real effect: one that is scored (it has the
extraction's minimum support, so its score has an interval), fires on at least
:data:`FREQUENCY_FLOOR` of the tokens, and has the best lower bound of its score's interval among
those. The :data:`CANDIDATES` best such features are each steered once (a plain request, well under
a second on the demo model) and the one whose text moved most (KL) is kept; the summary says why.
A feature that fires on a handful of samples can score 1.0 by luck and, steered, barely moves the
text (KL 0.02 for one that fired on 2 samples of 130,245 tokens), which is what the floor avoids.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, TextIO

# The architectures the demo can train on its residual-stream activations (a transcoder reads the MLP's).
# The k ones get the plan's k; the others ask for that L0 (target-L0 mode), with their own learning rate.
ARCHITECTURES = ("topk", "batchtopk", "matryoshka_batchtopk", "jumprelu", "gated", "sparse", "skip")
K_ARCHITECTURES = ("topk", "batchtopk", "matryoshka_batchtopk")
ARCHITECTURE_NAMES = {
    "topk": "TopK",
    "batchtopk": "BatchTopK",
    "matryoshka_batchtopk": "Matryoshka BatchTopK",
    "jumprelu": "JumpReLU",
    "gated": "Gated",
    "sparse": "Sparse",
    "skip": "Skip",
}
FINAL = ("completed", "failed", "cancelled")
POLL_S = 0.5
STAGES = ("demo kit", "tokenize", "activations", "training", "features", "steering")
FREQUENCY_FLOOR = 0.01  # the steered feature fires on at least 1% of the tokens read
CANDIDATES = 3  # the best-scored features above the floor that are steered; the largest KL is kept


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why (and what to do)."""


class Unreachable(DemoError):
    """Nothing answers at the appliance's address."""


@dataclass(frozen=True)
class Plan:
    """What the demo asks the appliance for. The full plan gives a decent SAE on the 4-layer demo
    model within minutes on two CPU cores; the quick plan only shows that every stage works."""

    layer: int = 2  # the demo model has 4 blocks: a middle one has the richest features
    samples: int | None = None  # activation samples (None: the whole demo dataset)
    context_length: int = 128
    d_sae: int = 2048  # 16 latents per dimension of the 128-wide residual stream
    k: int = 16  # TopK: L0 is k by construction, so it needs no sparsity tuning; the others' target L0
    architecture: str = "topk"  # one of ARCHITECTURES
    batch_size: int = 1024
    total_steps: int = 4000  # 4.1M tokens: about 12 passes over the demo corpus's 341k
    learning_rate: float = 1e-3
    feature_samples: int = 2000  # evaluation samples for feature extraction
    prompt: str = "Return the number of"
    coefficient: float = 4.0  # in units of the feature's max activation: strong enough to see at once
    max_tokens: int = 30
    seed: int = 42


FULL = Plan()
QUICK = Plan(
    samples=300, context_length=64, d_sae=256, k=8, batch_size=256, total_steps=150, feature_samples=80, max_tokens=12
)


def sparsity(plan: Plan) -> dict[str, Any]:
    """How the plan's SAE gets its L0: k for the k architectures (at the plan's learning rate, measured for
    TopK), a target L0 of k for the others (at their architecture's learning rate)."""
    if plan.architecture in K_ARCHITECTURES:
        return {"k": plan.k, "learning_rate": plan.learning_rate}
    return {"target_l0": plan.k}


def sparsity_said(plan: Plan) -> str:
    return f"k={plan.k}" if plan.architecture in K_ARCHITECTURES else f"target L0 {plan.k}"


# -- HTTP ---------------------------------------------------------------------------------------


class Client:
    """JSON over HTTP with the appliance's envelope: ``data`` on success, ``error`` raised."""

    def __init__(self, url: str, token: str | None):
        self.url = url.rstrip("/")
        self.token = token

    def call(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None, timeout: float = 30.0
    ) -> Any:
        target = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(target, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null").get("data")
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read()).get("error") or {}
            except ValueError:
                error = {}
            if exc.code == 401:
                raise DemoError(f"{self.url} wants an access token: set MISTUDIO_TOKEN to the appliance's") from None
            raise DemoError(
                f"{method} {path} answered {exc.code} {error.get('code', '')}: {error.get('message', exc.reason)}"
            ) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(
                f"no appliance answers at {self.url} ({reason}): start it with `mistudio up` "
                "(or give its address with --url)"
            ) from None

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params=params or None)

    def post(self, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        return self.call("POST", path, body if body is not None else {}, timeout=timeout)


# -- the terminal ---------------------------------------------------------------------------------


def duration(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m {seconds % 60:04.1f}s"


class Bar:
    """One line per stage. On a terminal it redraws in place (\\r); elsewhere (logs, tests) it
    prints a plain line at start, at each quarter, and at the end, so the output stays readable."""

    WIDTH = 24

    def __init__(self, number: int, name: str, out: TextIO, tty: bool, kept: list[str] | None = None):
        self.head = f"[{number}/{len(STAGES)}] {name:<11}"
        self.out, self.tty = out, tty
        self.kept = kept  # the transcript: gets the final line only, not the progress lines
        self.began = time.monotonic()
        self.quarter = -1
        self.width = shutil.get_terminal_size((100, 20)).columns if tty else 0

    def update(self, fraction: float, note: str = "") -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        if self.tty:
            filled = round(fraction * self.WIDTH)
            line = (
                f"{self.head} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {fraction * 100:3.0f}% "
                f"{duration(time.monotonic() - self.began):>8}  {note}"
            )
            self.out.write("\r" + line[: self.width - 1].ljust(self.width - 1))
            self.out.flush()
        elif int(fraction * 4) > self.quarter:
            self.quarter = int(fraction * 4)
            self._line(f"{fraction * 100:3.0f}%  {note}")

    def done(self, note: str) -> float:
        took = time.monotonic() - self.began
        if self.tty:
            self.out.write("\r" + " " * (self.width - 1) + "\r")
        line = f"done in {duration(took)}  {note}"
        self._line(line)
        if self.kept is not None:
            self.kept.append(f"{self.head} {line}")
        return took

    def _line(self, text: str) -> None:
        self.out.write(f"{self.head} {text}\n")
        self.out.flush()


# -- the pipeline ---------------------------------------------------------------------------------


@dataclass
class Demo:
    client: Client
    plan: Plan
    quick: bool = False
    out: TextIO = sys.stdout
    tty: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    current_job: str | None = None  # what keeps running if the user presses Ctrl-C
    transcript: list[str] = field(default_factory=list)  # what it printed, less the progress lines
    total_s: float = 0.0

    def bar(self, number: int, name: str) -> Bar:
        return Bar(number, name, self.out, self.tty, self.transcript)

    def follow(self, job_id: str, bar: Bar, note: Callable[[dict[str, Any]], str] | None = None) -> dict[str, Any]:
        """Poll the job until it ends (GET /api/jobs/<id>: simpler than SSE, and enough for a bar
        redrawn twice a second); its final state, or DemoError if it did not complete."""
        self.current_job = job_id
        while True:
            job = self.client.get(f"/api/jobs/{job_id}")
            if job["status"] in FINAL:
                break
            bar.update(job["progress"], (note(job) if note else job["message"]) or job["status"])
            time.sleep(POLL_S)
        if job["status"] != "completed":
            error = job.get("error") or {}
            raise DemoError(
                f"job {job_id} ({job['kind']}) {job['status']}: "
                f"{error.get('code', '')} {error.get('message', job['message'])}".rstrip()
            )
        self.current_job = None
        return job

    # Each stage returns what later stages need and records its time.
    def demo_kit(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The demo dataset and model: built on the appliance's first start; made here if absent."""
        bar = self.bar(1, "demo kit")
        for kind in ("datasets", "models"):
            if not [x for x in self.client.get(f"/api/{kind}") if x["source"] == "demo" and x["status"] != "error"]:
                self.client.post(f"/api/{kind}/demo")
        while True:
            dataset = self._newest_demo("datasets")
            model = self._newest_demo("models")
            for what, row in (("dataset", dataset), ("model", model)):
                if row["status"] == "error":
                    raise DemoError(f"the demo {what} {row['id']} failed to build: {row.get('error')}")
            if dataset["status"] == "ready" and model["status"] == "ready":
                break
            parts = [
                1.0
                if row["status"] == "ready"
                else (self.client.get(f"/api/jobs/{row['job_id']}")["progress"] if row.get("job_id") else 0.0)
                for row in (dataset, model)
            ]
            bar.update(sum(parts) / 2, "building the demo dataset and model (first start)")
            time.sleep(POLL_S)
        arch = self.client.get(f"/api/models/{model['id']}/architecture")
        if self.plan.layer >= arch["layers"]:
            raise DemoError(f"the demo model has layers 0-{arch['layers'] - 1}; --layer {self.plan.layer} is not one")
        self.timings["demo kit"] = bar.done(
            f"dataset {dataset['id']} ({dataset['num_samples']:,} texts), model {model['id']} "
            f"({arch['layers']} layers, d_model {arch['d_model']})"
        )
        return dataset, model

    def _newest_demo(self, kind: str) -> dict[str, Any]:
        rows = [x for x in self.client.get(f"/api/{kind}") if x["source"] == "demo"]
        if not rows:
            raise DemoError(f"the demo {kind[:-1]} disappeared while the demo waited for it")
        usable = [x for x in rows if x["status"] != "error"]
        return (usable or rows)[0]  # newest first

    def tokenize(self, dataset: dict[str, Any]) -> None:
        """Store the dataset's tokens once (activation extraction reads them instead of
        re-tokenizing); skipped when the demo tokenizer's tokenization is already there."""
        bar = self.bar(2, "tokenize")
        done = [t for t in dataset.get("tokenizations", []) if t["tokenizer"] == "demo" and t["status"] == "ready"]
        if not done:
            job = self.client.post(
                f"/api/datasets/{dataset['id']}/tokenize",
                {"tokenizer": "demo", "max_length": 256, "padding": "do_not_pad"},
            )
            self.follow(job["job_id"], bar)
            dataset = self.client.get(f"/api/datasets/{dataset['id']}")
            done = [t for t in dataset["tokenizations"] if t["tokenizer"] == "demo"]
        stats = (done[0].get("stats") or {}) if done else {}
        tokens = f"{stats['total_tokens']:,} tokens" if "total_tokens" in stats else "tokenized"
        self.timings["tokenize"] = bar.done(f"{tokens} with the demo tokenizer")

    def activations(self, dataset: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
        """Extract the layer's residual stream over the dataset, or reuse a ready activation set with
        exactly these settings (a second demo run then costs no extraction and no extra disk)."""
        bar = self.bar(3, "activations")
        wanted = {
            "dataset_id": dataset["id"],
            "layers": [self.plan.layer],
            "hook_types": ["residual"],
            "batch_size": 32,
            "max_samples": self.plan.samples,
            "context_length": self.plan.context_length,
            # The default, named so that a set extracted with special tokens kept is not reused.
            "exclude_special_tokens": True,
        }
        same = [
            a
            for a in self.client.get("/api/activations")
            if a["model_id"] == model["id"]
            and a["status"] == "ready"
            and all(a["config"].get(k) == v for k, v in wanted.items() if k != "batch_size")
        ]
        if same:
            act, how = same[0], "reused"
        else:
            job = self.client.post(f"/api/models/{model['id']}/extract-activations", wanted)
            finished = self.follow(job["job_id"], bar)
            act, how = self.client.get(f"/api/activations/{finished['target']['id']}"), "extracted"
        manifest = act.get("manifest") or {}
        size = f", {act['size_bytes'] / 1e6:.0f} MB" if act.get("size_bytes") else ""
        left_out = manifest.get("excluded_positions") or 0
        special = f" ({left_out:,} special-token positions left out)" if left_out else ""
        self.timings["activations"] = bar.done(
            f"{act['id']} ({how}): layer {self.plan.layer} residual stream, {manifest.get('samples', 0):,} samples, "
            f"{manifest.get('tokens', 0):,} tokens{special}{size}"
        )
        return act

    def training(self, act: dict[str, Any]) -> dict[str, Any]:
        plan = self.plan
        bar = self.bar(4, "training")
        job = self.client.post(
            "/api/training/start",
            {
                "activation_id": act["id"],
                "layer": plan.layer,
                "hook_type": "residual",
                "encoder_type": plan.architecture,
                "seed": plan.seed,
                "auto_save_interval": 0,
                "hyperparameters": {
                    "d_sae": plan.d_sae,
                    **sparsity(plan),
                    "batch_size": plan.batch_size,
                    "total_steps": plan.total_steps,
                    "warmup_steps": min(100, plan.total_steps // 10),
                    "lr_decay": "cosine",
                    "log_every": max(10, plan.total_steps // 100),
                },
            },
        )

        def note(state: dict[str, Any]) -> str:
            """The job's step, and the latest live metrics of the training it runs."""
            training_id = (state.get("target") or {}).get("id")
            latest = self.client.get(f"/api/training/{training_id}").get("latest") if training_id else None
            if not latest:
                return state["message"]
            return (
                f"{state['message']}  EV {latest['explained_variance']:.3f}  L0 {latest['l0']:.1f}  "
                f"dead {latest['dead_latents']}"
            )

        finished = self.follow(job["job_id"], bar, note)
        training = self.client.get(f"/api/training/{finished['target']['id']}")
        ev = training.get("evaluation") or {}
        self.timings["training"] = bar.done(
            f"{training['id']}: {ARCHITECTURE_NAMES[plan.architecture]} SAE, {plan.d_sae:,} latents, "
            f"{sparsity_said(plan)}, {training['step']:,} steps; "
            f"explained variance {_num(ev.get('explained_variance'))}, L0 {_num(ev.get('l0'), 1)}"
        )
        return training

    def features(self, training: dict[str, Any]) -> dict[str, Any]:
        bar = self.bar(5, "features")
        job = self.client.post(
            "/api/features/extract",
            {
                "training_id": training["id"],
                "eval_samples": self.plan.feature_samples,
                "context_length": self.plan.context_length,
            },
        )
        self.follow(job["job_id"], bar)
        summary = self.client.get(f"/api/training/{training['id']}/features/summary")["summary"] or {}
        scored = summary.get("scored")
        support = "" if scored is None else f", {scored:,} scored ({summary.get('too_rare', 0):,} too rare to score)"
        self.timings["features"] = bar.done(
            f"{summary.get('alive', 0):,} of {summary.get('features', 0):,} features alive{support}, "
            f"{summary.get('interpretable_share', 0) * 100:.0f}% of {'those' if support else 'them'} interpretable "
            f"(score >= 0.5), {summary.get('tokens', 0):,} tokens read"
        )
        return summary

    def candidates(self, training: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        """The features to steer with, best first, and the rule that picked them: the best lower
        bounds among scored features at or above the frequency floor (the browser's interpretability
        order is by that bound, unscored last); failing those, the most frequent live features."""
        path = f"/api/training/{training['id']}/features"
        floor = f"{FREQUENCY_FLOOR * 100:g}%"
        rows = self.client.get(
            path, sort_by="interpretability", order="desc", limit=CANDIDATES, min_frequency=FREQUENCY_FLOOR
        )
        scored = [row for row in rows if _scored(row)]
        if len(scored) == 1:
            return scored, "the only scored feature above the floor"
        if scored:
            return scored, f"the {len(scored)} scored features above the floor with the best lower bounds"
        rows = self.client.get(path, sort_by="frequency", order="desc", limit=CANDIDATES)
        return rows, f"the {len(rows)} most frequent features (no scored feature fires on {floor} of tokens or more)"

    def steering(self, training: dict[str, Any], candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One plain (non-streaming) request per candidate: the API answers when both generations
        are done. The results in the candidates' order."""
        bar = self.bar(6, "steering")
        results = []
        for number, feature in enumerate(candidates):
            bar.update(
                number / len(candidates),
                f"feature #{feature['index']} at {self.plan.coefficient:+g}, {self.plan.max_tokens} tokens "
                f"({number + 1} of {len(candidates)})",
            )
            results.append(
                self.client.post(
                    "/api/steering/generate",
                    {
                        "training_id": training["id"],
                        "prompt": self.plan.prompt,
                        "features": [{"index": feature["index"], "coefficient": self.plan.coefficient, "mode": "add"}],
                        "temperature": 0.7,
                        "max_tokens": self.plan.max_tokens,
                        "seed": self.plan.seed,
                        "stream": False,
                    },
                    timeout=900,
                )
            )
        timing = results[0].get("timing") or {}
        self.timings["steering"] = bar.done(
            f"{len(results)} feature{'s' if len(results) > 1 else ''} tried, "
            f"{timing.get('generated_tokens', 0)} tokens per side, {_num(timing.get('ms_per_token'), 1)} ms/token "
            f"on {timing.get('device', '?')}"
        )
        return results

    def run(self) -> None:
        began = time.monotonic()
        plan = self.plan
        health = self.client.get("/api/health")
        self._say(
            f"miStudio demo on {self.client.url}: {'quick' if self.quick else 'full'} run "
            f"({ARCHITECTURE_NAMES[plan.architecture]} SAE on layer {plan.layer} of the demo model)"
        )
        worker = (health.get("components") or {}).get("worker") or {}
        if not worker.get("ok", True):
            self._say(
                f"note: no live worker ({worker.get('detail')}): the jobs wait until one runs "
                "(`mistudio up` starts the API and the worker together)"
            )
        elif health.get("status") != "healthy":
            self._say(f"note: the appliance reports {health.get('status')!r}: {_health_note(health)}")
        dataset, model = self.demo_kit()
        self.tokenize(dataset)
        act = self.activations(self.client.get(f"/api/datasets/{dataset['id']}"), model)
        training = self.training(act)
        extraction = self.features(training)
        top = self.top_features(training)
        candidates, rule = self.candidates(training)
        if not candidates:
            raise DemoError(f"the SAE {training['id']} has no live features to show or steer")
        tried = list(zip(candidates, self.steering(training, candidates)))
        self.total_s = time.monotonic() - began
        self.summary(training, extraction, top, tried, rule, self.total_s)

    def top_features(self, training: dict[str, Any], count: int = 5) -> list[dict[str, Any]]:
        """The most interpretable features: the best lower bounds of the score's interval. Special
        tokens (the <|endoftext|> every demo sample starts with) are left out of the extraction, so
        no latent that fires only on them tops the list."""
        rows = self.client.get(
            f"/api/training/{training['id']}/features", sort_by="interpretability", order="desc", limit=count
        )
        return [row for row in rows if _scored(row)]

    # -- the summary ------------------------------------------------------------------------------
    def summary(
        self,
        training: dict[str, Any],
        extraction: dict[str, Any],
        top: list[dict[str, Any]],
        tried: list[tuple[dict[str, Any], dict[str, Any]]],
        rule: str,
        total: float,
    ) -> None:
        ev = training.get("evaluation") or {}
        hp = training["config"]["hyperparameters"]
        say = self._say
        say("")
        say("Summary")
        say("=======")
        say(
            f"SAE                 {training['id']}: {ARCHITECTURE_NAMES[self.plan.architecture]}, layer "
            f"{training['layer']} residual stream, {hp.get('d_sae'):,} latents, {sparsity_said(self.plan)}, "
            f"{training['step']:,} steps on "
            f"{ev.get('tokens', 0):,} tokens"
        )
        say(f"explained variance  {_num(ev.get('explained_variance'))} (held-out activations)")
        say(f"L0                  {_num(ev.get('l0'), 1)} active latents per token; {ev.get('dead_latents', 0)} dead")
        if ev.get("ce_loss_recovered") is not None:
            say(
                f"CE loss recovered   {_num(ev['ce_loss_recovered'])} (the SAE spliced into the model: "
                f"CE {_num(ev.get('ce_loss_original'))} -> {_num(ev.get('ce_loss_with_sae'))})"
            )
        say("")
        say("Top features by interpretability (ranked by the lower bound of the score's interval)")
        for line in _score_method(extraction):
            say(line)
        for row in top:
            say(
                f"  #{row['index']:<5} score {_score(row):<16}  freq {row['frequency'] * 100:5.2f}%  "
                f"{_quote(row['label'])}"
            )
        if not top:
            say("  (none: no feature has the support to be scored)")
        chosen, steered = max(tried, key=lambda pair: _kl(pair[1]))
        feature = (steered.get("features") or [{}])[0]
        metrics = steered.get("metrics") or {}
        others = ", ".join(f"#{row['index']} {_num(_kl(result))}" for row, result in tried if row is not chosen)
        say("")
        say(
            f"Steering            feature #{feature.get('index')} {_quote(feature.get('label', ''))} "
            f"{feature.get('mode', 'add')} {feature.get('coefficient', 0):+g} x its max activation "
            f"(= {_num(feature.get('value'), 2)} along its decoder direction), seed {steered.get('seed')}"
        )
        say(
            f"  chosen     fires on {chosen['frequency'] * 100:.2f}% of tokens (floor {FREQUENCY_FLOOR * 100:g}%), "
            f"score {_score(chosen)}"
        )
        kl = _num(_kl(steered))
        say(f"  why        of {rule}, it moved the text most: KL {kl} ({others})" if others else f"  why        {rule}")
        say(f"  prompt     {_quote(steered.get('prompt', ''))}")
        say(f"  unsteered  {_quote(steered['unsteered']['text'])}")
        say(f"  steered    {_quote(steered['steered']['text'])}")
        say(
            f"  KL {_num(metrics.get('kl_divergence'))}   perplexity {_num(metrics.get('perplexity_unsteered'), 2)} -> "
            f"{_num(metrics.get('perplexity_steered'), 2)} (delta {_signed(metrics.get('perplexity_delta'))})   "
            f"similarity {_num(metrics.get('semantic_similarity'))}   "
            f"word overlap {_num(metrics.get('word_overlap'))}   "
            f"first divergence at token {steered.get('first_divergence')}"
        )
        say("")
        say("Timings             " + ", ".join(f"{name} {duration(s)}" for name, s in self.timings.items()))
        say(f"Total               {duration(total)}")
        say(f"Open the web UI at {self.client.url} to browse the features and steer by hand.")

    def _say(self, text: str) -> None:
        self.transcript.append(text)
        self.out.write(text + "\n")
        self.out.flush()

    def record(self, command: str) -> dict[str, Any]:
        """The completed run as ``docs/bench/demo.json`` keeps it. The machine is this one (the
        client's: the bench's machine_info); the appliance says what it runs on, and whether that is
        this machine, since the timings are its own."""
        from appliance.commands.bench.harness import machine_info

        info = self.client.get("/api/system/info")
        appliance = {
            key: info.get(key)
            for key in ("device_name", "platform_kind", "gpu_name", "cuda_available", "total_memory_mb")
        }
        appliance["torch"] = (info.get("worker") or {}).get("torch")
        appliance["same_machine"] = info.get("hostname") == socket.gethostname()
        return {
            "suite": "demo",
            "command": command,
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine_info(),
            "appliance": appliance,
            "settings": asdict(self.plan),
            "duration_s": round(self.total_s, 1),
            "timings_s": {name: round(s, 1) for name, s in self.timings.items()},
            "transcript": self.transcript,
        }


def _scored(row: dict[str, Any]) -> bool:
    # An appliance from before support-aware scores has no score_state: its score is its own word.
    return bool(row.get("score_state", "scored" if row.get("score") is not None else "too_rare") == "scored")


def _score(row: dict[str, Any]) -> str:
    """'0.99 (0.97–1.00)': the score and its interval, or why there is none."""
    if row.get("score") is None or not _scored(row):
        return "—" if row.get("score_state") == "dead" else "too rare to score"
    low, high = row.get("score_low"), row.get("score_high")
    return f"{row['score']:.2f}" + (f" ({low:.2f}–{high:.2f})" if low is not None and high is not None else "")


def _score_method(extraction: dict[str, Any]) -> list[str]:
    """What a score means: the measure, its interval and the support it needs, as the extraction
    reports them (an appliance from before support-aware scores reports the measure only)."""
    lines = ["  score     held-out F1 of the feature's top tokens as its predictor"]
    if extraction.get("score_interval"):
        lines[0] += f"; interval: {extraction['score_interval']}"
    if extraction.get("min_active_samples") is not None:
        lines.append(
            f"  support   scored only with >= {extraction['min_active_samples']} active samples and >= "
            f"{extraction.get('min_held_out_positives')} held-out positives; "
            f"{extraction.get('too_rare', 0):,} features are too rare to score"
        )
    return lines


def _kl(result: dict[str, Any]) -> float:
    return float((result.get("metrics") or {}).get("kl_divergence") or 0.0)


def _num(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _signed(value: Any) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _quote(text: str, limit: int = 160) -> str:
    """One line in quotes: line breaks shown as ↵ (as the UI's token chips do), long text cut."""
    flat = str(text).replace("\r", "").replace("\n", "↵")
    return f"“{flat[:limit]}{'…' if len(flat) > limit else ''}”"


def _health_note(health: dict[str, Any]) -> str:
    bad = [
        f"{name}: {part.get('detail', '')}"
        for name, part in (health.get("components") or {}).items()
        if not part.get("ok")
    ]
    return "; ".join(bad) or "see GET /api/health"


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM arrived: the demo stops as on Ctrl-C, exiting 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def run_demo(
    url: str,
    token: str | None,
    quick: bool = False,
    layer: int | None = None,
    out: TextIO = sys.stdout,
    architecture: str | None = None,
    record_dir: Path | None = None,
) -> int:
    """The ``mistudio demo`` command: 0 when every stage completed, 1 with a message otherwise,
    130 on Ctrl-C and 143 on SIGTERM (the job under way keeps running on the appliance). A completed
    run is recorded in ``record_dir`` (None: not recorded); a failed or interrupted one leaves the
    record as it was."""
    plan = QUICK if quick else FULL
    if hasattr(out, "reconfigure"):  # labels and texts are any Unicode; a C-locale pipe must not fail on them
        out.reconfigure(errors="replace")
    if layer is not None:
        plan = replace(plan, layer=layer)
    if architecture is not None:
        plan = replace(plan, architecture=architecture)
    demo = Demo(Client(url, token), plan, quick, out, tty=out.isatty())
    # Ctrl-C and SIGTERM stop the demo by its handler, not Python's default: a shell starts a
    # background command (`mistudio demo &`) with SIGINT ignored, and Python then keeps ignoring it.
    previous = {signum: signal.signal(signum, _interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        demo.run()
    except KeyboardInterrupt as exc:
        out.write("\n")
        if demo.current_job:
            print(
                f"mistudio demo: interrupted; job {demo.current_job} keeps running on the appliance (cancel it "
                f"in the web UI's jobs list, or: curl -X POST {demo.client.url}/api/jobs/{demo.current_job}/cancel)",
                file=sys.stderr,
            )
        else:
            print("mistudio demo: interrupted", file=sys.stderr)
        return 128 + (exc.signum if isinstance(exc, Interrupted) else signal.SIGINT)
    except DemoError as exc:
        if out.isatty():
            out.write("\n")
        print(f"mistudio demo: {exc}", file=sys.stderr)
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    if record_dir is not None:
        _save(
            demo,
            record_dir,
            "mistudio demo"
            + (" --quick" if quick else "")
            + (f" --layer {layer}" if layer is not None else "")
            + (f" --architecture {architecture}" if architecture is not None else ""),
        )
    return 0


def _save(demo: Demo, directory: Path, command: str) -> None:
    """Record the run; a record that cannot be written is said, but the demo itself succeeded."""
    from appliance.commands.bench import records

    try:
        path, readme = records.save(directory, demo.record(command))
    except (DemoError, OSError) as exc:
        print(f"mistudio demo: the run was not recorded: {exc}", file=sys.stderr)
        return
    # On stderr: stdout is the transcript itself.
    print(
        f"mistudio demo: recorded in {path}" + (f"; refreshed its transcript in {readme}" if readme else ""),
        file=sys.stderr,
    )
