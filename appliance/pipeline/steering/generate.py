"""Steered generation: the same prompt, seed and sampling, with and without feature interventions,
token by token, then measured side by side.

Interventions act on one module's output (the SAE's hook point, or for residual SAEs another
layer's residual stream), at every position the model computes: the prompt pass and every new
token, so the cached keys and values of earlier positions are steered too.

- ``add``: ``coefficient x strength x unit(W_dec[i])`` is added (strength: the feature's typical
  max activation, so +1 pushes about as hard as the feature's strongest natural firing).
- ``clamp``: the latent is set to ``coefficient x strength`` and decoded, keeping the SAE's error
  term: ``x + (v - z_i) W_dec[i]`` (the decoder is linear, so this is decode(z') + (x - decode(z))).
- ``ablate``: ``clamp`` to 0.

Each side has its own KV cache and its own random generator seeded alike, and the unsteered side
never runs an intervention, so with no effective intervention both sides compute the same numbers
and draw the same tokens.

Metrics (after generation; "generated positions" are the positions that predict generated tokens):

- ``kl_divergence``: mean over the unsteered text's generated positions of KL(P || Q), P the
  unsteered and Q the steered model's next-token distributions, both reading the unsteered text.
- ``perplexity_unsteered`` / ``perplexity_steered``: exp(mean cross-entropy) of each side's
  generated tokens under the unsteered model; ``perplexity_delta`` = steered - unsteered.
- ``semantic_similarity``: cosine of the two texts' mean final hidden states (unsteered model, over
  the generated tokens): the model's own embedding, no extra model.
- ``word_overlap``: Jaccard similarity of the two texts' sets of lower-case words.
- ``token_probability_shifts``: at the first position where the sides' tokens differ (else the
  first), the tokens whose probability moved most between P and Q.

Timing (``contracts.steering.SteeringTiming``): each side's own passes per token, so the steering
overhead is their ratio.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import msgspec

from appliance.contracts.events import SteeringCompleted, SteeringToken
from appliance.contracts.params.steering import GenerateParams, Mode, SteeredFeature
from appliance.contracts.steering import SteeringTiming
from appliance.contracts.token_text import token_text
from appliance.jobs.context import JobContext

__all__ = ["GenerateParams", "Intervention", "Mode", "SteeredFeature", "generate", "measure", "run"]

SIDES = ("unsteered", "steered")
SHIFTS_SHOWN = 10
WORD = re.compile(r"\w+")


# -- the intervention ----------------------------------------------------------------------------
class Intervention:
    """A forward hook that steers the module's output while ``active``; it can also record, for
    the features it names, their latents at every position (before or after the intervention)."""

    def __init__(
        self, sae: Any, features: list[SteeredFeature], reads_input: bool, writes_input: bool, device: Any, dtype: Any
    ):
        import torch

        self.sae, self.reads_input, self.writes_input = sae, reads_input, writes_input
        self.active = False
        self.record: Literal["off", "before", "after"] = "off"
        self.recorded: list[Any] = []
        W = sae.W_dec.detach().float()
        adds = [f for f in features if f.mode == "add" and f.coefficient * f.strength != 0]
        self.add_vector = None
        if adds:
            vector = torch.zeros(W.shape[1], device=W.device)
            for f in adds:
                vector += f.coefficient * f.strength * W[f.index] / W[f.index].norm().clamp_min(1e-8)
            self.add_vector = vector.to(device=device, dtype=dtype)
        sets = [f for f in features if f.mode != "add"]
        self.set_idx = torch.tensor([f.index for f in sets], dtype=torch.long, device=W.device)
        self.set_values = torch.tensor(
            [f.coefficient * f.strength if f.mode == "clamp" else 0.0 for f in sets], device=W.device
        )
        self.set_directions = W[self.set_idx]
        self.trace_idx = torch.tensor([f.index for f in features], dtype=torch.long, device=W.device)
        self.set_encoder = sae.subset_encoder(self.set_idx)
        self.trace_encoder = sae.subset_encoder(self.trace_idx)
        values = dict(zip((f.index for f in sets), self.set_values.tolist()))
        self.set_at_trace = [(position, values[f.index]) for position, f in enumerate(features) if f.index in values]

    @property
    def vector_norm(self) -> float:
        return float(self.add_vector.float().norm()) if self.add_vector is not None else 0.0

    @property
    def effective(self) -> bool:
        return self.add_vector is not None or len(self.set_idx) > 0

    @staticmethod
    def _latents(x: Any, encoder: Any) -> Any:
        return encoder(x.reshape(-1, x.shape[-1]).float())

    def steer(self, source: Any, target: Any) -> Any:
        """``target`` steered; ``source`` is what the SAE reads (the same tensor unless it is a transcoder)."""
        if self.record == "before":
            self.recorded.append(self._latents(source, self.trace_encoder).reshape(*source.shape[:-1], -1))
        if self.active:
            if len(self.set_idx):
                z = self._latents(source, self.set_encoder)
                change = (self.set_values - z) @ self.set_directions
                target = target + change.reshape(*target.shape[:-1], -1).to(target.dtype)
            if self.add_vector is not None:
                target = target + self.add_vector
        if self.record == "after":
            # Clamped and ablated latents read as set (the SAE's own view of the steered run, as
            # SAELens' hook_sae_acts_post shows it); the others as the SAE reads the steered stream
            # (a transcoder's source is upstream of the intervention: unchanged).
            latents = self._latents(
                source if self.reads_input and not self.writes_input else target, self.trace_encoder
            )
            for position, value in self.set_at_trace:
                latents[:, position] = value
            self.recorded.append(latents.reshape(*target.shape[:-1], -1))
        return target

    def attach(self, module: Any, view: Any = None) -> Any:
        """Hook ``module``; ``view`` (an ``InputView``) reads, and writes back, what the SAE sees of the
        module's input (``mlp_in``: the layer norm's value before its affine); None: the input itself."""
        from appliance.pipeline.models.architecture import block_output, first_input

        read = view.read if view is not None else first_input
        if self.writes_input:  # an SAE of the MLP's input: steer what enters the module

            def pre_hook(_module: Any, args: Any, kwargs: Any) -> Any:
                x = read(args, kwargs)
                steered = self.steer(x, x)
                if view is not None:
                    steered = view.write(steered)
                if args:
                    return (steered, *args[1:]), kwargs
                key = next(iter(kwargs))
                return args, {**kwargs, key: steered}

            return module.register_forward_pre_hook(pre_hook, with_kwargs=True)

        def hook(_module: Any, args: Any, kwargs: Any, output: Any) -> Any:
            out = block_output(output)
            source = read(args, kwargs) if self.reads_input else out
            steered = self.steer(source, out)
            return (steered, *output[1:]) if isinstance(output, tuple) else steered

        return module.register_forward_hook(hook, with_kwargs=True)


# -- sampling and text ---------------------------------------------------------------------------
def sample(logits: Any, temperature: float, top_p: float, generator: Any) -> int:
    """One token from [vocab] logits: greedy at temperature 0, else softmax(logits / T) cut to the
    smallest set of tokens whose probability reaches ``top_p`` (nucleus sampling)."""
    import torch

    if temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float().cpu() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        keep = sorted_probs.cumsum(0) - sorted_probs < top_p  # the first token always stays
        probs = torch.zeros_like(probs).scatter_(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


class TextStream:
    """Token ids -> text pieces. Byte-level tokens can end inside a character: such a piece waits
    (as "") until the character is complete, so concatenated pieces always equal the decoded text."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.shown = 0

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=False)
        if text.endswith("\ufffd"):
            return ""
        piece, self.shown = text[self.shown :], len(text)
        return piece

    def text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=False)


