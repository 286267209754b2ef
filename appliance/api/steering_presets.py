"""Steering presets: saved steering settings of one SAE, served by the generic template controller
at ``/api/steering/presets`` (list, create, read, update, delete, favourite, apply, export, import).
The rules (seeding presets that fit an SAE, fitting a preset to another SAE) are
appliance.services.steering_presets."""

from __future__ import annotations

from typing import Annotated

import msgspec

from appliance.api.steering import SteeringOptions
from appliance.api.templates import controller_for
from appliance.data.database import AsyncDatabase
from appliance.services import steering_presets
from appliance.services.templates import Kind


class SteeringSettings(SteeringOptions, kw_only=True):
    prompt: Annotated[str, msgspec.Meta(max_length=8000)] = ""


async def _seed(db: AsyncDatabase, bound: dict[str, str]) -> None:
    await steering_presets.seed_for_training(db, STEERING, bound)


STEERING = Kind(
    "steering",
    "sp",
    SteeringSettings,
    (),
    steering_presets.fit,
    bindings=("training_id",),
    path="/api/steering/presets",
    before_list=_seed,
)
SteeringPresetsController = controller_for(STEERING)
