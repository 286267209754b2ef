"""The demo dataset: docstrings of the Python standard library of the Python running the appliance,
plus the paragraphs of the language reference that ship with it (``pydoc_data/topics.py``).

Every device has this text, it needs no network, it is English prose about a narrow, well-understood
world (files, strings, numbers, networking...), so a small model trained on it produces text-like
output and an SAE on that model finds readable features. The text is under the Python Software
Foundation License, which allows redistribution and derived works (see the README).

Reading is by ``ast`` (nothing is imported) in sorted path order, so the corpus depends only on the
Python version.
"""

from __future__ import annotations

import ast
import re
import sysconfig
import zlib
from collections.abc import Iterator
from pathlib import Path

# Tests, demos and vendored code say little in prose, or repeat other modules.
SKIP_DIRS = {
    "test",
    "tests",
    "idle_test",
    "idlelib",
    "lib2to3",
    "turtledemo",
    "site-packages",
    "dist-packages",
    "ensurepip",
    "__pycache__",
    "pydoc_data",
    "venv",
    "tkinter",
    "msilib",
    "__phello__",
}
MIN_CHARS = 60
MAX_CHARS = 2000
VALIDATION_EVERY = 10  # one module in ten goes to the validation split


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _clip(text: str) -> str:
    """Long docstrings are cut at a paragraph boundary, so a sample is a readable whole."""
    if len(text) <= MAX_CHARS:
        return text
    cut = text.rfind("\n\n", 0, MAX_CHARS)
    return text[: cut if cut > MIN_CHARS else MAX_CHARS].rstrip()


def _walk(tree: ast.AST, prefix: str) -> Iterator[tuple[str, ast.AST]]:
    yield prefix, tree
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _walk(node, f"{prefix}.{node.name}")


def _reference_topics(root: Path) -> Iterator[tuple[str, str]]:
    """(topic, paragraph) pairs from the bundled language reference, a dict literal of strings."""
    path = root / "pydoc_data" / "topics.py"
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and isinstance(value, ast.Constant) and isinstance(value.value, str):
                    for paragraph in value.value.split("\n\n"):
                        # Reference text is indented for the terminal; code samples are indented more.
                        lines = [line.strip() for line in paragraph.strip("\n").splitlines()]
                        if lines and not paragraph.startswith("      ") and not lines[0].startswith(">>>"):
                            yield str(key.value), " ".join(lines)
            return


def _docstrings(root: Path) -> Iterator[tuple[str, str, str]]:
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if SKIP_DIRS.intersection(relative.parts[:-1]) or relative.name.startswith(("test_", "_test")):
            continue
        module = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, UnicodeDecodeError):
            continue
        for name, node in _walk(tree, module):
            try:
                doc = ast.get_docstring(node, clean=True)  # type: ignore[arg-type]
            except TypeError:
                continue
            if doc:
                yield module, name, re.sub(r"[ \t]+\n", "\n", doc.strip())


def samples(root: Path | None = None, limit: int | None = None) -> Iterator[dict[str, str]]:
    """Yield ``{"text", "source", "split"}`` per distinct text, in a stable order."""
    root = root or stdlib_dir()
    seen: set[str] = set()
    count = 0
    topics = ((f"reference.{topic}", f"reference.{topic}", text) for topic, text in _reference_topics(root))
    for group, source, text in (*_docstrings(root), *topics):
        text = _clip(text)
        if len(text) < MIN_CHARS or text in seen:
            continue
        seen.add(text)
        split = "validation" if zlib.crc32(group.encode()) % VALIDATION_EVERY == 0 else "train"
        yield {"text": text, "source": source, "split": split}
        count += 1
        if limit is not None and count >= limit:
            return