@dataclass
class Side:
    name: str
    steered: bool
    generator: Any
    stream: TextStream
    past: Any = None
    pieces: list[str] = field(default_factory=list)
    done: bool = False
    # The side's own forward passes and sampling: its speed, apart from the other side's.
    seconds: float = 0.0
    passes: int = 0

    def result(self) -> dict[str, Any]:
        return {"token_ids": self.stream.ids, "tokens": self.pieces, "text": self.stream.text()}


# -- generation ------------------------------------------------------------------------------------
def generate(
    model: Any,
    intervention: Intervention,
    prompt_ids: list[int],
    *,
    sides: tuple[str, ...] = SIDES,
    temperature: float,
    top_p: float,
    max_tokens: int,
    seed: int,
    tokenizer: Any,
    eos: int | None,
    on_token: Any = None,
    check: Any = None,
) -> dict[str, Any]:
    """Both sides, a token each per step (so they stream side by side). Returns each side's token
    ids and pieces and the timings."""
    import torch

    device = next(model.parameters()).device
    limit = _context_length(model)
    cache = _cache_argument(model)
    runs = [Side(name, name == "steered", torch.Generator().manual_seed(seed), TextStream(tokenizer)) for name in sides]
    started = time.perf_counter()
    first_token_at = None
    steps = 0
    with torch.inference_mode():
        for step in range(max_tokens):
            if check:
                check()
            if len(prompt_ids) + step >= limit:
                break
            for side in runs:
                if side.done:
                    continue
                inputs = torch.tensor([prompt_ids if side.past is None else side.stream.ids[-1:]], device=device)
                intervention.active = side.steered
                begun = time.perf_counter()
                # The mask spans the cached positions too; without one a prompt that starts with a
                # token equal to the pad id earns a "may be padded" warning each process.
                mask = torch.ones(1, len(prompt_ids) + len(side.stream.ids), dtype=torch.long, device=device)
                out = model(input_ids=inputs, attention_mask=mask, use_cache=True, **{cache: side.past})
                side.past = getattr(out, cache)
                # sample() reads the token back to the CPU, so on a GPU the pass has finished here.
                token = sample(out.logits[0, -1], temperature, top_p, side.generator)
                side.seconds += time.perf_counter() - begun
                side.passes += 1
                if eos is not None and token == eos:
                    side.done = True
                    continue
                piece = side.stream.push(token)
                side.pieces.append(piece)
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                if on_token:
                    on_token(side.name, piece, len(side.pieces) - 1)
            steps += 1
            if all(side.done for side in runs):
                break
    intervention.active = False
    elapsed = time.perf_counter() - started
    first_token_s = first_token_at - started if first_token_at else None
    at_context = len(prompt_ids) + steps >= limit
    timing = _timing(runs, len(prompt_ids), elapsed, first_token_s, device.type, at_context)
    return {"sides": {side.name: side.result() for side in runs}, "timing": timing}


