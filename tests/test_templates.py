"""Extraction templates: the two seeds on first start, CRUD, favourite, apply fitted to a
model's layers, export and import."""

from __future__ import annotations

import json
import sqlite3
import time

from tests.support import Appliance
from tests.test_api_contract import assert_error

URL = "/api/templates/extraction"


def _apply(app: Appliance, template_id: str, model_id: str) -> dict:
    response = app.post(f"{URL}/{template_id}/apply", json={"model_id": model_id})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _template(app: Appliance, config: dict) -> str:
    response = app.post(URL, json={"name": "t", "config": config})
    assert response.status_code == 201, response.text
    return response.json()["data"]["id"]


def test_point3_templates_fit_the_chosen_model_and_say_what_changed(shared_appliance: Appliance) -> None:
    """Resolved against the real demo model (4 layers, GPT-2 hook points, 256 positions): depths and
    "every layer" fit it exactly; absolute layers beyond it, hook types it lacks and a longer context
    are changed, each with a note."""
    app = shared_appliance
    model = app.completed(app.post("/api/models/demo"), timeout=240)["target"]["id"]
    seeds = {t["name"]: t["id"] for t in app.get(URL).json()["data"]}

    quick = _apply(app, seeds["Quick Scan"], model)
    assert quick["config"]["layers"] == [0, 2, 3] and quick["notes"] == [], quick  # first, middle, last
    full = _apply(app, seeds["Full Analysis"], model)
    assert full["config"]["layers"] == [0, 1, 2, 3] and full["notes"] == [], full
    assert full["config"]["hook_types"] == ["residual", "mlp", "attention"]

    # A template of an older version names absolute layers of a 12-layer model: clamped, and said.
    old = _apply(app, _template(app, {"layers": [0, 6, 11], "hook_types": ["residual"]}), model)
    assert old["config"]["layers"] == [0, 3], old
    assert old["notes"] == ["Layers 6, 11 are beyond this model's layers 0-3: layer 3 is used instead"], old

    # Depths closer together than the model's layers fall on one layer; a context longer than it reads.
    close = _apply(app, _template(app, {"depths": [0.9, 1], "hook_types": ["mlp"], "context_length": 512}), model)
    assert close["config"]["layers"] == [3] and close["config"]["context_length"] == 256, close
    assert any(n == "2 depths fall on 1 layer of this 4-layer model: layer 3" for n in close["notes"]), close
    assert any("Context length 512" in n for n in close["notes"]), close

    # A model without mlp_in hook points (its MLP not fed by a plain norm): that hook type is left out.
    arch = app.get(f"/api/models/{model}/architecture").json()["data"]
    arch["hook_points"] = [p for p in arch["hook_points"] if p["type"] != "mlp_in"]
    db = sqlite3.connect(app.data_dir / "mistudio.db")
    with db:
        db.execute(
            "INSERT INTO models (id, name, source, precision, status, path, architecture, created_at, updated_at)"
            " VALUES ('m_nomlpin00001', 'no mlp_in', 'local', 'fp32', 'ready', '/nowhere', ?, ?, ?)",
            (json.dumps(arch), time.time(), time.time()),
        )
    db.close()
    transcoder = _template(app, {"all_layers": True, "hook_types": ["mlp_in", "mlp"]})
    fitted = _apply(app, transcoder, "m_nomlpin00001")
    assert fitted["config"]["hook_types"] == ["mlp"], fitted
    assert fitted["notes"] == ["This model has no mlp_in hook points on those layers: left out"], fitted
    assert _apply(app, transcoder, model)["config"]["hook_types"] == ["mlp_in", "mlp"]


def test_point3_seeds_of_an_older_version_become_model_free(make_appliance) -> None:
    """A data dir seeded with absolute layers (0, 6, 11 of a 12-layer model) gets today's seeds at the
    next start, unless the user changed them."""
    app = make_appliance()
    app.start_api()  # seeds; no worker needed
    seeds = {t["name"]: t for t in app.get(URL).json()["data"]}
    app.stop_proc(app.api)
    old_quick = {"layers": [0, 6, 11], "hook_types": ["residual"], "max_samples": 5000, "top_k_examples": 50}
    changed_full = {"layers": [1, 2], "hook_types": ["residual"], "max_samples": None, "top_k_examples": 100}
    db = sqlite3.connect(app.data_dir / "mistudio.db")
    with db:
        for name, config in (("Quick Scan", old_quick), ("Full Analysis", changed_full)):
            stored = {"batch_size": 32, "context_length": 128, **config}
            db.execute("UPDATE templates SET config = ? WHERE id = ?", (json.dumps(stored), seeds[name]["id"]))
        db.execute("DELETE FROM app_state WHERE key = 'seeded.extraction_template_depths'")
    db.close()
    app.start_api()
    now = {t["name"]: t for t in app.get(URL).json()["data"]}
    assert now["Quick Scan"]["config"]["depths"] == [0, 0.5, 1] and now["Quick Scan"]["config"]["layers"] is None
    assert now["Full Analysis"]["config"]["layers"] == [1, 2]  # the user's own change stays


