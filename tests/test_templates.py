"""Extraction templates: the two seeds on first start, CRUD, favourite, apply fitted to a
model's layers, export and import."""

from __future__ import annotations

from tests.support import Appliance
from tests.test_api_contract import assert_error

URL = "/api/templates/extraction"


def test_extraction_templates(shared_appliance: Appliance) -> None:
    app = shared_appliance
    seeds = {t["name"]: t for t in app.get(URL).json()["data"]}
    assert {"Quick Scan", "Full Analysis"} <= set(seeds)
    quick = seeds["Quick Scan"]
    assert quick["is_favorite"] is True and quick["config"]["layers"] == [0, 6, 11]
    assert quick["config"]["hook_types"] == ["residual"] and quick["config"]["max_samples"] == 5000
    assert seeds["Full Analysis"]["config"]["layers"] == list(range(12))

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
        assert applied["config"]["layers"] == [0, 6, 11] and applied["notes"] == []
        assert_error(client.post(f"{URL}/{quick['id']}/apply", json={"model_id": "m_doesnotexist"}), 404, "NOT_FOUND")
        for bad in (
            {"name": "x", "config": {"layers": [], "hook_types": ["residual"]}},
            {"name": "x", "config": {"layers": [0], "hook_types": ["logits"]}},
            {"name": "", "config": {"layers": [0], "hook_types": ["residual"]}},
            {"name": "x", "config": {"layers": [0], "hook_types": ["mlp"], "surprise": 1}},
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