def _cache_argument(model: Any) -> str:
    """The KV cache's argument (and output field): transformers 5 calls it ``cache`` and warns on the
    older ``past_key_values``, the only name 4.x knows."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _timing(
    runs: list[Side], prompt_tokens: int, elapsed: float, first_token_s: float | None, device: str, at_context: bool
) -> dict[str, Any]:
    """How long generation took: each side per token (SteeringTiming says what each figure covers), the
    whole per token and to the first one."""
    tokens = sum(len(side.pieces) for side in runs)
    per_token = {side.name: 1000 * side.seconds / side.passes for side in runs if side.passes}
    unsteered, steered = per_token.get("unsteered"), per_token.get("steered")
    timing = SteeringTiming(
        prompt_tokens=prompt_tokens,
        generated_tokens=max(len(s.pieces) for s in runs),
        unsteered_ms_per_token=_rounded(unsteered, 3),
        steered_ms_per_token=_rounded(steered, 3),
        overhead_ratio=round(steered / unsteered, 3) if steered is not None and unsteered else None,
        ms_per_token=round(1000 * elapsed / tokens, 3) if tokens else None,
        time_to_first_token_ms=round(1000 * first_token_s, 2) if first_token_s is not None else None,
        total_ms=round(1000 * elapsed, 2),
        device=device,
        stopped_at_context=at_context,
    )
    return msgspec.to_builtins(timing)


def _context_length(model: Any) -> int:
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if value:
            return int(value)
    return 1 << 30


# -- metrics ---------------------------------------------------------------------------------------
def _pass(
    model: Any,
    intervention: Intervention,
    ids: list[int],
    start: int,
    steered: bool,
    record: Literal["off", "before", "after"],
) -> tuple[Any, Any, Any]:
    """One forward over ``ids``: the logits from position ``start`` on and the final hidden states
    after it, left on the model's device (a [tokens, vocab] copy per pass is more than a small
    board can spare), and the recorded latents ([tokens, n], on the CPU)."""
    import torch

    device = next(model.parameters()).device
    intervention.active, intervention.record = steered, record
    intervention.recorded.clear()
    try:
        with torch.inference_mode():
            tokens = torch.tensor([ids], device=device)
            out = model(
                input_ids=tokens, attention_mask=torch.ones_like(tokens), use_cache=False, output_hidden_states=True
            )
    finally:
        intervention.active, intervention.record = False, "off"
    latents = intervention.recorded[0][0].float().cpu() if intervention.recorded else None
    return out.logits[0, start:].float(), out.hidden_states[-1][0, start + 1 :].float(), latents


def words(text: str) -> set[str]:
    return set(WORD.findall(text.lower()))


def word_overlap(a: str, b: str) -> float:
    wa, wb = words(a), words(b)
    return 1.0 if not wa and not wb else len(wa & wb) / len(wa | wb)


def first_divergence(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


class _UnsteeredText(NamedTuple):
    """The unsteered text read by the unsteered model (P) and by the steered one (Q)."""

    kl: float  # mean KL(P || Q) over its generated positions
    perplexity: float | None
    shift_at: int  # the position of the probability shifts
    p: Any  # P and Q there ([vocab], on the CPU)
    q: Any
    hidden: Any  # final hidden states over the generated tokens
    trace: Any  # the traced latents as the SAE reads them


def measure(
    model: Any,
    intervention: Intervention,
    tokenizer: Any,
    prompt_ids: list[int],
    unsteered: list[int],
    steered: list[int],
) -> tuple[dict[str, Any], list[list[list[float]]]]:
    """The comparison metrics and the traced latents ([feature][side][token of prompt + generated
    text]): the unsteered side's as the SAE reads them, the steered side's after the intervention.
    One text's passes at a time, so at most two [tokens, vocab] logits are held at once."""
    import torch.nn.functional as F

    u = _read_unsteered(model, intervention, prompt_ids, unsteered, first_divergence(unsteered, steered))
    ppl_s, hidden_s, trace_s = _read_steered(model, intervention, prompt_ids, steered)
    similarity = None
    if unsteered and steered:
        similarity = float(F.cosine_similarity(u.hidden.mean(0), hidden_s.mean(0), dim=0))
    ppl_u = u.perplexity
    metrics = {
        "kl_divergence": _rounded(max(u.kl, 0.0), 6),
        "perplexity_unsteered": _rounded(ppl_u),
        "perplexity_steered": _rounded(ppl_s),
        "perplexity_delta": _rounded(ppl_s - ppl_u) if ppl_u is not None and ppl_s is not None else None,
        "semantic_similarity": _rounded(similarity),
        "word_overlap": None,
        "shift_position": u.shift_at,
        "token_probability_shifts": _shifts(tokenizer, u.p, u.q),
    }
    traces = [
        [[round(float(v), 4) for v in trace[:, feature]] if trace is not None else [] for trace in (u.trace, trace_s)]
        for feature in range(len(intervention.trace_idx))
    ]
    return metrics, traces


