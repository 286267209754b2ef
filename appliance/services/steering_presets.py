"""Steering presets: saved steering settings of one SAE (a template kind, appliance.services.templates).

Two seeds ("Positive Sentiment", "Formal Tone") become presets of an SAE only when that SAE has
features that fit them: features whose logit lens promotes the seed's words (checked once per SAE,
the first time its presets are listed after its features were extracted). An SAE with no such
features gets no preset rather than one steering features that mean something else.
"""

from __future__ import annotations

import json
import time
from typing import Any

from appliance.api.validation import check_id
from appliance.data import app_state, features, trainings
from appliance.data.database import AsyncDatabase
from appliance.errors import NotFound
from appliance.services import templates
from appliance.services.templates import ApplyRequest, Kind, TemplateIn

# Each seed: name, description, favourite, the words a fitting feature promotes, the coefficients
# (strongest match first) and the temperature.
SEEDS = (
    (
        "Positive Sentiment",
        "Boost positive sentiment features",
        True,
        {
            "good",
            "great",
            "happy",
            "love",
            "best",
            "excellent",
            "wonderful",
            "nice",
            "beautiful",
            "positive",
            "glad",
            "enjoy",
            "amazing",
            "perfect",
        },
        (3.5, 2.0, 1.5),
        1.0,
    ),
    (
        "Formal Tone",
        "Increase formality and professional language",
        False,
        {
            "therefore",
            "furthermore",
            "moreover",
            "hereby",
            "thus",
            "accordingly",
            "regarding",
            "pursuant",
            "shall",
            "respectively",
            "whereas",
            "consequently",
            "hence",
        },
        (4.0, 2.5),
        0.8,
    ),
)


def _promoted_words(logit_lens: str) -> set[str]:
    return {token.strip().lower() for token, _ in json.loads(logit_lens).get("positive", [])}


async def seed_for_training(db: AsyncDatabase, kind: Kind, bound: dict[str, str]) -> None:
    """Create the seeds that fit this SAE, once (a deleted seed stays deleted)."""
    training_id = bound.get("training_id")
    if not training_id:
        return
    key = f"seeded.steering_presets.{training_id}"
    if await db.one(app_state.exists(key)):
        return
    ready = await db.one(features.ready_layer(training_id))
    if ready is None:
        return
    rows = await db.all(features.live_lenses(training_id))
    made = []
    for name, description, favorite, words, coefficients, temperature in SEEDS:
        matches = sorted(
            ((len(_promoted_words(row["logit_lens"]) & words), row["idx"]) for row in rows), key=lambda m: (-m[0], m[1])
        )
        chosen = [idx for hits, idx in matches[: len(coefficients)] if hits > 0]
        if not chosen:
            continue
        config = {
            "training_id": training_id,
            "intervention_layer": ready["layer"],
            "temperature": temperature,
            "features": [{"index": idx, "coefficient": c, "mode": "add"} for idx, c in zip(chosen, coefficients)],
        }
        made.append((await templates.insert(db, kind, TemplateIn(name, config, description, favorite))).id)
    await db.write(app_state.put_once(key, ",".join(made), time.time()))


async def fit(db: AsyncDatabase, config: dict[str, Any], request: ApplyRequest) -> tuple[dict[str, Any], list[str]]:
    """The preset for an SAE (its own, or another one the caller names): features the SAE does not
    have are dropped, and a layer other than the SAE's is kept only for residual-stream SAEs."""
    training_id = check_id(request.training_id or config["training_id"], "tr", "training_id")
    training = await db.one(trainings.get(training_id))
    if training is None:
        raise NotFound(f"No training {training_id!r}", details={"training_id": training_id})
    notes = []
    d_sae = await db.scalar(features.count(training_id))
    if not d_sae:
        notes.append("The SAE's features are not extracted yet: feature indices were not checked")
        d_sae = max((f["index"] + 1 for f in config["features"]), default=0)
    kept = [f for f in config["features"] if f["index"] < d_sae]
    if len(kept) < len(config["features"]):
        dropped = sorted(f["index"] for f in config["features"] if f["index"] >= d_sae)
        notes.append(f"Dropped features {', '.join(map(str, dropped))}: the SAE has {d_sae} latents")
    layer = config.get("intervention_layer")
    if layer is not None and layer != training["layer"] and training["hook_type"] != "residual":
        notes.append(
            f"Steering at layer {layer} needs a residual-stream SAE; using the SAE's layer {training['layer']}"
        )
        layer = training["layer"]
    return {**config, "training_id": training_id, "features": kept, "intervention_layer": layer}, notes
