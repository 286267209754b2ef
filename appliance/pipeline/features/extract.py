"""Feature extraction: run evaluation samples through the model and the SAE, keep what every latent
does, and describe each one.

One pass over the samples, a batch at a time; nothing of size [tokens, d_sae] is kept dense beyond
a batch. Per latent it accumulates firing counts, sums, squares, maxima, a histogram over
log10(activation), and its top-k samples (the latent's max in each sample, merged batch by batch
with a running top-k). Every token's activations are written sparse (CSR, fp16), which is what the
API reads for contexts, correlations and heatmaps of stored text (``appliance.contracts.feature_arrays``).

Then, per latent: the logit lens (its decoder row through the unembedding), its top tokens (the
tokens at its max-activating positions), an automatic label from that evidence, and an
interpretability score:

    score = F1 of "the token is one of the feature's top tokens" as a predictor of "the feature
            fires above 10% of its max", on held-out samples (every fifth sample, whose tokens
            never chose the top tokens).

Special tokens' positions (``ExtractParams.exclude_special_tokens``, on by default) count in no
statistic and are never an example: their latents are zeroed before anything reads them, so the
stored sparse activations hold nothing there either (such a position may still be shown inside an
example's context, with no activation).

1 means the feature is exactly "these tokens"; a feature that depends on context more than on the
token itself scores low even when it is meaningful, so the score is a lower bound on
interpretability.

A score needs evidence: a latent is scored only when it fires in at least MIN_ACTIVE_SAMPLES
evaluation samples and has at least MIN_HELD_OUT_POSITIVES held-out positions above FIRE_SHARE of
its max (its "held-out positives"); below either it is "too rare to score" (score NULL), however
well its few firings happen to match. A scored latent's score carries a 95% percentile bootstrap
interval over the held-out SAMPLES (BOOTSTRAP resamples with replacement, seeded, so the same
extraction gives the same interval), and the browser ranks by its lower bound: two lucky samples
give a wide interval and a low bound, never the top of the list. Features scoring at least 0.5
count as interpretable in the summary, of the scored ones. Finally a UMAP of the decoder directions
gives the feature map.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import numpy as np

from appliance.contracts.events import FeaturesUpdated
from appliance.contracts.feature_arrays import HIST_EDGES, FeatureArrays
from appliance.contracts.params.features import ExtractParams
from appliance.contracts.params.models import HookPoint
from appliance.contracts.token_text import context_text, quoted, token_text
from appliance.data import features as sql
from appliance.data.events import insert as insert_event
from appliance.data.layout import DataLayout
from appliance.jobs.context import JobContext
from appliance.memory.admission import Estimate, estimate_model, estimate_sae_training
from appliance.memory.estimates import estimate_feature_map, largest, vocab_size

HELD_OUT_EVERY = 5  # every fifth sample scores the labels, never chooses them
TOP_TOKENS = 5
LOGIT_TOKENS = 10
FIRE_SHARE = 0.1  # "fires" for the score: above this share of the feature's max
# The support a score needs (module docstring; README): below either floor a latent is "too rare to score".
MIN_ACTIVE_SAMPLES = 10
MIN_HELD_OUT_POSITIVES = 5
BOOTSTRAP = 200  # resamples of the held-out samples behind a score's interval
BOOTSTRAP_SEED = 0
INTERVAL = f"95% percentile bootstrap over held-out samples, {BOOTSTRAP} resamples"
# Latents whose bootstrap runs at once: three [BOOTSTRAP, chunk] float64 sums (~40 MB) at a time.
BOOTSTRAP_CHUNK = 8192
EXAMPLE_WINDOW = 4  # tokens each side of the max in the browser's example context
HIST_BINS = len(HIST_EDGES) - 1
TOKENIZE_CHUNK = 1024  # texts tokenized at once, before their batches are timed and run
# Samples whose maxima wait before a merge into the running top-k: a merge costs about the same for
# 8 or 64 waiting, and 64 x d_sae waiting values stay well below one batch's dense z.
MERGE_SAMPLES = 64


def eval_texts(layout: DataLayout, dataset_id: str, count: int) -> list[str]:
    """The first ``count`` texts of a dataset (a missing text is an empty one): the evaluation samples."""
    from datasets import load_from_disk

    texts = load_from_disk(str(layout.dataset_arrow(dataset_id)))
    return ["" if t is None else t for t in texts[: min(count, len(texts))]["text"]]


def token_batches(tokenizer: Any, texts: list[str], batch_size: int) -> Iterator[tuple[int, list[list[int]]]]:
    """(index of the batch's first sample, token ids of each sample) per batch of ``texts``, tokenized
    ``TOKENIZE_CHUNK`` texts at a time (the tokenizer is fastest on many texts at once)."""
    for chunk in range(0, len(texts), TOKENIZE_CHUNK):
        encoded = [e.ids for e in tokenizer.encode_batch(texts[chunk : chunk + TOKENIZE_CHUNK])]
        for start in range(0, len(encoded), batch_size):
            yield chunk + start, encoded[start : start + batch_size]


def encode_batch(capture: Any, sae: Any, name: str, batch: list[list[int]]) -> tuple[Any, Any, Any]:
    """(z [real tokens, d_sae] on the model's device, padded ids, mask) for non-empty samples: the
    model stopped after the hooked block, then the SAE's encode. This is all of the pass that is not
    bookkeeping, and what ``mistudio bench features`` times alone as its floor."""
    import torch

    captured, ids, keep = capture(batch)
    with torch.no_grad():
        return sae.encode(captured[name].float()).float(), ids, keep


class FeaturePass:
    """The pass over the samples, a batch at a time (``add``), and its arrays at the end (``finish``).

    Everything after the encode reads only the latents that fire: (row, latent, value) triples, about
    k per token, taken once from z. The dense [tokens, d_sae] z is only scanned for them; statistics,
    the histogram, each sample's max per latent and the sparse copy are scatters over the triples
    (as reductions over dense z they cost more than the encode itself). Accumulators stay on the
    model's device; only the triples' sparse copy comes to the CPU.
    """

    def __init__(self, model: Any, sae: Any, hook_point: HookPoint, top_k: int, excluded: list[int] | None = None):
        import torch

        from appliance.pipeline.activations.extract import Capture

        self.sae, self.name, self.k = sae, hook_point.name, top_k
        self.excluded = list(excluded or [])
        self.drop = torch.tensor(self.excluded, dtype=torch.long)
        self.excluded_positions = 0  # special-token positions seen and left out
        self.d_sae = d = sae.cfg.d_sae
        self.device = next(model.parameters()).device
        self.capture: Any = Capture(model, [hook_point])
        on = {"device": self.device}
        self.count = torch.zeros(d, dtype=torch.float64, **on)
        self.sum = torch.zeros(d, dtype=torch.float64, **on)
        self.sumsq = torch.zeros(d, dtype=torch.float64, **on)
        self.max = torch.zeros(d, **on)
        self.samples_active = torch.zeros(d, dtype=torch.long, **on)
        self.hist = torch.zeros(d * HIST_BINS, dtype=torch.long, **on)
        self.top_values = torch.zeros(top_k, d, **on)
        self.top_samples = torch.full((top_k, d), -1, dtype=torch.long, **on)
        self.top_positions = torch.zeros(top_k, d, dtype=torch.long, **on)
        # Per-sample maxima wait here and join the top-k MERGE_SAMPLES samples at a time: a merge is a
        # top-k over [k + waiting, d_sae], whatever the number waiting.
        self.waiting: list[tuple[Any, Any, Any]] = []
        self.waiting_samples = 0
        self.lengths: list[int] = []
        self.tokens: list[Any] = []
        self.counts: list[Any] = []
        self.indices: list[Any] = []
        self.values: list[Any] = []

    def add(self, start: int, batch: list[list[int]]) -> None:
        """Samples ``start``, ``start + 1``, ... (token ids; an empty one is counted, not run)."""
        import torch

        self.lengths.extend(len(ids) for ids in batch)
        live = [(start + i, len(ids)) for i, ids in enumerate(batch) if ids]
        if not live:
            return
        z, ids, keep = encode_batch(self.capture, self.sae, self.name, [ids for ids in batch if ids])
        d, device = self.d_sae, z.device
        if self.excluded:
            special = torch.isin(ids[keep], self.drop)  # per real token, in z's row order
            z[special.to(device)] = 0
            self.excluded_positions += int(special.sum())
        rows, cols = (z > 0).nonzero(as_tuple=True)  # row-major: the CSR order
        values = z[rows, cols]
        lengths = torch.tensor([n for _, n in live], device=device)
        sample_of_row = torch.repeat_interleave(torch.arange(len(live), device=device), lengths)
        position_of_row = torch.arange(z.shape[0], device=device) - (lengths.cumsum(0) - lengths)[sample_of_row]

        as64 = values.double()
        self.count += torch.bincount(cols, minlength=d)
        self.sum.index_add_(0, cols, as64)
        self.sumsq.index_add_(0, cols, as64 * as64)
        self.max.scatter_reduce_(0, cols, values, "amax")
        bins = ((torch.log10(values) - HIST_EDGES[0]) * 4).floor().clamp(0, HIST_BINS - 1).long()
        self.hist += torch.bincount(cols * HIST_BINS + bins, minlength=d * HIST_BINS)

        # Each sample's max per latent (0 where it does not fire) and its first position.
        key = sample_of_row[rows] * d + cols
        best = torch.zeros(len(live) * d, device=device).scatter_reduce_(0, key, values, "amax")
        at_max = values == best[key]
        where = torch.zeros(len(live) * d, dtype=torch.long, device=device).scatter_reduce_(
            0, key[at_max], position_of_row[rows[at_max]], "amin", include_self=False
        )
        best = best.view(len(live), d)
        self.samples_active += (best > 0).sum(dim=0)
        samples = torch.tensor([s for s, _ in live], device=device)
        self.waiting.append((best, samples.unsqueeze(1).expand(-1, d), where.view(len(live), d)))
        self.waiting_samples += len(live)
        if self.waiting_samples >= MERGE_SAMPLES:
            self._merge()

        self.tokens.append(ids[keep].to(torch.int32))
        self.counts.append(torch.bincount(rows, minlength=z.shape[0]).cpu())
        self.indices.append(cols.to(torch.int32).cpu())
        self.values.append(values.half().cpu())

    def _merge(self) -> None:
        import torch

        if not self.waiting:
            return
        values, samples, positions = (
            torch.cat([top, *parts])
            for top, parts in zip((self.top_values, self.top_samples, self.top_positions), zip(*self.waiting))
        )
        # Rows are in sample order (the running top-k holds earlier samples than those waiting), so a
        # stable sort keeps the earliest of samples with equal maxima: the same k whatever the merges.
        order = values.sort(dim=0, descending=True, stable=True).indices[: self.k]
        self.top_values = values.gather(0, order)
        self.top_samples = samples.gather(0, order)
        self.top_positions = positions.gather(0, order)
        self.waiting, self.waiting_samples = [], 0

    def finish(self) -> dict[str, np.ndarray]:
        """The arrays of ``appliance.contracts.feature_arrays`` (statistics, top-k, sparse CSR); the accumulators
        move to the CPU too."""
        import torch

        self._merge()
        for name in (
            "count",
            "sum",
            "sumsq",
            "max",
            "samples_active",
            "hist",
            "top_values",
            "top_samples",
            "top_positions",
        ):
            setattr(self, name, getattr(self, name).cpu())
        lengths = np.asarray(self.lengths, dtype=np.int64)
        tokens = torch.cat(self.tokens).numpy() if self.tokens else np.zeros(0, np.int32)
        counts = torch.cat(self.counts).numpy() if self.counts else np.zeros(0, np.int64)
        n_tokens = max(1, len(tokens) - self.excluded_positions)
        mean = (self.sum / n_tokens).numpy()
        return {
            "tokens": tokens,
            "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            "indptr": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            "indices": torch.cat(self.indices).numpy() if self.indices else np.zeros(0, np.int32),
            "values": torch.cat(self.values).numpy() if self.values else np.zeros(0, np.float16),
            "top_values": self.top_values.numpy(),
            "top_samples": self.top_samples.numpy(),
            "top_positions": self.top_positions.numpy(),
            "mean": mean,
            "std": np.sqrt(np.maximum((self.sumsq / n_tokens).numpy() - mean**2, 0)),
        }

    def close(self) -> None:
        """Unhook the model and let it go: what the pass leaves is read without it (the map must not hold it)."""
        self.capture.close()
        self.capture = None


class _LogitLens(NamedTuple):
    """Per latent: the tokens its decoder row pushes up and down most (ids and logits), and the
    log-sum-exp of all its logits."""

    up: Any
    up_ids: Any
    down: Any
    down_ids: Any
    lse: Any

    def of(self, latent: int, text: Callable[[int], str]) -> dict[str, Any]:
        return {
            "positive": _lens_side(text, self.up_ids[latent].tolist(), self.up[latent].tolist()),
            "negative": _lens_side(text, self.down_ids[latent].tolist(), self.down[latent].tolist()),
            "logsumexp": round(float(self.lse[latent]), 4),
        }


def _logit_lens(sae: Any, model: Any) -> _LogitLens:
    """Each decoder row through the unembedding: the tokens it pushes up and down most, and the
    log-sum-exp of all its logits (softmax probabilities of the top tokens are exp(value - lse))."""
    import torch

    unembed = model.get_output_embeddings().weight.detach().float().cpu()  # [vocab, d_model]
    decoder = sae.W_dec.detach().float().cpu()
    ups, up_ids, downs, down_ids, norms = [], [], [], [], []
    with torch.no_grad():
        for start in range(0, decoder.shape[0], 1024):
            logits = decoder[start : start + 1024] @ unembed.T
            norms.append(torch.logsumexp(logits, dim=1))
            top = logits.topk(LOGIT_TOKENS, dim=1)
            bottom = (-logits).topk(LOGIT_TOKENS, dim=1)
            ups.append(top.values)
            up_ids.append(top.indices)
            downs.append(-bottom.values)
            down_ids.append(bottom.indices)
    return _LogitLens(torch.cat(ups), torch.cat(up_ids), torch.cat(downs), torch.cat(down_ids), torch.cat(norms))


class _Scores(NamedTuple):
    """Per latent: the score (NaN when unscored), its interval, its held-out positives, and whether it
    has the support to be scored."""

    point: np.ndarray
    low: np.ndarray
    high: np.ndarray
    positives: np.ndarray
    scored: np.ndarray


def _scores(
    tokens: np.ndarray,
    sample_of: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    maxima: np.ndarray,
    top_tokens: list[list[int]],
    vocab: int,
    active_samples: np.ndarray,
) -> _Scores:
    """The interpretability score of every latent, its support and its interval (module docstring),
    vectorised over latents: per held-out sample and latent, sparse counts of positives, of true
    positives and of predictions, which the bootstrap reweighs sample by sample."""
    from scipy import sparse

    d_sae = len(top_tokens)
    held = (sample_of % HELD_OUT_EVERY) == HELD_OUT_EVERY - 1
    held_rows = np.nonzero(held)[0]
    # Held-out samples with tokens, numbered 0..n_held-1: the units the bootstrap resamples.
    held_samples, held_of = np.unique(sample_of[held_rows], return_inverse=True)
    n_held = len(held_samples)
    # Entries (row, latent, value) on held-out rows above FIRE_SHARE of the latent's max.
    row_of = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    keep = held[row_of] & (values.astype(np.float32) > FIRE_SHARE * maxima[indices])
    pos_latent = indices[keep].astype(np.int64)
    pos_sample = np.searchsorted(held_samples, sample_of[row_of[keep]])
    pairs = pos_latent * vocab + tokens[row_of[keep]]
    wanted = np.array([latent * vocab + t for latent, ts in enumerate(top_tokens) for t in ts], dtype=np.int64)
    hit = np.isin(pairs, wanted)

    def per_sample(rows: np.ndarray, cols: np.ndarray) -> Any:  # [n_held, d_sae] counts, duplicates summed
        return sparse.csc_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_held, d_sae))

    positives, true_positives = per_sample(pos_sample, pos_latent), per_sample(pos_sample[hit], pos_latent[hit])
    # Predictions: each held-out sample's token counts times each latent's top-token indicator; per sample
    # only a chunk of latents at a time (a common top token is in every sample).
    counts = sparse.csr_matrix(
        (np.ones(len(held_rows)), (held_of, tokens[held_rows])), shape=(n_held, vocab), dtype=np.float64
    )
    top_of = np.array([latent for latent, ts in enumerate(top_tokens) for _ in ts], dtype=np.int64)
    indicator = sparse.csc_matrix((np.ones(len(top_of)), (wanted - top_of * vocab, top_of)), shape=(vocab, d_sae))
    predicted = indicator.T @ np.asarray(counts.sum(axis=0)).ravel()

    n_positives = np.asarray(positives.sum(axis=0)).ravel()
    point = _f1(np.asarray(true_positives.sum(axis=0)).ravel(), n_positives, predicted)
    scored = (active_samples >= MIN_ACTIVE_SAMPLES) & (n_positives >= MIN_HELD_OUT_POSITIVES)
    low, high = np.full(d_sae, np.nan), np.full(d_sae, np.nan)
    chosen = np.nonzero(scored)[0]
    if len(chosen):  # a scored latent has held-out positives, so there are held-out samples to resample
        # [n_held, BOOTSTRAP]: how many times each resample draws each held-out sample.
        weights = np.random.default_rng(BOOTSTRAP_SEED).multinomial(n_held, np.full(n_held, 1 / n_held), BOOTSTRAP).T
        weights = weights.astype(np.float64)
        for start in range(0, len(chosen), BOOTSTRAP_CHUNK):
            cols = chosen[start : start + BOOTSTRAP_CHUNK]
            counted = (true_positives[:, cols], positives[:, cols], counts @ indicator[:, cols])
            resampled = _f1(*(m.T @ weights for m in counted))
            low[cols], high[cols] = np.percentile(resampled, [2.5, 97.5], axis=1)
    point[~scored] = np.nan
    # A percentile interval of a skewed ratio can miss its own estimate by a hair; it is widened to hold it.
    low, high = np.fmin(low, point), np.fmax(high, point)
    return _Scores(point, low, high, n_positives.astype(np.int64), scored)


def _f1(true_positives: Any, positives: Any, predicted: Any) -> np.ndarray:
    """2 TP / (positives + predictions), elementwise; 0 with neither."""
    true_positives, total = np.asarray(true_positives, dtype=np.float64), np.asarray(positives + predicted)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = 2 * true_positives / total
    f1[~np.isfinite(f1)] = 0.0
    return np.asarray(f1, dtype=np.float64)


def _lens_side(text: Callable[[int], str], ids: list[int], values: list[float]) -> list[list[Any]]:
    """[token text, logit] pairs of one side of the logit lens."""
    return [[text(t), round(float(v), 4)] for t, v in zip(ids, values)]


def _label(top: list[tuple[str, int]], promoted: list[str]) -> str:
    """A short label from the evidence: the tokens it fires on, then what it promotes."""
    shown = [quoted(text.strip() or text) for text, _ in top[:3]]
    label = "fires on " + ", ".join(shown) if shown else "never fires"
    if promoted and shown:
        label += " → " + ", ".join(quoted(p.strip() or p) for p in promoted[:3])
    return label


@dataclass
class _Passed:
    """What the pass over the evaluation text leaves: its accumulators and arrays (also saved in the
    partial folder), its own time, the logit lens, and the tokenizer that turns ids into text."""

    acc: FeaturePass
    arrays: dict[str, np.ndarray]
    seconds: float
    samples: int
    lens: _LogitLens
    tokenizer: Any

    def text(self, token_id: int) -> str:
        return token_text(self.tokenizer, token_id)  # a partial character as byte escapes, never U+FFFD


@dataclass
class _Measures:
    """Per latent, what its row and description show."""

    frequency: np.ndarray
    maxima: np.ndarray
    mean_active: np.ndarray
    scores: _Scores
    hist: list[list[int]]
    top_counts: list[list[tuple[int, int]]]  # (token id, count) from every top sample: what the label shows


def run(ctx: JobContext, params: ExtractParams) -> dict[str, Any]:
    """The pass over the evaluation text, each latent described and scored, the feature map; the
    features, the extraction's new state and its event commit together."""
    from appliance.pipeline.sae.io.saelens import load_folder

    layout = ctx.layout
    sae, _ = load_folder(layout.export(params.training_id))
    partial = layout.features_partial(params.training_id)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    began = time.monotonic()
    # One admission for the pass and the map after it: the plan is the larger of the two (_estimate).
    with ctx.memory.admit(ctx, _estimate(params, sae.cfg)):
        passed = _pass_over_text(ctx, params, sae, partial)
        measures = _measure(passed, sae.cfg.d_sae)
        rows, details = _feature_rows(params.training_id, passed, measures, FeatureArrays(partial))
        ctx.check()  # the map takes a while on a wide SAE: a cancel during the descriptions ends the job before it
        ctx.progress(0.9, "Mapping the features (UMAP of decoder directions)", force=True)
        coords = _umap(sae.W_dec.detach().float().cpu().numpy())
    summary = _summary(passed, measures, began)
    final = layout.features(params.training_id)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    _publish(ctx, params.training_id, rows, details, coords, summary)
    return {"training_id": params.training_id, **summary}


# [1,024 latents, vocabulary] fp32 tensors the logit lens holds at once: the logits, their negation, a log-sum-exp's
# temporary.
LENS_LOGITS = 3


def _estimate(params: ExtractParams, cfg: Any) -> Estimate:
    """The larger of the job's two phases: the pass (the model, the SAE, its encode over one batch of tokens,
    then the logit lens over the unembedding) and the map that follows once the model is gone (the SAE and UMAP)."""
    sae = estimate_sae_training(cfg.d_in, cfg.d_sae, params.batch_size * params.context_length, optimizer="sgd")
    weights = {"sae weights": sae.parts["sae weights"]}
    lens = LENS_LOGITS * 1024 * vocab_size(params.model_path) * 4
    model = estimate_model(params.parameters, params.precision, checkpoint=params.model_path)
    the_pass = Estimate({**model.parts, **weights, "encode batch": sae.parts["batch"], "logit lens": lens})
    return largest(the_pass, Estimate({**weights, **estimate_feature_map(cfg.d_sae).parts}))


def _pass_over_text(ctx: JobContext, params: ExtractParams, sae: Any, partial: Path) -> _Passed:
    """Load the model, run the pass, save its arrays in ``partial`` and read the logit lens: all that
    needs the model in memory."""
    from appliance.contracts.special_tokens import excluded_ids
    from appliance.contracts.tokenization import TokenizeSettings, load_tokenizer
    from appliance.pipeline.models.interrupt import Interruptible
    from appliance.pipeline.models.loading import load

    ctx.progress(0.01, "Loading the model and the SAE", force=True)
    model = load(params.model_path, params.precision)
    sae = sae.to(next(model.parameters()).device)
    tokenizer = load_tokenizer(
        params.tokenizer,
        ctx.layout.root,
        TokenizeSettings(tokenizer=params.tokenizer, max_length=params.context_length, padding="do_not_pad"),
    )
    texts = eval_texts(ctx.layout, params.dataset_id, params.eval_samples)
    excluded = excluded_ids(params.exclude_special_tokens, params.special_token_ids, params.tokenizer, ctx.layout.root)
    with Interruptible(model, ctx.check):  # a cancel is noticed inside a batch's forward pass
        acc, arrays, seconds = _timed_pass(
            ctx, params, FeaturePass(model, sae, params.hook_point, params.top_k_examples, excluded), tokenizer, texts
        )
    ctx.progress(0.82, "Describing the features", force=True)
    for name, array in arrays.items():
        np.save(partial / f"{name}.npy", array)
    return _Passed(acc, arrays, seconds, len(texts), _logit_lens(sae, model), tokenizer)


def _timed_pass(
    ctx: JobContext, params: ExtractParams, acc: FeaturePass, tokenizer: Any, texts: list[str]
) -> tuple[FeaturePass, dict[str, np.ndarray], float]:
    """The pass, a batch at a time, and its arrays; timed over its batches and ``finish`` only (the
    model, the SAE and the bookkeeping), not the tokenizer's or the job's time."""
    seconds = 0.0
    try:
        for start, batch in token_batches(tokenizer, texts, params.batch_size):
            ctx.check()
            batch_began = time.perf_counter()
            acc.add(start, batch)
            seconds += time.perf_counter() - batch_began
            done = start + len(batch)
            ctx.progress(
                0.02 + 0.78 * done / len(texts),
                f"{done:,} of {len(texts):,} samples",
                training_id=params.training_id,
                samples=done,
            )
        finish_began = time.perf_counter()
        arrays = acc.finish()
        seconds += time.perf_counter() - finish_began
    finally:
        acc.close()
    return acc, arrays, seconds


def _measure(passed: _Passed, d_sae: int) -> _Measures:
    """Each latent's statistics, top tokens and interpretability score, from the pass's arrays."""
    acc, arrays = passed.acc, passed.arrays
    token_array, offsets = arrays["tokens"], arrays["offsets"]
    lengths_all = np.diff(offsets)
    n_tokens = max(1, len(token_array) - acc.excluded_positions)
    vocab = max(
        int(token_array.max()) + 1 if len(token_array) else 1,
        passed.tokenizer.get_vocab_size(),
        int(passed.lens.up_ids.max()) + 1,
    )
    top_tokens, top_counts = _top_tokens(acc, token_array, offsets, d_sae)
    sample_of = np.repeat(np.arange(len(lengths_all)), lengths_all)
    maxima = acc.max.numpy()
    scores = _scores(
        token_array,
        sample_of,
        arrays["indptr"],
        arrays["indices"],
        arrays["values"],
        maxima,
        top_tokens,
        vocab,
        acc.samples_active.numpy(),
    )
    return _Measures(
        frequency=(acc.count / n_tokens).numpy(),
        maxima=maxima,
        mean_active=(acc.sum / acc.count.clamp_min(1)).numpy(),
        scores=scores,
        hist=acc.hist.view(d_sae, -1).tolist(),
        top_counts=top_counts,
    )


def _top_tokens(
    acc: FeaturePass, token_array: np.ndarray, offsets: np.ndarray, d_sae: int
) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
    """Each latent's top tokens, those at the max positions of its top samples: chosen without the
    held-out samples (what the score tests), and (token, count) from every top sample (what the
    label shows)."""
    top_values, top_samples = acc.top_values.numpy(), acc.top_samples.numpy()
    top_rows = offsets[np.clip(top_samples, 0, None)] + acc.top_positions.numpy()
    valid = (top_values > 0) & (top_samples % HELD_OUT_EVERY != HELD_OUT_EVERY - 1)
    top_ids = token_array[np.clip(top_rows, 0, max(0, len(token_array) - 1))] if len(token_array) else top_rows
    fired = top_values > 0
    top_tokens: list[list[int]] = []
    top_counts: list[list[tuple[int, int]]] = []
    for latent in range(d_sae):
        top_tokens.append([t for t, _ in Counter(top_ids[valid[:, latent], latent].tolist()).most_common(TOP_TOKENS)])
        top_counts.append(Counter(top_ids[fired[:, latent], latent].tolist()).most_common(TOP_TOKENS))
    return top_tokens, top_counts


def _feature_rows(
    training_id: str, passed: _Passed, measures: _Measures, stored: FeatureArrays
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Each latent's ``features`` row (figures, label, score with its interval and support, search text)
    and ``feature_details`` row (histogram, top tokens, logit lens, example context)."""
    acc, text, m = passed.acc, passed.text, measures
    rows, details = [], []
    for latent in range(len(m.frequency)):
        alive = m.frequency[latent] > 0
        shown = [(text(t), c) for t, c in m.top_counts[latent]]
        promoted = [text(t) for t in passed.lens.up_ids[latent].tolist()]
        label = _label(shown, promoted) if alive else "dead: never fires on the evaluation text"
        search = " ".join([label, *(s for s, _ in shown)]).lower()
        rows.append(
            (
                training_id,
                latent,
                float(m.frequency[latent]),
                float(m.maxima[latent]),
                float(m.mean_active[latent]),
                int(acc.samples_active[latent]),
                label,
                *(_rounded(a[latent]) for a in (m.scores.point, m.scores.low, m.scores.high)),
                int(m.scores.positives[latent]),
                search,
            )
        )
        example = _example(acc, stored, latent, passed.tokenizer)
        details.append(
            (
                training_id,
                latent,
                _json(m.hist[latent]),
                _json([[s, c] for s, c in shown]),
                _json(passed.lens.of(latent, text)),
                _json(example) if example else None,
            )
        )
    return rows, details


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _rounded(value: float) -> float | None:
    """A score figure as stored: 4 decimals, NULL for a latent not scored."""
    return None if np.isnan(value) else round(float(value), 4)


def _example(acc: FeaturePass, stored: FeatureArrays, latent: int, tokenizer: Any) -> dict[str, Any] | None:
    """The context around the latent's strongest activation, for the browser; None when it never fires."""
    if not acc.top_values[0, latent] > 0:
        return None
    found = stored.context(int(acc.top_samples[0, latent]), int(acc.top_positions[0, latent]), latent, EXAMPLE_WINDOW)
    shown = context_text(tokenizer, found["token_ids"])
    return {
        "tokens": shown.texts,
        "joined": shown.joined,
        "activations": found["activations"],
        "max_index": found["max_index"],
    }


def _summary(passed: _Passed, measures: _Measures, began: float) -> dict[str, Any]:
    frequency, scored = measures.frequency, measures.scores.scored
    alive = frequency > 0
    scores = measures.scores.point[scored]
    tokens = len(passed.arrays["tokens"])
    return {
        "features": len(frequency),
        "alive": int(alive.sum()),
        "dead": int((~alive).sum()),
        # Of the scored features only: a latent too rare to score counts in neither.
        "scored": int(scored.sum()),
        "too_rare": int((alive & ~scored).sum()),
        "min_active_samples": MIN_ACTIVE_SAMPLES,
        "min_held_out_positives": MIN_HELD_OUT_POSITIVES,
        "score_interval": INTERVAL,
        "interpretable_share": round(float((scores >= 0.5).mean()), 4) if len(scores) else 0.0,
        "mean_score": round(float(scores.mean()), 4) if len(scores) else 0.0,
        "activation_rate": round(float(frequency[alive].mean()), 6) if alive.any() else 0.0,
        "samples": passed.samples,
        "tokens": int(tokens),
        # Of those tokens, the special ones that count nowhere (their ids).
        "excluded_token_ids": passed.acc.excluded,
        "excluded_positions": passed.acc.excluded_positions,
        # The pass over the text (model, SAE, statistics, top-k); then labels, scores and the map.
        "tokens_per_second": round(tokens / max(passed.seconds, 1e-9), 1),
        "pass_seconds": round(passed.seconds, 2),
        "seconds": round(time.monotonic() - began, 1),
    }


def _publish(
    ctx: JobContext,
    training_id: str,
    rows: list[tuple[Any, ...]],
    details: list[tuple[Any, ...]],
    coords: list[tuple[float, float]] | None,
    summary: dict[str, Any],
) -> None:
    """The rows, the extraction's new state and the event that tells the UI commit together: a
    reader never sees "ready" without its features, nor misses the event of a change that committed."""
    now = time.time()
    placed = [(*row, *(coords[i] if coords is not None else (None, None))) for i, row in enumerate(rows)]
    with ctx.db.transaction() as conn:
        for query in sql.delete_features(training_id):
            conn.execute(*query)
        conn.executemany(*sql.insert_features(placed))
        conn.executemany(*sql.insert_details(details))
        state = "ready" if coords is not None else "unavailable"
        conn.execute(*sql.finish_extraction(training_id, _json(summary), state, now))
        event = FeaturesUpdated(training_id=training_id, status="ready")
        conn.execute(*insert_event(ctx.topic, "features.updated", event, ctx.job_id, True, now))


def _umap(decoder: np.ndarray) -> list[tuple[float, float]] | None:
    """2-D UMAP of the decoder directions (cosine), scaled to [0, 1]; None when too few features."""
    if decoder.shape[0] < 16:
        return None
    import umap

    reducer = umap.UMAP(
        n_components=2, metric="cosine", n_neighbors=min(15, decoder.shape[0] - 1), random_state=0, n_jobs=1
    )
    points = reducer.fit_transform(decoder)
    points = (points - points.min(axis=0)) / np.maximum(points.max(axis=0) - points.min(axis=0), 1e-9)
    return [(round(float(x), 5), round(float(y), 5)) for x, y in points]
