"""Rebuild the demo kit's files from the demo corpus: ``python -m appliance.demo.build tokenizer``.

The tokenizer is a byte-level BPE (GPT-2 style: any text encodes, no unknown tokens) with a small
vocabulary sized for the demo corpus and a tiny model. Training is deterministic for a given corpus.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from appliance.demo import TOKENIZER_FILE

VOCAB_SIZE = 4096
SPECIAL = "<|endoftext|>"


def build_tokenizer(out: Path = TOKENIZER_FILE, vocab_size: int = VOCAB_SIZE) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    from appliance.ml.demo_corpus import samples

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[SPECIAL], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    texts = [s["text"] for s in samples() if s["split"] == "train"]
    tokenizer.train_from_iterator(texts, trainer=trainer)
    # Like GPT-2 the same token ends and starts documents; "add special tokens" prefixes it, which
    # gives the model a fixed first position (an attention sink) the SAE can learn to ignore.
    eot = tokenizer.token_to_id(SPECIAL)
    tokenizer.post_processor = processors.TemplateProcessing(single=f"{SPECIAL} $A", special_tokens=[(SPECIAL, eot)])
    out.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["tokenizer"])
    args = parser.parse_args()
    if args.what == "tokenizer":
        print(build_tokenizer())


if __name__ == "__main__":
    main()
