"""The local labeller (appliance.pipeline.features.local_chat): a model the appliance holds answers the explainer's
and the judges' chat messages with its chat template, within its context, cancellable inside a generation, in
the memory its estimate plans; and an explain job run by a registered instruct model through the API.

The instruct model is appliance.demo_kit.instruct's: ChatML tokens and template on the demo tokenizer, a Llama
with random weights (it answers garbage, which is what the job must survive).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

MB = 2**20
SYSTEM = "You explain features of a sparse autoencoder."


class FakeCtx:
    """What the chat uses of a job's context: its controls, the model cache, the data dir."""

    def __init__(self, root: Path) -> None:
        from appliance.memory.admission import MemoryManager

        self.memory = MemoryManager(physical_bytes=8192 * MB, fraction=0.85)
        self.layout = type("Layout", (), {"root": root})()
        self.control: str | None = None

    def check(self) -> None:
        from appliance.jobs.context import JobInterrupted

        if self.control is not None:
            raise JobInterrupted(self.control)


@pytest.fixture(scope="module")
def instruct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from appliance.demo_kit.instruct import build_tiny_instruct

    return build_tiny_instruct(tmp_path_factory.mktemp("instruct") / "tiny-instruct")


def cached(ctx: FakeCtx, path: Path, precision: str = "fp32") -> Any:
    """The model loaded by the worker's loader and kept in the cache of models, where the chat takes it from."""
    from appliance.pipeline.models.cache import model_key
    from appliance.pipeline.models.loading import load

    model = load(path, precision)
    ctx.memory.models.put(model_key(str(path), precision), model, 0)
    return model


def spy_generate(model: Any, reply: Callable[[list[int]], list[int]] | None = None) -> list[list[int]]:
    """Record the prompt of every generation; ``reply`` (prompt ids -> new ids) replaces the model's answer."""
    import torch

    prompts: list[list[int]] = []
    real = model.generate

    def generate(inputs: Any, **kwargs: Any) -> Any:
        prompts.append(inputs[0].tolist())
        if reply is None:
            return real(inputs, **kwargs)
        return torch.tensor([inputs[0].tolist() + reply(inputs[0].tolist())])

    model.generate = generate
    return prompts


def test_the_chat_template_frames_the_prompt_and_the_reply_stops_at_the_end_of_turn(
    instruct: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    from appliance.demo_kit.instruct import TURN_END, TURN_START
    from appliance.pipeline.features.chat import ChatError
    from appliance.pipeline.features.local_chat import open_local_chat

    ctx = FakeCtx(tmp_path)
    model = cached(ctx, instruct)
    prompts = spy_generate(model)
    tokenizer = AutoTokenizer.from_pretrained(str(instruct))
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "The «cat» sat."}]
    with open_local_chat(ctx, str(instruct), "fp32", "unused") as chat:
        try:
            reply = chat(messages, 12)
        except ChatError as error:  # random weights may end the turn at once: a clear state, not a crash
            assert error.state == "malformed", error.message
            reply = None
    shown = tokenizer.decode(prompts[0])
    assert shown == (
        f"{TURN_START}system\n{SYSTEM}{TURN_END}\n{TURN_START}user\nThe «cat» sat.{TURN_END}\n{TURN_START}assistant\n"
    )
    assert reply is None or (reply and TURN_END not in reply and TURN_START not in reply)

    end = tokenizer.convert_tokens_to_ids(TURN_END)
    said = tokenizer("A label", add_special_tokens=False)["input_ids"]
    spy_generate(model, lambda _: [*said, end])
    with open_local_chat(ctx, str(instruct), "fp32", "unused") as chat:
        assert chat(messages, 12) == "A label"
    spy_generate(model, lambda _: [end])
    with open_local_chat(ctx, str(instruct), "fp32", "unused") as chat, pytest.raises(ChatError) as empty:
        chat(messages, 12)
    assert empty.value.state == "malformed"


def test_a_model_without_a_template_reads_a_transcript_cut_to_its_context(tmp_path: Path) -> None:
    """The demo model (256 positions, no chat template): a long prompt loses its middle, keeping the instructions
    and the generation prompt; the reply ends where the model starts the next turn."""
    from tokenizers import Tokenizer

    from appliance.demo_kit import MODEL_DIR, TOKENIZER_FILE
    from appliance.pipeline.features.local_chat import open_local_chat

    ctx = FakeCtx(tmp_path)
    model = cached(ctx, MODEL_DIR)
    plain = Tokenizer.from_file(str(TOKENIZER_FILE))
    continuation = plain.encode(" sockets and files\nUser: and more", add_special_tokens=False).ids
    prompts = spy_generate(model, lambda _: continuation)
    long = " ".join(f"example {i}: the «value» is read." for i in range(200))
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": long + " What do they share?"}]
    with open_local_chat(ctx, str(MODEL_DIR), "fp32", "demo") as chat:
        assert chat(messages, 200) == "sockets and files"
    prompt = plain.decode(prompts[0])
    assert len(prompts[0]) + 128 <= 256  # the reply's room (half the context at most) is kept free
    assert prompt.startswith(f"System: {SYSTEM}\n\nUser: example 0")
    assert prompt.endswith("What do they share?\n\nAssistant:")


