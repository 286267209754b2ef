"""The local labeller: a model the appliance holds, answering the explainer's and the judge's chat messages
(appliance.pipeline.features.chat's ``Chat``) in the worker, on the accelerator, within the memory budget.

- **Which model**: any registered causal LM, ideally an instruction-tuned one (settings ``local_model_id``), else
  the SAE's own model. It is loaded by the worker's loader at the registered precision, or taken from the cache
  of models kept for probes (appliance.pipeline.models.cache) when it is there, and used under ``exclusive``.
- **The prompt**: the model's chat template (transformers' tokenizer from the model's folder, add_generation_prompt)
  when it has one; a plain transcript ("System: ...", "User: ...", "Assistant:") otherwise, whose reply is cut
  where the model starts a new turn. A prompt longer than ``PROMPT_TOKENS`` (or the model's context) loses its
  middle: the instructions at the head and the question with the generation prompt at the tail are kept.
- **The reply**: greedy, at most ``REPLY_TOKENS`` new tokens, stopped at the model's end-of-turn token. An empty
  reply is a ``ChatError("malformed")``: the feature gets that state, the run goes on.
- **Cancel**: every call runs under ``Interruptible(model, ctx.check)``, attached by the calling thread, so a
  cancel stops a generation before its next decoder block.
- **Memory**: the job admits ``estimate_local_chat`` before opening the chat (appliance.memory.estimates
  ``estimate_chat``: the weights, their load, the KV cache and the prompt pass of the longest prompt allowed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.jobs.context import JobContext
from appliance.memory.admission import Estimate
from appliance.memory.estimates import CHAT_PROMPT_TOKENS, CHAT_REPLY_TOKENS, estimate_chat
from appliance.pipeline.features.chat import Chat, ChatError

PROMPT_TOKENS = CHAT_PROMPT_TOKENS
REPLY_TOKENS = CHAT_REPLY_TOKENS
# The share of a cut prompt kept from its head (the instructions); the rest comes from its tail.
HEAD_SHARE = 0.25
TRANSCRIPT_ROLES = ("System", "User", "Assistant")


def estimate_local_chat(parameters: int, precision: str, model_path: str) -> Estimate:
    """What holding the model and answering one chat message at a time needs (the job admits it)."""
    return estimate_chat(model_path, precision, parameters)


@dataclass
class _Text:
    """The model's tokenizer, and how its messages become a prompt and its tokens a reply."""

    encode_ids: Any  # str -> list[int]
    decode_ids: Any  # list[int] -> str
    template: Any | None  # messages -> str (the chat template), None: a plain transcript
    end_ids: list[int]

    def prompt(self, messages: list[dict[str, str]]) -> list[int]:
        if self.template is not None:
            return list(self.encode_ids(self.template(messages)))
        turns = [f"{message['role'].capitalize()}: {message['content']}" for message in messages]
        return list(self.encode_ids("\n\n".join([*turns, "Assistant:"])))

    def reply(self, ids: list[int]) -> str:
        text = str(self.decode_ids(ids))
        if self.template is None:  # a base model goes on with the next turn of the transcript
            for role in TRANSCRIPT_ROLES:
                text = text.split(f"\n{role}:")[0]
        return text.strip()


def _text(model_path: str, tokenizer: str, data_dir: Path, model: Any) -> _Text:
    """transformers' tokenizer from the model's folder (it has the chat template), else the appliance's own
    tokenizer by id (the demo tokenizer has no folder of its own)."""
    from transformers import AutoTokenizer

    eos = model.generation_config.eos_token_id if model.generation_config is not None else None
    eos = eos if eos is not None else model.config.eos_token_id
    end_ids = [eos] if isinstance(eos, int) else list(eos or [])
    try:
        loaded = AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError, TypeError):
        loaded = None
    if loaded is None:
        from appliance.contracts.tokenization import load_tokenizer

        plain = load_tokenizer(tokenizer, data_dir)
        return _Text(
            lambda text: plain.encode(text, add_special_tokens=False).ids,
            lambda ids: plain.decode(ids, skip_special_tokens=True),
            None,
            end_ids,
        )
    template = None
    if getattr(loaded, "chat_template", None):

        def template(messages: list[dict[str, str]]) -> str:
            return str(loaded.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))

    if loaded.eos_token_id is not None and loaded.eos_token_id not in end_ids:
        end_ids.append(loaded.eos_token_id)
    return _Text(
        lambda text: loaded(text, add_special_tokens=False, verbose=False)["input_ids"],
        lambda ids: loaded.decode(ids, skip_special_tokens=True),
        template,
        end_ids,
    )


def _context(model: Any) -> int:
    """Positions the model can attend to, bounded by the longest prompt and reply the estimate allows."""
    config = getattr(model.config, "text_config", None) or model.config
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    allowed = PROMPT_TOKENS + REPLY_TOKENS
    return min(int(positions), allowed) if isinstance(positions, int) and positions > 0 else allowed


def fit(ids: list[int], room: int) -> list[int]:
    """``ids`` cut to ``room`` tokens by taking out their middle (the head keeps the instructions, the tail the
    question and the generation prompt)."""
    if len(ids) <= room:
        return ids
    head = int(room * HEAD_SHARE)
    return ids[:head] + ids[len(ids) - (room - head) :]


@contextmanager
def open_local_chat(ctx: JobContext, model_path: str, precision: str, tokenizer: str) -> Iterator[Chat]:
    """A ``Chat`` answered by the model at ``model_path`` (``tokenizer``: its tokenizer's id, a model id or
    "demo", for a folder without one) until the block ends. Call it inside the job's admission of
    ``estimate_local_chat``."""
    import torch

    from appliance.pipeline.models.cache import exclusive, model_key
    from appliance.pipeline.models.interrupt import Interruptible
    from appliance.pipeline.models.loading import load

    ctx.check()
    model = ctx.memory.models.get(model_key(model_path, precision))
    if model is None:  # not kept beyond the job: its admission covers it while the job runs
        model = load(model_path, precision)
    text = _text(model_path, tokenizer, ctx.layout.root, model)
    context = _context(model)
    device = next(model.parameters()).device
    pad = model.generation_config.pad_token_id if model.generation_config is not None else None
    pad = pad if pad is not None else (text.end_ids[0] if text.end_ids else 0)

    def chat(messages: list[dict[str, str]], max_tokens: int) -> str:
        ctx.check()
        new = max(1, min(max_tokens, REPLY_TOKENS, context // 2))
        ids = fit(text.prompt(messages), context - new)
        inputs = torch.tensor([ids], device=device)
        with torch.inference_mode(), exclusive(model), Interruptible(model, ctx.check):
            out = model.generate(
                inputs,
                attention_mask=torch.ones_like(inputs),
                max_new_tokens=new,
                do_sample=False,
                eos_token_id=text.end_ids or None,
                pad_token_id=pad,
            )
        reply = text.reply(out[0, len(ids) :].tolist())
        if not reply:
            raise ChatError("malformed", "The local model answered with no text")
        return reply

    yield chat