def _read_unsteered(
    model: Any, intervention: Intervention, prompt_ids: list[int], unsteered: list[int], divergence: int | None
) -> _UnsteeredText:
    import torch
    import torch.nn.functional as F

    p, n = len(prompt_ids), len(unsteered)
    # Rows of the logits: the positions predicting each generated token, and one past the last.
    logits, hidden, trace = _pass(model, intervention, prompt_ids + unsteered, p - 1, False, "before")
    log_p = F.log_softmax(logits, dim=-1)
    logits, _, _ = _pass(model, intervention, prompt_ids + unsteered, p - 1, True, "off")
    log_q = F.log_softmax(logits, dim=-1)
    del logits
    kl = float((log_p[:n].exp() * (log_p[:n] - log_q[:n])).sum(-1).mean()) if n else 0.0
    ppl = math.exp(float(F.nll_loss(log_p[:n], torch.tensor(unsteered, device=log_p.device)))) if n else None
    at = divergence if divergence is not None else 0  # <= n: log_p has a row for it
    return _UnsteeredText(kl, ppl, at, log_p[at].exp().cpu(), log_q[at].exp().cpu(), hidden, trace)


def _read_steered(
    model: Any, intervention: Intervention, prompt_ids: list[int], steered: list[int]
) -> tuple[float | None, Any, Any]:
    """The steered text's perplexity and final hidden states under the unsteered model, and its
    traced latents after the intervention."""
    import torch
    import torch.nn.functional as F

    p = len(prompt_ids)
    logits, hidden, _ = _pass(model, intervention, prompt_ids + steered, p - 1, False, "off")
    ppl = (
        math.exp(float(F.cross_entropy(logits[: len(steered)], torch.tensor(steered, device=logits.device))))
        if steered
        else None
    )
    del logits
    _, _, trace = _pass(model, intervention, prompt_ids + steered, p - 1, True, "after")
    return ppl, hidden, trace


def _shifts(tokenizer: Any, p: Any, q: Any) -> list[dict[str, Any]]:
    """The tokens whose probability moved most from P to Q."""
    delta = q - p
    moved = delta.abs().topk(min(SHIFTS_SHOWN, delta.numel())).indices.tolist()
    return [
        {
            "token": token_text(tokenizer, i),  # a partial character as byte escapes, never U+FFFD
            "token_id": i,
            "baseline_prob": round(float(p[i]), 6),
            "steered_prob": round(float(q[i]), 6),
            "delta": round(float(delta[i]), 6),
        }
        for i in moved
    ]


