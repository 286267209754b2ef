"""Models and SAEs for interactive work (probes, steering), kept loaded between requests.

They live in the memory manager's model cache, so they count against the device's memory budget
and are evicted (least recently used) when a heavy job needs the room. The worker's threads share
them: whoever hooks or runs a cached model holds it with ``exclusive`` (a hook attached for one
request runs in every forward pass of the model, whoever makes it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from appliance.config import get_settings
from appliance.jobs.context import JobContext
from appliance.jobs.runner import memory_manager
from appliance.memory.admission import estimate_model


def model_and_sae(ctx: JobContext, training_id: str, model_path: str, precision: str,
                  parameters: int) -> tuple[Any, Any]:
    """The model (admitted against the memory budget on first load) and the training's exported SAE
    on the model's device."""
    from appliance.pipeline.models.loading import load
    from appliance.pipeline.sae.io.saelens import load_folder

    manager = memory_manager()
    key = f"{model_path}:{precision}"
    model = manager.models.get(key)
    if model is None:
        estimate = estimate_model(parameters, precision)
        with manager.admit(ctx, estimate):
            model = load(model_path, precision)
        manager.models.put(key, model, estimate.total)
    sae_key = f"sae:{training_id}"
    sae = manager.models.get(sae_key)
    if sae is None:
        sae, _ = load_folder(get_settings().data_dir / "trainings" / training_id / "export")
        sae = sae.to(next(model.parameters()).device)
        manager.models.put(sae_key, sae, sum(p.numel() * 4 for p in sae.parameters()))
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