def test_a_cancel_stops_a_generation_before_the_next_block(instruct: Path, tmp_path: Path) -> None:
    """Cancel asked while the third new token is computed: nothing runs after the block it was asked in."""
    from appliance.jobs.context import JobInterrupted
    from appliance.pipeline.features.local_chat import open_local_chat
    from appliance.pipeline.models.architecture import find_layers

    ctx = FakeCtx(tmp_path)
    model = cached(ctx, instruct)
    blocks: list[int] = []
    asked_at: list[int] = []

    def count(_module: Any, args: Any) -> None:
        blocks.append(args[0].shape[1])  # the positions this forward computes: the prompt, then 1 per token
        if blocks.count(1) == 2 * 1 + 1 and not asked_at:  # 2 blocks a token: the first block of the 3rd token
            ctx.control, asked_at[:] = "cancel", [len(blocks)]

    handles = [block.register_forward_pre_hook(count) for block in find_layers(model)[1]]
    messages = [{"role": "user", "content": "Explain «this»."}]
    try:
        with open_local_chat(ctx, str(instruct), "fp32", "unused") as chat, pytest.raises(JobInterrupted):
            chat(messages, 64)
    finally:
        for handle in handles:
            handle.remove()
    # The counting hook runs before the appliance's check on the same block, which raises: no block runs after.
    assert asked_at and len(blocks) == asked_at[0]
    with pytest.raises(JobInterrupted), open_local_chat(ctx, str(instruct), "fp32", "unused") as chat:
        chat(messages, 64)  # a cancelled job asks nothing more


def test_the_estimate_covers_a_generation_over_the_longest_prompt(tmp_path: Path) -> None:
    """A 4 x 512 Llama (grouped-query attention, a 1,408-wide MLP) answering a prompt that fills what the
    labeller allows: the worker's growth while it generates stays within the estimate's generation parts."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from appliance.demo_kit.instruct import build_tiny_instruct
    from appliance.memory.estimates import estimate_chat, minimum
    from appliance.memory.usage import JobMemory, rss_bytes
    from appliance.pipeline.features.local_chat import PROMPT_TOKENS, open_local_chat

    folder = build_tiny_instruct(tmp_path / "small", layers=4, width=512, heads=8)
    config = LlamaConfig.from_pretrained(str(folder))
    config.intermediate_size = 1408
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    estimate = estimate_chat(str(folder), "fp32")
    generation = sum(size for name, size in estimate.parts.items() if name.startswith("generation"))
    ctx = FakeCtx(tmp_path)
    cached(ctx, folder)
    words = " ".join(f"w{i}" for i in range(2 * PROMPT_TOKENS))  # more than the prompt may hold
    with open_local_chat(ctx, str(folder), "fp32", "unused") as chat:
        before = rss_bytes()
        with JobMemory() as usage:
            try:
                chat([{"role": "user", "content": words}], 16)
            except Exception as error:  # noqa: BLE001 - an empty answer is fine here: the memory is the point
                assert getattr(error, "state", None) == "malformed", error
        grown = usage.peak() - before
    assert 0 < grown <= generation, (grown / MB, estimate.describe())
    # The API's check of a run that can never fit plans the same way; an HTTP endpoint's run needs no model.
    local = {"model_id": "m_x", "model_path": str(folder), "precision": "fp32", "tokenizer": "m_x"}
    assert minimum("features.explain", {"local": local}) == estimate
    assert minimum("features.explain", {"local": None}) is None


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.support import started_demo

    yield from started_demo(tmp_path_factory, "local-chat", HF_HUB_OFFLINE="1", MISTUDIO_MEMORY_TOTAL_MB="8192")


def test_a_registered_instruct_model_explains_and_judges_within_its_memory_plan(app: Any, instruct: Path) -> None:
    """The tiny instruct model imported like any model, chosen as the local labeller: an explain job over three
    features completes on the worker, each feature ends in a clear state under the model's explainer key (garbage
    answers are "malformed", never a crash), and the job's measured peak stays within its plan (8 GB board)."""
    import shutil

    from tests.support import demo_sae

    trained, _ = demo_sae(
        app,
        1,
        "topk",
        max_samples=200,
        seed=1,
        extraction={"eval_samples": 200, "top_k_examples": 10},
        k=8,
        total_steps=60,
        log_every=30,
    )
    tid = trained["target"]["id"]
    shutil.copytree(instruct, app.data_dir / "imports" / "tiny-instruct")
    imported = app.completed(app.post("/api/models/import", json={"path": "tiny-instruct", "precision": "fp32"}))
    model_id = imported["target"]["id"]
    settings = {"provider": "local", "local_model_id": model_id, "examples_per_class": 5}
    assert app.client().put("/api/settings/labeling", json=settings).status_code == 200
    rows = app.get(f"/api/training/{tid}/features", params={"sort_by": "frequency", "limit": 3}).json()["data"]
    chosen = [row["index"] for row in rows]
    job = app.finished(app.post(f"/api/training/{tid}/features/explain", json={"features": chosen}), timeout=300)
    assert job["status"] == "completed", job["error"]
    result = job["result"]
    assert result["requested"] == 3 and result["explainer"] == f"local:{model_id}" and result["calls"] >= 3
    for index in chosen:
        explanations = app.get(f"/api/training/{tid}/features/{index}/explanations").json()["data"]
        assert [e["explainer"] for e in explanations] == [f"local:{model_id}"], explanations
        assert explanations[0]["state"] in ("scored", "explained", "malformed"), explanations[0]
    planned, peak = job["memory_planned_mb"], job["memory_peak_mb"]
    assert planned is not None and peak is not None and peak <= planned, (planned, peak)
