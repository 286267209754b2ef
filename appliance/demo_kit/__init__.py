"""The built-in demo kit: a tokenizer (and, later, a small model) made by the project from the demo
dataset, so a fresh device with no network can run the whole pipeline. ``build.py`` remakes them."""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent
TOKENIZER_FILE = DEMO_DIR / "tokenizer.json"
MODEL_DIR = DEMO_DIR / "model"
