"""Local dataset import through the real API and worker: every format, browsing and full-text search,
statistics, bad files (4xx or a job error, never a partial dataset), delete."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support import Appliance
from tests.test_api_contract import assert_error

UPLOAD_LIMIT = 300_000
TEXTS = [
    f"The {'cat' if i % 3 == 0 else 'dog'} number {i} sat on the mat." + " extra words" * (i % 5) for i in range(57)
]


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Appliance:
    from tests.conftest import _appliance

    app = _appliance(tmp_path_factory.mktemp("datasets"), {"MISTUDIO_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT)})
    app.start_api()
    app.start_worker()
    yield app
    app.stop()


def _imports(app: Appliance) -> Path:
    folder = app.data_dir / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _import(app: Appliance, **body) -> dict:
    response = app.post("/api/datasets/import", json=body)
    assert response.status_code == 202, response.text
    return app.wait_status(response.json()["data"]["job_id"], "completed", "failed", timeout=120)


def _dataset_of(app: Appliance, job: dict) -> dict:
    response = app.get(f"/api/datasets/{job['target']['id']}")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_each_format_imports_with_statistics(app: Appliance) -> None:
    folder = _imports(app)
    (folder / "a.jsonl").write_text("".join(json.dumps({"text": t, "other": 1}) + "\n" for t in TEXTS))
    (folder / "b.csv").write_text("id,content\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(TEXTS)))
    pq.write_table(pa.Table.from_pylist([{"body": t} for t in TEXTS]), folder / "c.parquet")
    (folder / "d.txt").write_text("\n".join(TEXTS) + "\n")
    (folder / "e.txt").write_text("first paragraph\nstill first\n\nsecond one\n\n\nthird\n")
    cases = [
        ({"path": "a.jsonl"}, len(TEXTS)),
        ({"path": "b.csv", "text_column": "content"}, len(TEXTS)),
        ({"path": "c.parquet", "text_column": "body"}, len(TEXTS)),
        ({"path": "d.txt"}, len(TEXTS)),
        ({"path": "e.txt", "txt_mode": "paragraph"}, 3),
    ]
    for body, count in cases:
        job = _import(app, **body)
        assert job["status"] == "completed", (body, job["error"])
        dataset = _dataset_of(app, job)
        assert dataset["status"] == "ready" and dataset["num_samples"] == count, body
        stats = dataset["stats"]
        if count == len(TEXTS):
            lengths = [len(t) for t in TEXTS]
            assert stats["min_length"] == min(lengths) and stats["max_length"] == max(lengths)
            assert stats["avg_length"] == round(sum(lengths) / len(lengths), 1)
            assert sum(b["count"] for b in stats["length_histogram"]) == count
            assert stats["splits"] == {"train": count}
        assert dataset["size_bytes"] > 0
        assert (app.data_dir / "datasets" / dataset["id"] / "arrow").is_dir()
    paragraphs = app.get(f"/api/datasets/{dataset['id']}/samples").json()["data"]
    assert [s["text"] for s in paragraphs] == ["first paragraph\nstill first", "second one", "third"]


def test_browse_and_search_samples(app: Appliance) -> None:
    (_imports(app) / "s.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    dataset = _dataset_of(app, _import(app, path="s.jsonl"))
    url = f"/api/datasets/{dataset['id']}/samples"
    first = app.get(url, params={"page": 1, "limit": 10}).json()
    assert [s["index"] for s in first["data"]] == list(range(10))
    assert first["data"][0]["text"] == TEXTS[0] and first["data"][0]["length"] == len(TEXTS[0])
    assert first["meta"]["pagination"] == {"page": 1, "limit": 10, "total": 57, "has_next": True, "has_prev": False}
    last = app.get(url, params={"page": 6, "limit": 10}).json()
    assert len(last["data"]) == 7 and last["meta"]["pagination"]["has_next"] is False
    cats = app.get(url, params={"search": "cat", "limit": 200}).json()
    assert cats["meta"]["pagination"]["total"] == sum("cat" in t for t in TEXTS)
    assert all("cat" in s["text"] for s in cats["data"])
    # Every word is required and matches as a prefix: "4" finds 4 and 40-49.
    both = app.get(url, params={"search": "dog number 4", "limit": 200}).json()["data"]
    words = [t.replace(".", " ").split() for t in TEXTS]
    assert [s["index"] for s in both] == [
        i for i, w in enumerate(words) if "dog" in w and "number" in w and any(x.startswith("4") for x in w)
    ]
    assert both  # the expectation is not vacuous
    for odd in ('"', "cat OR", "NEAR(", "*", "a'b", "ünïcode"):
        assert app.get(url, params={"search": odd}).status_code == 200
    assert app.get(url, params={"split": "test"}).json()["meta"]["pagination"]["total"] == 0


def test_bad_inputs_are_rejected_or_fail_cleanly(app: Appliance) -> None:
    folder = _imports(app)
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02binary" * 100)
    (folder / "fake.parquet").write_text("not parquet at all")
    (folder / "bad.jsonl").write_text('{"text": "ok"}\n{broken json\n')
    (folder / "cols.jsonl").write_text('{"body": "x"}\n')
    (folder / "table.xlsx").write_bytes(b"PK\x03\x04")
    assert_error(app.post("/api/datasets/import", json={"path": "binary.txt"}), 400, "VALIDATION_ERROR")
    assert_error(app.post("/api/datasets/import", json={"path": "fake.parquet"}), 400, "VALIDATION_ERROR")
    assert_error(app.post("/api/datasets/import", json={"path": "table.xlsx"}), 400, "VALIDATION_ERROR")
    assert_error(app.post("/api/datasets/import", json={"path": "missing.jsonl"}), 400, "VALIDATION_ERROR")
    for traversal in ("../mistudio.db", "/etc/passwd", "../../../../etc/passwd"):
        assert_error(app.post("/api/datasets/import", json={"path": traversal}), 400, "VALIDATION_ERROR")
    before = {d["id"] for d in app.get("/api/datasets").json()["data"]}
    for body, words in (({"path": "bad.jsonl"}, "Could not read"), ({"path": "cols.jsonl"}, "No column 'text'")):
        job = _import(app, **body)
        assert job["status"] == "failed" and job["error"]["code"] == "VALIDATION_ERROR"
        assert words in job["error"]["message"]
        dataset_id = job["target"]["id"]
        assert app.get(f"/api/datasets/{dataset_id}").status_code == 404  # no partial dataset left
        assert not (app.data_dir / "datasets" / dataset_id).exists()
    assert {d["id"] for d in app.get("/api/datasets").json()["data"]} == before


def test_point4_rows_without_text_are_skipped_and_counted(app: Appliance) -> None:
    """A row with no text in the column (another field named, a null, an empty CSV cell) or only
    whitespace is not a sample: every format leaves it out, and the job's result and the dataset's
    statistics count it; a file where no row has text is refused."""
    folder = _imports(app)
    lines = [{"text": "kept one"}, {"txt": "a typo"}, {"text": None}, {"text": "  "}, {"text": "kept two"}]
    (folder / "typo.jsonl").write_text("".join(json.dumps(row) + "\n" for row in lines))
    (folder / "gaps.csv").write_text('id,content\n1,kept one\n2,\n3," "\n4,kept two\n')
    pq.write_table(pa.Table.from_pylist([{"body": "kept one"}, {"body": None}, {"body": ""}]), folder / "gaps.parquet")
    cases = [
        ({"path": "typo.jsonl"}, ["kept one", "kept two"], {"missing": 2, "blank": 1}),
        ({"path": "gaps.csv", "text_column": "content"}, ["kept one", "kept two"], {"missing": 1, "blank": 1}),
        ({"path": "gaps.parquet", "text_column": "body"}, ["kept one"], {"missing": 1, "blank": 1}),
    ]
    for body, texts, skipped in cases:
        job = _import(app, **body)
        assert job["status"] == "completed", (body, job["error"])
        assert job["result"]["skipped_rows"] == skipped and job["result"]["samples"] == len(texts), job
        dataset = _dataset_of(app, job)
        assert dataset["num_samples"] == len(texts) and dataset["stats"]["skipped_rows"] == skipped, dataset
        assert dataset["stats"]["min_length"] > 0
        samples = app.get(f"/api/datasets/{dataset['id']}/samples").json()["data"]
        assert [s["text"] for s in samples] == texts and [s["index"] for s in samples] == list(range(len(texts)))

    # No row has text in the column: refused, naming why, and nothing is left behind.
    (folder / "nulls.jsonl").write_text('{"text": null, "body": "x"}\n{"body": "y", "text": " "}\n')
    job = _import(app, path="nulls.jsonl")
    assert job["status"] == "failed" and job["error"]["code"] == "VALIDATION_ERROR", job
    assert job["error"]["message"].startswith("No row has text in column 'text' (2 rows: 1 without text, 1 blank)")
    assert app.get(f"/api/datasets/{job['target']['id']}").status_code == 404


def test_delete_removes_files_and_samples(app: Appliance) -> None:
    (_imports(app) / "del.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS[:5]))
    dataset = _dataset_of(app, _import(app, path="del.jsonl"))
    assert dataset["actions"] == ["tokenize", "delete"]  # what the UI may offer a ready dataset
    with app.client() as client:
        assert client.delete(f"/api/datasets/{dataset['id']}").status_code == 200
        assert_error(client.get(f"/api/datasets/{dataset['id']}"), 404, "NOT_FOUND")
        assert_error(client.delete(f"/api/datasets/{dataset['id']}"), 404, "NOT_FOUND")
        assert_error(client.get("/api/datasets/not-an-id"), 400, "VALIDATION_ERROR")
    assert not (app.data_dir / "datasets" / dataset["id"]).exists()
    import sqlite3

    conn = sqlite3.connect(app.data_dir / "mistudio.db")
    assert (
        conn.execute("SELECT count(*) FROM dataset_samples WHERE dataset_id = ?", (dataset["id"],)).fetchone()[0] == 0
    )
    conn.close()


def _upload(app: Appliance, filename: str, content: bytes, **fields) -> "httpx.Response":
    return app.post("/api/datasets/upload", files={"file": (filename, content)}, data=fields)


def test_upload_each_format_streams_to_disk_and_is_removed_after_ingest(app: Appliance) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{"body": t} for t in TEXTS]), buffer)
    cases = [
        ("u.jsonl", "".join(json.dumps({"text": t}) + "\n" for t in TEXTS).encode(), {}),
        (
            "u.csv",
            ("id,content\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(TEXTS))).encode(),
            {"text_column": "content"},
        ),
        ("u.parquet", buffer.getvalue(), {"text_column": "body", "name": "My parquet"}),
        ("../../evil name.txt", "\n".join(TEXTS).encode(), {}),
    ]
    for name, content, fields in cases:
        response = _upload(app, name, content, **fields)
        assert response.status_code == 202, response.text
        job = app.wait_status(response.json()["data"]["job_id"], "completed", "failed", timeout=120)
        assert job["status"] == "completed", (name, job["error"])
        dataset = _dataset_of(app, job)
        assert dataset["source"] == "upload" and dataset["num_samples"] == len(TEXTS), name
        assert dataset["name"] == fields.get("name", Path(name).stem.replace(" ", "_"))
        texts = [
            s["text"] for s in app.get(f"/api/datasets/{dataset['id']}/samples", params={"limit": 200}).json()["data"]
        ]
        assert texts == TEXTS
        assert not (app.data_dir / "uploads" / dataset["id"]).exists()  # the Arrow copy replaced it
    assert not (app.data_dir.parent / "evil name.txt").exists()


def test_bad_uploads_get_clear_errors_and_leave_nothing(app: Appliance) -> None:
    before = {d["id"] for d in app.get("/api/datasets").json()["data"]}
    assert_error(_upload(app, "b.txt", b"\x00\x01binary" * 50), 400, "VALIDATION_ERROR")
    assert_error(_upload(app, "b.parquet", b"not parquet"), 400, "VALIDATION_ERROR")
    assert_error(_upload(app, "b.xlsx", b"PK\x03\x04"), 400, "VALIDATION_ERROR")
    assert_error(_upload(app, "empty.jsonl", b""), 400, "VALIDATION_ERROR")
    assert_error(_upload(app, "b.jsonl", b'{"text": "x"}\n', txt_mode="sideways"), 400, "VALIDATION_ERROR")
    # Not a file: the endpoint takes multipart/form-data only (a multipart body without a file is a 400).
    assert_error(app.post("/api/datasets/upload", json={"path": "x"}), 415, "UNSUPPORTED_MEDIA_TYPE")
    assert_error(app.post("/api/datasets/upload", data={"text_column": "x"}), 415, "UNSUPPORTED_MEDIA_TYPE")
    assert_error(app.post("/api/datasets/upload", files={"text_column": (None, "x")}), 400, "VALIDATION_ERROR")
    # Over the limit: refused from Content-Length before reading, and also when counted while streaming.
    big = (json.dumps({"text": "y" * 1000}) + "\n").encode() * (UPLOAD_LIMIT // 1000 + 10)
    assert_error(_upload(app, "big.jsonl", big), 413, "PAYLOAD_TOO_LARGE")

    def chunked():
        yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n'
        for _ in range(UPLOAD_LIMIT // 50_000 + 2):
            yield b"z" * 50_000
        yield b"\r\n--xyz--\r\n"

    with httpx.Client(base_url=app.url, timeout=30) as client:
        response = client.post(
            "/api/datasets/upload", content=chunked(), headers={"content-type": "multipart/form-data; boundary=xyz"}
        )
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    # Parsed content errors end the job and take the dataset with them.
    for name, content, fields, words in (
        ("m.jsonl", b'{"text": "ok"}\n{broken\n', {}, "Could not read"),
        ("c.jsonl", b'{"body": "x"}\n', {}, "No column 'text'"),
    ):
        response = _upload(app, name, content, **fields)
        assert response.status_code == 202, response.text
        job = app.wait_status(response.json()["data"]["job_id"], "completed", "failed", timeout=120)
        assert job["status"] == "failed" and words in job["error"]["message"]
        assert app.get(f"/api/datasets/{job['target']['id']}").status_code == 404
    assert {d["id"] for d in app.get("/api/datasets").json()["data"]} == before
    uploads = app.data_dir / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []


def test_search_counts_stop_at_a_cap_and_say_so(app: Appliance) -> None:
    (_imports(app) / "many.txt").write_text("".join(f"cat number {i}\n" for i in range(1500)))
    dataset = _dataset_of(app, _import(app, path="many.txt"))
    url = f"/api/datasets/{dataset['id']}/samples"
    common = app.get(url, params={"search": "cat", "limit": 10}).json()["meta"]["pagination"]
    assert common == {"page": 1, "limit": 10, "total": 1000, "has_next": True, "has_prev": False, "total_exact": False}
    deep = app.get(url, params={"search": "cat", "limit": 10, "page": 150}).json()
    assert [s["index"] for s in deep["data"]] == list(range(1490, 1500))
    assert deep["meta"]["pagination"]["has_next"] is False and deep["meta"]["pagination"]["total"] == 1500
    rare = app.get(url, params={"search": "number 149"}).json()["meta"]["pagination"]
    assert rare["total"] == 11 and "total_exact" not in rare  # 149 and 1490-1499


def test_dataset_actions_follow_its_status() -> None:
    from appliance.services.datasets import dataset_actions, tokenization_actions

    assert dataset_actions("ready") == ["tokenize", "delete"]
    assert dataset_actions("error") == ["delete"]
    assert dataset_actions("ingesting") == dataset_actions("downloading") == ["cancel"]  # through its job
    assert tokenization_actions("tokenizing") == ["cancel"]
    assert tokenization_actions("ready") == tokenization_actions("error") == ["tokenize"]
