"""A refused request field as a user reads it: "Learning rate must be greater than 0." from msgspec's
"Expected `float` > 0.0" at ``hyperparameters.learning_rate``. The machine form (key, msgspec's message)
stays in the error's ``details``; this is only the sentence the UI shows."""

from __future__ import annotations

import re

# The fields the UI's forms show, in the forms' own words (so the sentence names what the user sees).
# Keys without list indices; any other field falls back to its last segment, humanised.
LABELS: dict[str, str] = {
    # Training (Training tab)
    "model_id": "Model",
    "dataset_id": "Dataset",
    "activation_id": "Activation set",
    "encoder_type": "Encoder type",
    "layer": "Layer",
    "hook_type": "Hook",
    "context_length": "Context length",
    "max_samples": "Max samples",
    "auto_save_interval": "Auto-save interval",
    "hyperparameters.learning_rate": "Learning rate",
    "hyperparameters.batch_size": "Batch size",
    "hyperparameters.k": "Active latents (k)",
    "hyperparameters.l0_coefficient": "L0 coefficient",
    "hyperparameters.l1_coefficient": "L1 coefficient (λ)",
    "hyperparameters.target_l0": "Target L0",
    "hyperparameters.matryoshka_widths": "Matryoshka group widths",
    "hyperparameters.expansion_factor": "Expansion factor",
    "hyperparameters.total_steps": "Training steps",
    "hyperparameters.optimizer": "Optimizer",
    "hyperparameters.lr_decay": "LR schedule",
    # Extraction (Models tab)
    "layers": "Layers",
    "hook_types": "Activation type",
    "batch_size": "Batch size",
    # Datasets
    "repo_id": "Repository",
    "split": "Split",
    "config": "Configuration",
    "text_column": "Text column",
    "max_length": "Max sequence length",
    "padding": "Padding strategy",
    "truncation": "Truncation strategy",
    # Features
    "eval_samples": "Evaluation samples",
    "top_k_examples": "Top-K examples per feature",
    "top": "Features (best scored first)",
    "max_calls": "Max calls per run",
    "concurrency": "Concurrency",
    "examples": "Explainer examples",
    "examples_per_class": "Examples per class",
    # Steering
    "prompt": "Prompt",
    "temperature": "Temperature",
    "max_tokens": "Max tokens",
    "top_p": "Top-p",
    "seed": "Random seed",
    "intervention_layer": "Layer",
    "features.coefficient": "Coefficient",
}

_KINDS = {
    "int": "a whole number",
    "float": "a number",
    "int | float": "a number",
    "str": "text",
    "bool": "true or false",
    "array": "a list",
    "object": "an object",
}
# What a pattern-checked field looks like, where a user can be told (else: "not in the expected format").
_FORMATS = {"repo_id": 'a Hugging Face id like "owner/name"'}
_COMPARISONS = {">=": "at least", ">": "greater than", "<=": "at most", "<": "less than"}
_SIZED = {"str": ("character", "characters"), "array": ("item", "items"), "object": ("entry", "entries")}

_GOT = re.compile(r"^Expected `(?P<want>[^`]+)`, got `[^`]+`$")
_BOUND = re.compile(r"^Expected `(?:int|float)` (?P<op>>=|>|<=|<) (?P<n>\S+)$")
_LENGTH = re.compile(r"^Expected `(?P<kind>str|array|object)` of length (?P<op>>=|<=) (?P<n>\d+)$")
_MULTIPLE = re.compile(r"^Expected `int` that's a multiple of (?P<n>\d+)$")
_REGEX = re.compile(r"^Expected `str` matching regex ")
_ENUM = re.compile(r"^Invalid (?:enum )?value (?P<value>.+)$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`$")
_REQUIRED_PARAM = re.compile(r"^Missing required .*parameter")


def label(key: str) -> str:
    """The words the UI uses for the field at ``key`` ("hyperparameters.0.k" style paths; "" is the body)."""
    if not key:
        return "The request body"
    plain = ".".join(part for part in key.split(".") if not part.isdigit())
    if plain in LABELS:
        return LABELS[plain]
    last = plain.rpartition(".")[2] or plain
    return LABELS.get(last) or last.replace("_", " ").strip().capitalize()


def _subject(key: str) -> str:
    """The label, with the item's position when the key points into a list ("Layers (item 2)")."""
    items = [int(part) + 1 for part in key.split(".") if part.isdigit()]
    return label(key) + "".join(f" (item {n})" for n in items)


def _number(text: str) -> str:
    try:
        value = float(text)
    except ValueError:
        return text
    return f"{int(value):,}" if value.is_integer() and abs(value) < 1e15 else f"{value:g}"


def _kind(want: str) -> str:
    # "int | null": null is what leaving the field out means; the user is told the value's kind.
    parts = [p.strip() for p in want.split("|") if p.strip() != "null"]
    return _KINDS.get(" | ".join(parts), "a " + " or ".join(parts)) if parts else "empty"


def sentence(key: str, message: str) -> str:
    """One sentence naming the field by its label and saying what it must be."""
    if match := _MISSING.match(message):
        field = f"{key}.{match['field']}" if key else match["field"]
        return f"{label(field)} is required."
    if match := _UNKNOWN.match(message):
        field = f"{key}.{match['field']}" if key else match["field"]
        return f'"{field}" is not a field this request accepts.'
    subject = _subject(key)
    if match := _GOT.match(message):
        return f"{subject} must be {_kind(match['want'])}."
    if match := _BOUND.match(message):
        return f"{subject} must be {_COMPARISONS[match['op']]} {_number(match['n'])}."
    if match := _LENGTH.match(message):
        one, many = _SIZED[match["kind"]]
        n = int(match["n"])
        if match["op"] == ">=" and n == 1:
            return f"{subject} must not be empty."
        return f"{subject} must have {_COMPARISONS[match['op']]} {n:,} {one if n == 1 else many}."
    if match := _MULTIPLE.match(message):
        return f"{subject} must be a multiple of {match['n']}."
    if _REGEX.match(message):
        form = _FORMATS.get(key.rpartition(".")[2])
        return f"{subject} must be {form}." if form else f"{subject} is not in the expected format."
    if match := _ENUM.match(message):
        return f"{subject} cannot be {match['value']}."
    if _REQUIRED_PARAM.match(message):
        return f"{subject} is required."
    if message == "Integer value out of range":
        return f"{subject} is out of range."
    # A Struct's own check (__post_init__) already speaks in a sentence: the label says where.
    text = message.rstrip(".") + "."
    if not key:
        return text[0].upper() + text[1:]
    lower = text[:2] != text[:2].upper()  # "Widths ..." reads on after the label; "SAE ..." keeps its case
    return f"{subject}: {text[0].lower() if lower else text[0]}{text[1:]}"
