"""Tokenization through the API and the worker: ids on disk equal the tokenizer's own output, the
statistics equal a direct count, settings are kept per dataset+tokenizer; the preview endpoint."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest
from datasets import Dataset
from tokenizers import Tokenizer

from appliance.demo_kit import TOKENIZER_FILE
from tests.support import Appliance
from tests.test_api_contract import assert_error
from tests.test_datasets_import import TEXTS

TOK = Tokenizer.from_file(str(TOKENIZER_FILE))


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[Appliance]:
    from tests.conftest import _appliance

    app = _appliance(tmp_path_factory.mktemp("tokenize"))
    app.start_api()
    app.start_worker()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def dataset(app: Appliance) -> dict:
    folder = app.data_dir / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "t.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    response = app.post("/api/datasets/import", json={"path": "t.jsonl"})
    job = app.wait_status(response.json()["data"]["job_id"], "completed", "failed", timeout=120)
    assert job["status"] == "completed", job["error"]
    return app.get(f"/api/datasets/{job['target']['id']}").json()["data"]


def _tokenize(app: Appliance, dataset_id: str, **settings) -> tuple[dict, dict]:
    response = app.post(f"/api/datasets/{dataset_id}/tokenize", json=settings)
    assert response.status_code == 202, response.text
    job = app.wait_status(response.json()["data"]["job_id"], "completed", "failed", timeout=120)
    detail = app.get(f"/api/datasets/{dataset_id}").json()["data"]
    return job, detail


def test_tokenized_ids_and_statistics_match_the_tokenizer(app: Appliance, dataset: dict) -> None:
    job, detail = _tokenize(app, dataset["id"])  # the form's defaults: 512, pad to max length, specials, mask
    assert job["status"] == "completed", job["error"]
    (tokenized,) = detail["tokenizations"]
    assert tokenized["status"] == "ready" and tokenized["tokenizer"] == "demo"
    assert tokenized["settings"] == {
        "tokenizer": "demo",
        "max_length": 512,
        "padding": "max_length",
        "truncation": "longest_first",
        "add_special_tokens": True,
        "return_attention_mask": True,
    }
    expected = [TOK.encode(t).ids for t in TEXTS]
    stats = tokenized["stats"]
    assert stats["samples"] == len(TEXTS) and stats["total_tokens"] == sum(map(len, expected))
    assert stats["min_tokens"] == min(map(len, expected)) and stats["max_tokens"] == max(map(len, expected))
    counts = Counter(i for ids in expected for i in ids)
    assert stats["unique_tokens"] == len(counts) and stats["vocab_size"] == TOK.get_vocab_size()
    assert [(t["id"], t["count"]) for t in stats["top_tokens"][:5]] == sorted(
        counts.items(), key=lambda kv: (-kv[1], kv[0])
    )[:5]
    assert sum(b["count"] for b in stats["length_histogram"]) == len(TEXTS)
    assert stats["truncated_samples"] == 0

    # On disk: Arrow, memory-mapped, padded to 512 with an attention mask over the real tokens.
    data = Dataset.from_file(str(app.data_dir / "datasets" / dataset["id"] / "tokenized" / "demo" / "data.arrow"))
    assert len(data) == len(TEXTS)
    pad = TOK.token_to_id("<|endoftext|>")
    for row, ids in zip(data, expected):
        assert len(row["input_ids"]) == 512 and row["input_ids"][: len(ids)] == ids
        assert set(row["input_ids"][len(ids) :]) <= {pad} and row["length"] == len(ids)
        assert row["attention_mask"] == [1] * len(ids) + [0] * (512 - len(ids))


def test_settings_are_kept_per_tokenizer_and_truncation_counts(app: Appliance, dataset: dict) -> None:
    job, detail = _tokenize(
        app, dataset["id"], max_length=8, padding="do_not_pad", add_special_tokens=False, return_attention_mask=False
    )
    assert job["status"] == "completed", job["error"]
    (tokenized,) = detail["tokenizations"]  # replaced, not added
    assert tokenized["settings"]["max_length"] == 8 and tokenized["settings"]["add_special_tokens"] is False
    plain = [TOK.encode(t, add_special_tokens=False).ids for t in TEXTS]
    assert tokenized["stats"]["truncated_samples"] == sum(len(ids) > 8 for ids in plain)
    assert tokenized["stats"]["total_tokens"] == sum(min(8, len(ids)) for ids in plain)
    data = Dataset.from_file(str(app.data_dir / "datasets" / dataset["id"] / "tokenized" / "demo" / "data.arrow"))
    assert data.column_names == ["input_ids", "length"]
    assert [r["input_ids"] for r in data] == [ids[:8] for ids in plain]
    assert not (app.data_dir / "datasets" / dataset["id"] / "tokenized" / "demo.partial").exists()


def test_bad_tokenize_requests(app: Appliance, dataset: dict) -> None:
    url = f"/api/datasets/{dataset['id']}/tokenize"
    assert_error(app.post(url, json={"truncation": "only_second"}), 400, "VALIDATION_ERROR")
    assert_error(app.post(url, json={"max_length": 0}), 400, "VALIDATION_ERROR")
    assert_error(app.post(url, json={"padding": "sideways"}), 400, "VALIDATION_ERROR")
    assert_error(app.post(url, json={"tokenizer": "gpt-7"}), 404, "NOT_FOUND")
    assert_error(app.post(url, json={"tokenizer": "m_../../etc"}), 404, "NOT_FOUND")
    assert_error(app.post("/api/datasets/ds_doesnotexist1/tokenize", json={}), 404, "NOT_FOUND")


def test_preview_gives_pieces_and_ids(app: Appliance) -> None:
    (demo,) = app.get("/api/tokenizers").json()["data"]
    assert demo["id"] == "demo" and demo["vocab_size"] == TOK.get_vocab_size()
    text = "Return the socket object for this connection — héllo."
    response = app.post("/api/tokenize/preview", json={"text": text})
    assert response.status_code == 200, response.text
    preview = response.json()["data"]
    assert [t["id"] for t in preview["tokens"]] == TOK.encode(text).ids and preview["count"] == len(preview["tokens"])
    assert preview["tokens"][0] == {"id": TOK.token_to_id("<|endoftext|>"), "text": "<|endoftext|>", "special": True}
    assert "".join(t["text"] for t in preview["tokens"][1:]) == text  # the chips spell the text
    short = app.post("/api/tokenize/preview", json={"text": text, "max_length": 3, "add_special_tokens": False})
    assert short.json()["data"]["count"] == 3 and short.json()["data"]["truncated"] is True
    assert_error(app.post("/api/tokenize/preview", json={"text": "x", "tokenizer": "nope"}), 404, "NOT_FOUND")
    assert_error(app.post("/api/tokenize/preview", json={}), 400, "VALIDATION_ERROR")


def test_truncation_is_detected_without_the_overflow_list(tmp_path) -> None:
    """tokenizers 0.23.1-0.23.2 leave ``Encoding.overflowing`` empty when truncating (huggingface/
    tokenizers#2091): the count must not depend on it."""
    from appliance.contracts.tokenization import TokenizeSettings, load_tokenizer, truncated

    class NoOverflow:  # an encoding as those versions return it
        def __init__(self, encoding) -> None:
            self.ids, self.attention_mask, self.overflowing = encoding.ids, encoding.attention_mask, []

    texts = ["one two three four five six seven", "one two", "one two three"]
    for add_special_tokens in (True, False):
        settings = TokenizeSettings(max_length=3, padding="max_length", add_special_tokens=add_special_tokens)
        encodings = load_tokenizer("demo", tmp_path, settings).encode_batch(
            texts, add_special_tokens=add_special_tokens
        )
        expected = [len(TOK.encode(t, add_special_tokens=add_special_tokens).ids) > 3 for t in texts]
        assert expected == [True, False, add_special_tokens]
        assert truncated(encodings, texts, settings, tmp_path) == expected
        assert truncated([NoOverflow(e) for e in encodings], texts, settings, tmp_path) == expected
    off = TokenizeSettings(max_length=3, truncation="do_not_truncate", padding="do_not_pad")
    assert truncated(load_tokenizer("demo", tmp_path, off).encode_batch(texts), texts, off, tmp_path) == [False] * 3
