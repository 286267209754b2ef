"""A tiny model shaped like an instruction-tuned one, for the local labeller's tests and ``mistudio bench explain``.

Real instruct models (Qwen2.5-Instruct, Llama-3-Instruct, SmolLM2-Instruct) are Llama-style decoders whose
tokenizer carries a chat template and special turn tokens, and whose generation stops at the end-of-turn
token. This one has all of that at toy size: the demo tokenizer plus ChatML's ``<|im_start|>`` and
``<|im_end|>``, ChatML's template, a 2-layer Llama with grouped-query attention and random weights (it answers
garbage, which is what the labeller's error handling must survive), saved in bf16 like the Hub's models.
Built at run time (about a megabyte, a second), never shipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TURN_START, TURN_END = "<|im_start|>", "<|im_end|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}" + TURN_START + "{{ message['role'] }}\n{{ message['content'] }}" + TURN_END + "\n"
    "{% endfor %}{% if add_generation_prompt %}" + TURN_START + "assistant\n{% endif %}"
)


def build_tiny_instruct(
    folder: Path, *, layers: int = 2, width: int = 64, heads: int = 4, context: int = 4096, seed: int = 0
) -> Path:
    """Write the model, its tokenizer (with the chat template) and its generation settings to ``folder``."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from appliance.demo_kit import TOKENIZER_FILE
    from appliance.demo_kit.build import SPECIAL

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(TOKENIZER_FILE),
        eos_token=TURN_END,
        pad_token=SPECIAL,
        extra_special_tokens=[TURN_START, TURN_END],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    end = tokenizer.convert_tokens_to_ids(TURN_END)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=context,
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=end,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model: Any = LlamaForCausalLM(config)  # transformers' partial stubs type .to() for another class
    model = model.to(torch.bfloat16)
    model.generation_config = GenerationConfig(eos_token_id=end, pad_token_id=tokenizer.pad_token_id)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