def _rounded(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


# -- the job ---------------------------------------------------------------------------------------
def run(ctx: JobContext, params: GenerateParams) -> dict[str, Any]:
    """Generate both sides with the intervention hooked in, measure them, and publish the result as
    ``steering.completed`` (the tokens as ``steering.token`` events on the way, when streamed)."""
    from appliance.contracts.tokenization import load_tokenizer
    from appliance.pipeline.models.architecture import InputView
    from appliance.pipeline.models.cache import exclusive, model_and_sae
    from appliance.pipeline.models.interrupt import Interruptible

    model, sae = model_and_sae(ctx, params.training_id, params.model_path, params.precision, params.parameters)
    tokenizer = load_tokenizer(params.tokenizer, ctx.layout.root)
    first = next(model.parameters())
    reads_input = params.hook_point.input and params.same_module
    writes_input = reads_input and sae.cfg.architecture != "transcoder"
    intervention = Intervention(sae, params.features, reads_input, writes_input, first.device, first.dtype)
    module = dict(model.named_modules())[params.target_module]
    prompt_ids = tokenizer.encode(params.prompt).ids[-(_context_length(model) - 1) :]
    ctx.progress(0.0, "Waiting for the model", force=True)
    with exclusive(model):  # the hook would steer anyone else's forward passes too
        handle = intervention.attach(module, InputView(model, params.hook_point))
        try:
            # A cancel is noticed inside the prompt's forward pass and the measuring passes too.
            with Interruptible(model, ctx.check):
                generated, metrics, traces = _generate_and_measure(
                    ctx, params, model, intervention, tokenizer, prompt_ids
                )
        finally:
            handle.remove()
    result = _result(params, intervention, generated, metrics, traces)
    ctx.event("steering.completed", SteeringCompleted(job_id=ctx.job_id, result=result))
    return result


def _generate_and_measure(
    ctx: JobContext,
    params: GenerateParams,
    model: Any,
    intervention: Intervention,
    tokenizer: Any,
    prompt_ids: list[int],
) -> tuple[dict[str, Any], dict[str, Any], list[list[list[float]]]]:
    """Both sides generated (each token an ephemeral ``steering.token`` event when streamed), then
    measured; with the intervention already hooked in."""
    eos = getattr(model.config, "eos_token_id", None)
    eos = eos[0] if isinstance(eos, list) else eos

    def on_token(side: Literal["unsteered", "steered"], text: str, index: int) -> None:
        ctx.event("steering.token", SteeringToken(job_id=ctx.job_id, side=side, text=text, index=index), durable=False)

    ctx.progress(0.0, "Generating", force=True)
    generated = generate(
        model,
        intervention,
        prompt_ids,
        temperature=params.temperature,
        top_p=params.top_p,
        max_tokens=params.max_tokens,
        seed=params.seed,
        tokenizer=tokenizer,
        eos=eos,
        on_token=on_token if params.stream else None,
        check=ctx.check,
    )
    ctx.progress(0.9, "Measuring", force=True)
    sides = generated["sides"]
    unsteered, steered = sides["unsteered"]["token_ids"], sides["steered"]["token_ids"]
    metrics, traces = measure(model, intervention, tokenizer, prompt_ids, unsteered, steered)
    return generated, metrics, traces


def _result(
    params: GenerateParams,
    intervention: Intervention,
    generated: dict[str, Any],
    metrics: dict[str, Any],
    traces: list[list[list[float]]],
) -> dict[str, Any]:
    """What POST /api/steering/generate answers (and ``steering.completed`` carries)."""
    unsteered, steered = generated["sides"]["unsteered"], generated["sides"]["steered"]
    metrics["word_overlap"] = round(word_overlap(unsteered["text"], steered["text"]), 4)
    return {
        "training_id": params.training_id,
        "prompt": params.prompt,
        "seed": params.seed,
        "intervention_layer": params.intervention_layer,
        "hook_point": params.hook_point.name,
        "features": [_feature_shown(f) for f in params.features],
        "steering_vector_norm": round(intervention.vector_norm, 4),
        "unsteered": unsteered,
        "steered": steered,
        "first_divergence": first_divergence(unsteered["token_ids"], steered["token_ids"]),
        "metrics": metrics,
        "feature_activations": [
            {"index": f.index, "unsteered": trace[0], "steered": trace[1]} for f, trace in zip(params.features, traces)
        ],
        "timing": generated["timing"],
    }


def _feature_shown(f: SteeredFeature) -> dict[str, Any]:
    """typical_max: the unit of the coefficients; value: what the feature adds along its unit
    direction (add) or is set to (clamp, ablate), in activation units."""
    return {
        "index": f.index,
        "coefficient": f.coefficient,
        "mode": f.mode,
        "label": f.label,
        "typical_max": round(f.strength, 4),
        "value": round(f.coefficient * f.strength, 4) if f.mode != "ablate" else 0.0,
    }
