"""What a refused request says to a person (issue 21, points 6 and 7): a validation error names the field by
its form label in a sentence, with msgspec's machine form kept in ``details.errors``; a delete refusal
names every dependent by its name, grouped by kind, with kinds, ids and names in ``details``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import msgspec
import pytest

from appliance.api.body import _error
from appliance.api.field_errors import label, sentence
from appliance.data import activation_sets, datasets, models, trainings
from appliance.data.database import Database
from appliance.ids import new_id
from tests.support import Appliance, appliance_at, started

TRAIN = {"model_id": "m_abcdefgh", "dataset_id": "ds_abcdefgh", "layer": 2, "encoder_type": "topk"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    yield from started(appliance_at(tmp_path_factory.mktemp("errors")))


def _refused(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    return error


# -- point 6: validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("hyperparameters", "message", "machine"),
    [
        ({"learning_rate": 0}, "Learning rate must be greater than 0.", "Expected `float` > 0.0"),
        ({"total_steps": 1.5}, "Training steps must be a whole number.", "Expected `int`, got `float`"),
        ({"total_steps": "200"}, "Training steps must be a whole number.", "Expected `int`, got `str`"),
        ({"total_steps": 0}, "Training steps must be at least 1.", "Expected `int` >= 1"),
        ({"total_steps": 10**9}, "Training steps must be at most 10,000,000.", "Expected `int` <= 10000000"),
    ],
)
def test_validation_message_names_the_field_by_its_label(
    app: Appliance, hyperparameters: dict[str, Any], message: str, machine: str
) -> None:
    error = _refused(
        app.post("/api/training/start", json={**TRAIN, "hyperparameters": hyperparameters}), 400, "VALIDATION_ERROR"
    )
    key = f"hyperparameters.{next(iter(hyperparameters))}"
    assert error["message"] == message
    assert error["details"]["errors"] == [{"key": key, "message": machine, "source": "body", "label": label(key)}]


def test_validation_messages_of_other_fields_and_sources(app: Appliance) -> None:
    cases = [
        ("/api/training/start", {**TRAIN, "encoder_type": "nope"}, "Encoder type cannot be 'nope'."),
        ("/api/training/start", {k: v for k, v in TRAIN.items() if k != "layer"}, "Layer is required."),
        ("/api/training/start", {**TRAIN, "bogus": 1}, '"bogus" is not a field this request accepts.'),
        (
            "/api/datasets/download",
            {"repo_id": "no such/repo"},
            'Repository must be a Hugging Face id like "owner/name".',
        ),
        (
            "/api/models/m_abcdefgh/extract-activations",
            {"dataset_id": "ds_abcdefgh", "layers": []},
            "Layers must not be empty.",
        ),
        ("/api/training/start", [1], "The request body must be an object."),
    ]
    for path, body, message in cases:
        assert _refused(app.post(path, json=body), 400, "VALIDATION_ERROR")["message"] == message, body
    # A query parameter: the same sentence, the source says where.
    error = _refused(app.get("/api/jobs?limit=abc"), 400, "VALIDATION_ERROR")
    assert error["message"] == "Limit must be a whole number."
    assert error["details"]["errors"][0]["source"] == "query"


class _Shapes(msgspec.Struct, forbid_unknown_fields=True):
    prompt: Annotated[str, msgspec.Meta(min_length=1, max_length=8)] = "x"
    layers: list[Annotated[int, msgspec.Meta(ge=0)]] = []
    top_p: Annotated[float, msgspec.Meta(gt=0, le=1)] = 1.0
    features: Annotated[list[int], msgspec.Meta(max_length=2)] = []
    seed: Annotated[int, msgspec.Meta(multiple_of=2)] | None = None
    padding: Literal["max_length", "longest"] = "longest"
    subfolder: Annotated[str, msgspec.Meta(pattern=r"^[\w./-]+$")] = "x"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"prompt": ""}, "Prompt must not be empty."),
        ({"prompt": "123456789"}, "Prompt must have at most 8 characters."),
        ({"layers": [0, -1]}, "Layers (item 2) must be at least 0."),
        ({"top_p": 1.5}, "Top-p must be at most 1."),
        ({"top_p": "x"}, "Top-p must be a number."),
        ({"features": [1, 2, 3]}, "Features must have at most 2 items."),
        ({"seed": 3}, "Random seed must be a multiple of 2."),
        ({"seed": "3"}, "Random seed must be a whole number."),
        ({"padding": "all"}, "Padding strategy cannot be 'all'."),
        ({"subfolder": "a b"}, "Subfolder is not in the expected format."),
        ({"new_field": 1}, '"new_field" is not a field this request accepts.'),
    ],
)
def test_every_msgspec_refusal_reads_as_a_sentence(body: dict[str, Any], message: str) -> None:
    """msgspec's own messages (not copies of them), through the request decoder's error shape."""
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert(body, _Shapes, strict=True)
    item = _error(info.value).extra[0]
    assert sentence(item.get("key", ""), item["message"]) == message


def test_labels_fall_back_to_the_key_humanised() -> None:
    assert label("hyperparameters.learning_rate") == "Learning rate"
    assert label("features.3.coefficient") == "Coefficient"
    assert label("hyperparameters.aux_k_coefficient") == "Aux k coefficient"
    assert label("max_samples") == "Max samples"


# -- point 7: delete refusals ----------------------------------------------------------------------------
def _kit(app: Appliance) -> dict[str, str]:
    """A model and a dataset with two activation sets and a training built on them, written with the
    appliance's own statements (the refusal reads rows only: no job needs to run)."""
    db, now = Database(app.data_dir / "mistudio.db"), time.time()
    ids = {"model": new_id("m"), "dataset": new_id("ds"), "set2": new_id("act"), "set03": new_id("act")}
    ids["training"] = new_id("tr")
    db.write(
        models.insert(
            ids["model"],
            name="tiny-stories",
            source="huggingface",
            precision="fp32",
            status="ready",
            path="x",
            job_id=None,
            now=now,
        ),
        datasets.insert(
            ids["dataset"],
            name="wiki-mini",
            source="huggingface",
            status="ready",
            text_column="text",
            job_id=new_id("job"),
            now=now,
        ),
        activation_sets.insert(
            ids["set2"],
            model_id=ids["model"],
            dataset_id=ids["dataset"],
            job_id=None,
            now=now,
            config='{"layers": [2], "hook_types": ["residual"]}',
        ),
        activation_sets.insert(
            ids["set03"],
            model_id=ids["model"],
            dataset_id=ids["dataset"],
            job_id=None,
            now=now + 1,
            config='{"layers": [0, 1, 2, 3], "hook_types": ["mlp_out"]}',
        ),
        activation_sets.change(ids["set2"], status="ready"),
        activation_sets.change(ids["set03"], status="ready"),
        trainings.insert(
            ids["training"],
            model_id=ids["model"],
            dataset_id=ids["dataset"],
            activation_id=ids["set2"],
            layer=2,
            hook_type="residual",
            encoder_type="topk",
            total_steps=10,
            now=now,
            config={"hyperparameters": {"k": 32}},
        ),
    )
    db.close()
    return ids


