"""Steering presets: saved steering settings of one SAE, served by the generic template controller
at ``/api/steering/presets`` (list, create, read, update, delete, favourite, apply, export, import).

The mock ships two presets ("Positive Sentiment", "Formal Tone") with made-up feature ids. Here a
seed becomes a preset of an SAE only when that SAE has features that fit it: features whose logit
lens promotes the seed's words (checked once per SAE, the first time its presets are listed after
its features were extracted). An SAE with no such features gets no preset rather than a fake one.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import msgspec

from appliance.api.state import ApiState
from appliance.api.steering import SteeringOptions
from appliance.api.templates import ApplyRequest, Kind, TemplateIn, controller_for, insert
from appliance.api.validation import check_id
from appliance.errors import NotFound


class SteeringSettings(SteeringOptions, kw_only=True):
    prompt: Annotated[str, msgspec.Meta(max_length=8000)] = ""


# The mock's seeds: name, description, favourite, the words a fitting feature promotes, the mock's
# coefficients (strongest match first) and temperature.
SEEDS = (
    ("Positive Sentiment", "Boost positive sentiment features", True,
     {"good", "great", "happy", "love", "best", "excellent", "wonderful", "nice", "beautiful", "positive", "glad",
      "enjoy", "amazing", "perfect"}, (3.5, 2.0, 1.5), 1.0),
    ("Formal Tone", "Increase formality and professional language", False,
     {"therefore", "furthermore", "moreover", "hereby", "thus", "accordingly", "regarding", "pursuant", "shall",
      "respectively", "whereas", "consequently", "hence"}, (4.0, 2.5), 0.8),
)


def _promoted_words(logit_lens: str) -> set[str]:
    return {token.strip().lower() for token, _ in json.loads(logit_lens).get("positive", [])}


async def seed_for_training(api: ApiState, bound: dict[str, str]) -> None:
    """Create the seeds that fit this SAE, once (a deleted seed stays deleted)."""
    training_id = bound.get("training_id")
    if not training_id or api.db is None:
        return
    key = f"seeded.steering_presets.{training_id}"
    if await api.db.execute_fetchall("SELECT 1 FROM app_state WHERE key = ?", (key,)):
        return
    ready = await api.db.execute_fetchall(
        "SELECT t.layer FROM feature_extractions e JOIN trainings t ON t.id = e.training_id"
        " WHERE e.training_id = ? AND e.status = 'ready'", (training_id,))
    if not ready:
        return
    rows = await api.db.execute_fetchall(
        "SELECT d.idx, d.logit_lens FROM feature_details d JOIN features f USING (training_id, idx)"
        " WHERE d.training_id = ? AND f.frequency > 0", (training_id,))
    made = []
    for name, description, favorite, words, coefficients, temperature in SEEDS:
        matches = sorted(((len(_promoted_words(row["logit_lens"]) & words), row["idx"]) for row in rows),
                         key=lambda m: (-m[0], m[1]))
        chosen = [idx for hits, idx in matches[:len(coefficients)] if hits > 0]
        if not chosen:
            continue
        config = {"training_id": training_id, "intervention_layer": ready[0]["layer"], "temperature": temperature,
                  "features": [{"index": idx, "coefficient": c, "mode": "add"} for idx, c in zip(chosen, coefficients)]}
        made.append((await insert(api, STEERING, TemplateIn(name, config, description, favorite))).id)
    async with api.db_lock:
        await api.db.execute("INSERT OR IGNORE INTO app_state (key, value, updated_at) VALUES (?, ?, ?)",
                             (key, ",".join(made), time.time()))


async def _fit(api: ApiState, config: dict[str, Any], request: ApplyRequest) -> tuple[dict[str, Any], list[str]]:
    """The preset for an SAE (its own, or another one the caller names): features the SAE does not
    have are dropped, and a layer other than the SAE's is kept only for residual-stream SAEs."""
    assert api.db is not None
    training_id = check_id(request.training_id or config["training_id"], "tr", "training_id")
    rows = await api.db.execute_fetchall("SELECT layer, hook_type FROM trainings WHERE id = ?", (training_id,))
    if not rows:
        raise NotFound(f"No training {training_id!r}", details={"training_id": training_id})
    training, notes = rows[0], []
    d_sae = (await api.db.execute_fetchall("SELECT count(*) FROM features WHERE training_id = ?", (training_id,)))[0][0]
    if not d_sae:
        notes.append("The SAE's features are not extracted yet: feature indices were not checked")
        d_sae = max((f["index"] + 1 for f in config["features"]), default=0)
    features = [f for f in config["features"] if f["index"] < d_sae]
    if len(features) < len(config["features"]):
        dropped = sorted(f["index"] for f in config["features"] if f["index"] >= d_sae)
        notes.append(f"Dropped features {', '.join(map(str, dropped))}: the SAE has {d_sae} latents")
    layer = config.get("intervention_layer")
    if layer is not None and layer != training["layer"] and training["hook_type"] != "residual":
        notes.append(f"Steering at layer {layer} needs a residual-stream SAE; using the SAE's layer {training['layer']}")
        layer = training["layer"]
    return {**config, "training_id": training_id, "features": features, "intervention_layer": layer}, notes


STEERING = Kind("steering", "sp", SteeringSettings, (), _fit, bindings=("training_id",),
                path="/api/steering/presets", before_list=seed_for_training)
SteeringPresetsController = controller_for(STEERING)
