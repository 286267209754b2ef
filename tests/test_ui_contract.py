"""The web UI's contract with the API is generated, not kept by hand: the committed OpenAPI document
is what the API serves, the committed TypeScript types are what the generator makes from it, and
every event a real run stores is one of the typed events that document publishes."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import msgspec
import pytest

from appliance.commands.openapi import document
from appliance.contracts.events import PAYLOADS, DatasetProgress, DatasetUpdated, StreamEvent, checked
from appliance.jobs.records import Event, event_from_row
from tests.support import REPO, Appliance, SSEReader

WEBUI = REPO / "webui"
OPENAPI = WEBUI / "src" / "api" / "openapi.json"
SCHEMA_TS = WEBUI / "src" / "api" / "schema.d.ts"
REGENERATE = (
    "regenerate: .venv/bin/python -m appliance.commands.openapi webui/src/api/openapi.json && "
    "(cd webui && npm run api:types)"
)


def test_committed_openapi_document_is_what_the_api_serves(make_appliance) -> None:
    app = make_appliance()
    app.start_api()
    served = app.get("/schema/openapi.json").json()
    committed = json.loads(OPENAPI.read_text())
    assert served == committed, f"webui/src/api/openapi.json is not what the API serves; {REGENERATE}"
    assert document() == committed  # the writer builds the same document without a server


def test_committed_typescript_is_generated_from_the_document(tmp_path: Path) -> None:
    if shutil.which("npm") is None:
        if os.environ.get("CI"):
            pytest.fail("npm is needed to check webui/src/api/schema.d.ts against openapi.json")
        pytest.skip("npm not installed")
    work = tmp_path / "webui"
    shutil.copytree(WEBUI, work, ignore=shutil.ignore_patterns("node_modules", "dist"))
    (work / "src" / "api" / "schema.d.ts").unlink()
    env = {**os.environ, "CI": "true", "npm_config_fund": "false", "npm_config_audit": "false"}
    for cmd in (["npm", "ci", "--no-audit", "--no-fund"], ["npm", "run", "api:types"]):
        result = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    generated = (work / "src" / "api" / "schema.d.ts").read_text()
    assert generated == SCHEMA_TS.read_text(), f"webui/src/api/schema.d.ts is stale; {REGENERATE}"


def test_the_event_union_is_in_the_document_and_names_every_event() -> None:
    schemas = json.loads(OPENAPI.read_text())["components"]["schemas"]
    mapping = schemas["StreamEvent"]["discriminator"]["mapping"]
    assert set(mapping) == set(PAYLOADS)
    streams = json.loads(OPENAPI.read_text())["paths"]["/api/events"]["get"]["responses"]["200"]["content"]
    assert streams["text/event-stream"]["schema"]["$ref"] == "#/components/schemas/StreamEvent"


def _stored_events(app: Appliance) -> list[Event]:
    """The events table as the API sends it (the SSE ``data:`` of each row)."""
    conn = sqlite3.connect(app.data_dir / "mistudio.db")
    conn.row_factory = sqlite3.Row
    try:
        return [event_from_row(row) for row in conn.execute("SELECT * FROM events ORDER BY id")]
    finally:
        conn.close()


def test_an_event_carries_its_types_payload_struct_or_is_refused_where_it_is_made() -> None:
    from appliance.jobs.registry import KINDS

    ready = DatasetUpdated(dataset_id="ds_x", status="ready")
    assert checked("dataset.updated", ready) is ready
    for type_, payload in (
        ("dataset.updated", {"dataset_id": "ds_x", "status": "ready"}),  # a dict: the Struct is the contract
        ("model.updated", ready),  # another type's Struct
        ("dataset.progress", ready),
        ("no.such.event", ready),
    ):
        with pytest.raises(TypeError):
            checked(type_, payload)
    with pytest.raises(TypeError):  # a field the payload does not have (JobContext.progress's extras)
        DatasetProgress(job_id="job_x", progress=0.5, message="", t=0.0, tokens=3)  # type: ignore[call-arg]
    # Every job kind reports progress with a payload Struct of its own (JobContext looks it up at start).
    assert {kind.progress_type for kind in KINDS.values()} <= set(PAYLOADS)


def test_every_stored_event_of_real_jobs_decodes_into_its_struct(appliance: Appliance) -> None:
    app = appliance
    with SSEReader(app.url + "/api/events?topics=system:metrics") as metrics:
        finished = [
            app.wait_status(app.selftest(steps=3, delay_ms=10), "completed"),
            app.wait_status(app.selftest(steps=3, delay_ms=10, fail_at=2), "failed"),
        ]
        imports = app.data_dir / "imports"
        imports.mkdir(parents=True, exist_ok=True)
        (imports / "t.jsonl").write_text("".join(json.dumps({"text": f"sample {i} " * 5}) + "\n" for i in range(20)))
        (imports / "bad.jsonl").write_text("{not json\n")
        for name in ("t.jsonl", "bad.jsonl"):
            job_id = app.post("/api/datasets/import", json={"path": name}).json()["data"]["job_id"]
            finished.append(app.wait_status(job_id, "completed", "failed", timeout=120))
        assert [job["status"] for job in finished] == ["completed", "failed", "completed", "failed"]
        dataset_id = finished[2]["target"]["id"]
        response = app.post(f"/api/datasets/{dataset_id}/tokenize", json={"tokenizer": "demo"})
        assert response.status_code == 202, response.text
        assert (
            app.wait_status(response.json()["data"]["job_id"], "completed", "failed", timeout=120)["status"]
            == "completed"
        )
        metrics.wait_for(lambda events: any(e["event"] == "system.metrics" for e in events), timeout=30)
    stored = _stored_events(app)
    for row in stored:
        try:
            event = msgspec.convert(msgspec.to_builtins(row), StreamEvent)
        except msgspec.ValidationError as exc:
            raise AssertionError(f"a stored {row.type} event does not fit its Struct: {exc}\n{row.data}") from exc
        assert isinstance(event.data, PAYLOADS[row.type])
    seen = {row.type for row in stored}
    assert {"job.updated", "job.progress", "dataset.progress", "dataset.updated"} <= seen, seen
    live = [m["payload"] for m in metrics.events if m["event"] == "system.metrics"]
    for payload in live:  # ephemeral: only ever on the stream, never stored
        assert isinstance(msgspec.convert(payload, StreamEvent).data, PAYLOADS["system.metrics"])