def test_delete_refusals_name_every_dependent_grouped_by_kind(app: Appliance) -> None:
    ids = _kit(app)
    sets = [
        {"kind": "activation_set", "id": ids["set2"], "name": "L2 residual"},
        {"kind": "activation_set", "id": ids["set03"], "name": "L0-3 mlp_out"},
    ]
    training = {"kind": "training", "id": ids["training"], "name": "topk k=32 L2 residual"}
    with app.client() as client:
        _check_refusals(client, ids, sets, training)


def _check_refusals(client: Any, ids: dict[str, str], sets: list[dict[str, str]], training: dict[str, str]) -> None:

    error = _refused(client.delete(f"/api/models/{ids['model']}"), 409, "CONFLICT")
    assert error["message"] == (
        'Model "tiny-stories" is used by 2 activation sets ("L2 residual", "L0-3 mlp_out") and 1 training'
        ' ("topk k=32 L2 residual"): delete those first.'
    )
    assert error["details"]["dependents"] == [*sets, training]
    assert error["details"]["used_by"] == [ids["set2"], ids["set03"], ids["training"]]

    error = _refused(client.delete(f"/api/datasets/{ids['dataset']}"), 409, "CONFLICT")
    assert error["message"].startswith('Dataset "wiki-mini" is used by 2 activation sets ("L2 residual", ')
    assert error["details"]["dependents"] == [*sets, training]

    error = _refused(client.delete(f"/api/activations/{ids['set2']}"), 409, "CONFLICT")
    assert error["message"] == (
        'Activation set "L2 residual" is used by 1 training ("topk k=32 L2 residual"): delete it first.'
    )
    assert error["details"] == {"used_by": [ids["training"]], "dependents": [training]}

    # Nothing depends on the other set: it goes, and the model's refusal no longer lists it.
    assert client.delete(f"/api/activations/{ids['set03']}").status_code == 200
    error = _refused(client.delete(f"/api/models/{ids['model']}"), 409, "CONFLICT")
    assert error["details"]["dependents"] == [sets[0], training]
