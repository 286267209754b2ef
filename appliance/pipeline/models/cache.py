"""Models and SAEs for interactive work (probes, labels, steering), kept loaded between requests.

This is not a second cache: the loaded objects live in the memory manager's one ``ModelCache``
(``ctx.memory.models``, appliance.memory.admission), so they count against the device's memory
budget and are evicted (least recently used) when a heavy job needs the room. This module only
decides what is cached under which key, admits a model's first load against the budget, and puts
the SAE on the model's device.

The worker's threads share the cached objects: whoever hooks or runs a cached model holds it with
``exclusive`` (a hook attached for one request runs in every forward pass of the model, whoever
makes it). Locks are keyed by the object's id; an id reused after an eviction only shares a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from appliance.jobs.context import JobContext
from appliance.memory.admission import estimate_model, weights_part


def model_key(model_path: str, precision: str) -> str:
    return f"{model_path}:{precision}"


def sae_key(training_id: str) -> str:
    return f"sae:{training_id}"


def model_and_sae(
    ctx: JobContext, training_id: str, model_path: str, precision: str, parameters: int
) -> tuple[Any, Any]:
    """The model (admitted against the memory budget on first load) and the training's exported SAE
    on the model's device."""
    from appliance.pipeline.models.loading import load
    from appliance.pipeline.sae.io.saelens import load_folder

    cache = ctx.memory.models
    key = model_key(model_path, precision)
    model = cache.get(key)
    if model is None:
        estimate = estimate_model(parameters, precision, checkpoint=model_path)
        with ctx.memory.admit(ctx, estimate):
            model = load(model_path, precision)
        cache.put(key, model, estimate.parts[weights_part(precision)])  # the load's transient is gone
    sae = cache.get(sae_key(training_id))
    if sae is None:
        sae, _ = load_folder(ctx.layout.export(training_id))
        sae = sae.to(next(model.parameters()).device)
        cache.put(sae_key(training_id), sae, sum(p.numel() * 4 for p in sae.parameters()))
    return model, sae


_locks: dict[int, threading.Lock] = {}
_locks_guard = threading.Lock()


@contextmanager
def exclusive(model: Any) -> Iterator[None]:
    """Use ``model`` alone (hooks on it, generation) until the block ends."""
    with _locks_guard:
        lock = _locks.setdefault(id(model), threading.Lock())
    with lock:
        yield
