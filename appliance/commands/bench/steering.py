"""``mistudio bench steering``: the cost of steering per generated token, and the time to the first
streamed token through the appliance.

Per token: the same greedy generation (KV cache, batch 1) with no hook at all (the baseline), then
steered by 'add' (3 features: one vector add per token), by 'clamp' on a ReLU SAE (3 latents read
per token) and by 'clamp' on a TopK SAE (whose latents need the full encode). SAEs are random and
8x wide (the cost does not depend on what an SAE learnt); the models are the demo model and a
GPT-2-small-sized one (12 layers, 768 wide, 50,257 tokens) with random weights. Target: <= 10%
overhead.

Through the appliance: a demo SAE is trained and its features extracted, then ``stream: true``
requests are timed from the POST to the first ``steering.token`` on the event stream, cold (the
model loads) and warm (cached).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx

from appliance.commands.bench.harness import (
    Appliance,
    Figure,
    finish,
    opening,
    progress,
    start_job,
    train_sae,
    wait_demo,
)

if TYPE_CHECKING:
    from appliance.contracts.hyperparameters import EncoderType
    from appliance.contracts.params.steering import Mode
    from appliance.pipeline.steering.generate import Intervention

PROMPT = "Return the number of items in the container, counting"
TOKENS = 64
LAYER_SHARE = 0.5  # steer at the middle layer
OVERHEAD_TARGET = 10.0


def _gpt2_small() -> Any:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)).eval()


def _run_once(model: Any, prompt: list[int], intervention: Intervention, tokens: int = TOKENS) -> float:
    """ms per generated token of one greedy generation (so every run does the same work)."""
    from appliance.pipeline.steering.generate import generate

    out = generate(
        model,
        intervention,
        prompt,
        sides=("steered",) if intervention.effective else ("unsteered",),
        temperature=0.0,
        top_p=1.0,
        max_tokens=tokens,
        seed=0,
        tokenizer=_Ids(),
        eos=None,
    )
    return out["timing"]["total_ms"] / max(1, out["timing"]["generated_tokens"])


def _paired(
    model: Any, prompt: list[int], repeats: int, intervention: Intervention, module: Any
) -> tuple[float, float]:
    """(unsteered, steered) ms per token, each the best of ``repeats`` runs taken in alternation, so
    drifts of the machine (clocks, other load) hit both alike. Unsteered runs have no hook at all:
    their intervention steers no feature and is never attached."""
    from appliance.pipeline.steering.generate import Intervention

    unhooked = Intervention(intervention.sae, [], intervention.reads_input, intervention.writes_input, None, None)
    _run_once(model, prompt, unhooked)  # warm-up
    bare, steered = [], []
    for _ in range(repeats):
        bare.append(_run_once(model, prompt, unhooked))
        handle = intervention.attach(module)
        try:
            steered.append(_run_once(model, prompt, intervention))
        finally:
            handle.remove()
    return min(bare), min(steered)


class _Ids:
    """A stand-in tokenizer: the benchmark times the model, not detokenisation."""

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return ""


def _model_figures(name: str, model: Any, repeats: int) -> list[Figure]:
    import torch

    from appliance.pipeline.models.architecture import find_layers
    from appliance.pipeline.models.loading import device
    from appliance.pipeline.sae import SAEConfig, build
    from appliance.pipeline.steering.generate import Intervention, SteeredFeature

    on = device()
    model = model.to(on)
    dtype = next(model.parameters()).dtype
    _, layers = find_layers(model)
    module = layers[int(len(layers) * LAYER_SHARE)]
    d = model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.n_embd
    vocab = model.config.vocab_size
    prompt = [int(t) for t in torch.randint(1, vocab, (16,), generator=torch.Generator().manual_seed(1))]
    figures = []
    runs: tuple[tuple[str, EncoderType, Mode], ...] = (
        ("add", "sparse", "add"),
        ("clamp, ReLU SAE", "sparse", "clamp"),
        ("clamp, TopK SAE", "topk", "clamp"),
    )
    for label, arch, mode in runs:
        sae = build(SAEConfig(arch, d, 8 * d, k=32), device=on)
        features = [SteeredFeature(i, 2.0, mode, 3.0) for i in (5, 50, 500)]
        intervention = Intervention(sae, features, False, False, on, dtype)
        progress(f"{name}: unsteered and steered ({label}), {TOKENS} tokens, {on}")
        bare, steered = _paired(model, prompt, repeats, intervention, module)
        overhead = 100 * (steered / bare - 1)
        figures.append(Figure(f"{name}: unsteered", bare, "ms/token", digits=2, note=f"greedy, KV cache, {on}"))
        figures.append(Figure(f"{name}: steered ({label})", steered, "ms/token", digits=2))
        figures.append(Figure(f"{name}: overhead ({label})", overhead, "%", target=OVERHEAD_TARGET, digits=1))
    return figures


def _first_token_ms(client: httpx.Client, url: str, body: dict) -> tuple[float, float]:
    """(ms from the POST to the first steering.token on the event stream, ms to steering.completed)."""
    first: dict[str, float] = {}
    done = threading.Event()
    began = time.perf_counter()
    job_id = client.post("/api/steering/generate", json={**body, "stream": True}).json()["data"]["job_id"]

    def listen() -> None:
        with httpx.Client(timeout=httpx.Timeout(10, read=None), headers=client.headers) as sse:
            with sse.stream(
                "GET", f"{url}/api/events", params={"topics": f"job:{job_id}"}, headers={"Last-Event-ID": "0"}
            ) as response:
                for line in response.iter_lines():
                    if line.startswith("event: steering.token") and "token" not in first:
                        first["token"] = time.perf_counter()
                    if line.startswith("event: steering.completed"):
                        first["done"] = time.perf_counter()
                        done.set()
                        return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    done.wait(600)
    return 1000 * (first.get("token", float("nan")) - began), 1000 * (first.get("done", float("nan")) - began)


def _appliance_figures() -> list[Figure]:
    with Appliance(extra_env={"MISTUDIO_SEED_DEMO": "1"}) as app:
        client = httpx.Client(base_url=app.url, timeout=600, headers=app.auth_headers())
        dataset, model = wait_demo(client)
        progress("training a ReLU SAE (4x) on the demo model's layer 2 and extracting its features")
        training_id = train_sae(
            client,
            model,
            dataset,
            "sparse",
            {"expansion_factor": 4, "batch_size": 256, "total_steps": 150},
            max_samples=300,
            context_length=64,
        )
        start_job(
            client, "/api/features/extract", {"training_id": training_id, "eval_samples": 80, "context_length": 64}
        )
        body = {
            "training_id": training_id,
            "prompt": PROMPT,
            "max_tokens": TOKENS,
            "temperature": 0.0,
            "features": [{"index": i, "coefficient": 2.0} for i in (1, 2, 3)],
        }
        progress("time to the first streamed token, cold then warm")
        cold_first, _ = _first_token_ms(client, app.url, body)
        warm = [_first_token_ms(client, app.url, body) for _ in range(5)]
        result = client.post("/api/steering/generate", json=body).json()["data"]
        print(json.dumps({"api_timing": result["timing"]}))
    return [
        Figure("API: first streamed token, cold", cold_first, "ms", digits=0, note="includes loading the model"),
        Figure(
            "API: first streamed token, warm",
            statistics.median(w[0] for w in warm),
            "ms",
            digits=0,
            target=500,
            note="median of 5; POST to the first SSE token",
        ),
        Figure(
            "API: whole comparison, warm",
            statistics.median(w[1] for w in warm),
            "ms",
            digits=0,
            note=f"2 x up to {TOKENS} tokens ({result['timing']['generated_tokens']} here) + metrics",
        ),
        Figure("worker: ms per token (both sides)", result["timing"]["ms_per_token"], "ms/token", digits=2),
    ]


def run(args: argparse.Namespace) -> int:
    import torch

    from appliance.demo_kit import MODEL_DIR
    from appliance.pipeline.models.loading import load

    threads, repeats = opening("steering", args)
    torch.set_num_threads(threads)
    print(f"torch {torch.__version__}, {threads} thread(s), best of {repeats}, {TOKENS} tokens per run")
    figures = _model_figures("demo model", load(str(MODEL_DIR), "fp32"), repeats)
    figures += _model_figures("GPT-2-small size", _gpt2_small(), repeats)
    if not getattr(args, "no_api", False):
        figures += _appliance_figures()
    return finish(
        "steering",
        figures,
        settings={
            "threads": threads,
            "repeats": repeats,
            "tokens": TOKENS,
            "torch": torch.__version__,
            "api": not getattr(args, "no_api", False),
        },
    )