def test_extraction_templates(shared_appliance: Appliance) -> None:
    app = shared_appliance
    seeds = {t["name"]: t for t in app.get(URL).json()["data"]}
    assert {"Quick Scan", "Full Analysis"} <= set(seeds)
    quick = seeds["Quick Scan"]
    # Model-free layers: depths (first, middle, last) and "every layer", resolved when applied.
    assert (
        quick["is_favorite"] is True and quick["config"]["depths"] == [0, 0.5, 1] and quick["config"]["layers"] is None
    )
    assert quick["config"]["hook_types"] == ["residual"] and quick["config"]["max_samples"] == 5000
    assert seeds["Full Analysis"]["config"]["all_layers"] is True

    created = app.post(
        URL, json={"name": "Mine", "description": "two layers", "config": {"layers": [1, 2], "hook_types": ["mlp"]}}
    )
    assert created.status_code == 201, created.text
    mine = created.json()["data"]
    assert mine["id"].startswith("et_") and mine["config"]["top_k_examples"] == 50
    with app.client() as client:
        changed = client.put(
            f"{URL}/{mine['id']}", json={"name": "Mine v2", "config": {"layers": [3], "hook_types": ["residual"]}}
        )
        assert changed.json()["data"]["name"] == "Mine v2" and changed.json()["data"]["config"]["layers"] == [3]
        starred = client.post(f"{URL}/{mine['id']}/favorite").json()["data"]
        assert starred["is_favorite"] is True
        favorites = client.get(URL, params={"is_favorite": "true"}).json()["data"]
        assert {t["id"] for t in favorites} >= {mine["id"], quick["id"]}
        assert all(t["is_favorite"] for t in favorites)
        applied = client.post(f"{URL}/{quick['id']}/apply", json={}).json()["data"]
        assert applied["config"]["depths"] == [0, 0.5, 1] and "Choose a model" in applied["notes"][0]
        assert_error(client.post(f"{URL}/{quick['id']}/apply", json={"model_id": "m_doesnotexist"}), 404, "NOT_FOUND")
        for bad in (
            {"name": "x", "config": {"layers": [], "hook_types": ["residual"]}},
            {"name": "x", "config": {"layers": [0], "hook_types": ["logits"]}},
            {"name": "", "config": {"layers": [0], "hook_types": ["residual"]}},
            {"name": "x", "config": {"layers": [0], "hook_types": ["mlp"], "surprise": 1}},
            {"name": "x", "config": {"hook_types": ["mlp"]}},  # which layers?
            {"name": "x", "config": {"layers": [0], "depths": [0.5], "hook_types": ["mlp"]}},  # two answers
            {"name": "x", "config": {"depths": [1.5], "hook_types": ["mlp"]}},  # beyond the last layer
        ):
            assert_error(client.post(URL, json=bad), 400, "VALIDATION_ERROR")
        exported = client.get(f"{URL}/export").json()["data"]
        assert mine["id"] in {t["id"] for t in exported}
        imported = client.post(
            f"{URL}/import",
            json=[
                {k: t[k] for k in ("name", "description", "is_favorite", "config")}
                for t in exported
                if t["id"] == mine["id"]
            ],
        )
        assert imported.status_code == 201 and imported.json()["data"][0]["name"] == "Mine v2"
        assert imported.json()["data"][0]["id"] != mine["id"]
        assert client.delete(f"{URL}/{mine['id']}").status_code == 200
        assert_error(client.get(f"{URL}/{mine['id']}"), 404, "NOT_FOUND")
        assert_error(client.get(f"{URL}/tt_wrongprefix0"), 400, "VALIDATION_ERROR")


def test_training_templates(shared_appliance: Appliance) -> None:
    app = shared_appliance
    url = "/api/templates/training"
    seeds = {t["name"]: t for t in app.get(url).json()["data"]}
    assert {"Fast Prototyping", "High Quality SAE", "Large Expansion"} <= set(seeds)
    fast = seeds["Fast Prototyping"]["config"]
    assert fast["encoder_type"] == "sparse" and fast["hyperparameters"]["expansion_factor"] == 4
    assert seeds["Large Expansion"]["config"]["hyperparameters"]["lr_decay"] == "linear"
    assert seeds["Large Expansion"]["is_favorite"] is False
    created = app.post(
        url,
        json={
            "name": "bound",
            "config": {"encoder_type": "topk", "model_id": "m_bound000001", "hyperparameters": {"k": 8}},
        },
    )
    assert created.status_code == 201, created.text
    bound = created.json()["data"]
    assert bound["id"].startswith("tt_") and bound["config"]["hyperparameters"]["k"] == 8
    other = {t["id"] for t in app.get(url, params={"model_id": "m_other0000001"}).json()["data"]}
    mine = {t["id"] for t in app.get(url, params={"model_id": "m_bound000001"}).json()["data"]}
    assert bound["id"] in mine and bound["id"] not in other and seeds["Fast Prototyping"]["id"] in other
    for bad in ({"learning_rate": 5}, {"batch_size": 3}, {"lr_decay": "zigzag"}, {"nope": 1}):
        assert_error(app.post(url, json={"name": "x", "config": {"hyperparameters": bad}}), 400, "VALIDATION_ERROR")
    assert_error(app.post(f"{url}/{bound['id']}/apply", json={"model_id": "m_nothere00001"}), 404, "NOT_FOUND")
    applied = app.post(f"{url}/{bound['id']}/apply", json={}).json()["data"]
    assert applied["config"]["model_id"] == "m_bound000001" and applied["config"]["encoder_type"] == "topk"
