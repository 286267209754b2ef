"""Rebuild the demo kit's files from the demo corpus:
``python -m appliance.demo_kit.build tokenizer`` then ``python -m appliance.demo_kit.build model``.

The tokenizer is a byte-level BPE (GPT-2 style: any text encodes, no unknown tokens) with a small
vocabulary sized for the demo corpus and a tiny model. Training is deterministic for a given corpus.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TypedDict

from appliance.demo_kit import MODEL_DIR, TOKENIZER_FILE

VOCAB_SIZE = 4096
SPECIAL = "<|endoftext|>"


def build_tokenizer(out: Path = TOKENIZER_FILE, vocab_size: int = VOCAB_SIZE) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    from appliance.pipeline.datasets.demo_corpus import samples

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[SPECIAL],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    texts = [s["text"] for s in samples() if s["split"] == "train"]
    tokenizer.train_from_iterator(texts, trainer=trainer)
    # Like GPT-2 the same token ends and starts documents; "add special tokens" prefixes it, which
    # gives the model a fixed first position (an attention sink) the SAE can learn to ignore.
    eot = tokenizer.token_to_id(SPECIAL)
    tokenizer.post_processor = processors.TemplateProcessing(single=f"{SPECIAL} $A", special_tokens=[(SPECIAL, eot)])
    out.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out))
    return out


class ModelShape(TypedDict):
    """The GPT2Config keywords that set the model's size."""

    n_layer: int
    n_embd: int
    n_head: int
    n_positions: int


# A GPT-2-style model small enough to train on a CPU in minutes and to ship in the repository
# (about 1.4 M parameters, 2.7 MB in fp16), big enough that its text reads like docstrings.
MODEL_SHAPE: ModelShape = {"n_layer": 4, "n_embd": 128, "n_head": 4, "n_positions": 256}
CONTEXT = 128
STEPS = 1500
BATCH = 16


def _token_stream(split: str) -> "Any":
    import torch
    from tokenizers import Tokenizer

    from appliance.pipeline.datasets.demo_corpus import samples

    tokenizer = Tokenizer.from_file(str(TOKENIZER_FILE))
    ids: list[int] = []
    for sample in samples():
        if sample["split"] == split:
            ids.extend(tokenizer.encode(sample["text"]).ids)  # each text starts with <|endoftext|>
    return torch.tensor(ids, dtype=torch.long)


def build_model(out: Path = MODEL_DIR, steps: int = STEPS, seed: int = 0, threads: int = 0) -> Path:
    import math
    import shutil
    import time

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)  # on a small shared CPU one thread can be many times faster
    train, valid = _token_stream("train"), _token_stream("validation")
    config = GPT2Config(
        vocab_size=VOCAB_SIZE, bos_token_id=0, eos_token_id=0, pad_token_id=0, tie_word_embeddings=True, **MODEL_SHAPE
    )
    model = GPT2LMHeadModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1, betas=(0.9, 0.95))
    warmup = 100
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    generator = torch.Generator().manual_seed(seed)

    def batch(data: torch.Tensor) -> torch.Tensor:
        starts = torch.randint(0, len(data) - CONTEXT - 1, (BATCH,), generator=generator)
        return torch.stack([data[s : s + CONTEXT] for s in starts.tolist()])

    began = time.time()
    model.train()
    for step in range(steps):
        loss = model(input_ids=(x := batch(train)), labels=x).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 250 == 0 or step == steps - 1:
            model.eval()
            with torch.no_grad():
                v = batch(valid)
                val = model(input_ids=v, labels=v).loss.item()
            model.train()
            print(f"step {step:5d}  train {loss.item():.3f}  valid {val:.3f}  {time.time() - began:.0f}s", flush=True)
    model.eval()
    shutil.rmtree(out, ignore_errors=True)
    model.half().save_pretrained(out)
    fast = PreTrainedTokenizerFast(
        tokenizer_file=str(TOKENIZER_FILE),
        bos_token=SPECIAL,
        eos_token=SPECIAL,
        pad_token=SPECIAL,
        unk_token=None,
        model_max_length=MODEL_SHAPE["n_positions"],
    )
    fast.save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["tokenizer", "model"])
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.what == "tokenizer":
        print(build_tokenizer())
    else:
        print(build_model(steps=args.steps, threads=args.threads))


if __name__ == "__main__":
    main()
