#!/usr/bin/env python3
"""Figures about the code's structure, for reviews and closing notes (stdlib only; run from anywhere):

    python3 .ci/structure_report.py

files holding SQL, outside the data-access layer; untyped job parameters; settings/memory globals
reached from the worker's code; import cycles between appliance modules; the largest controller
class and function; lines past the configured line length.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "appliance"
SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+TABLE)\b")


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path], deferred: bool) -> set[str]:
    """Modules of the package that ``name`` imports: at module level, or anywhere (``deferred``:
    imports inside functions too, which keep torch out of the API but still tie two modules)."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = ast.walk(tree) if deferred else iter(tree.body)
    for node in nodes:
        if isinstance(node, ast.If) and not deferred:  # TYPE_CHECKING blocks are not runtime imports
            continue
        if deferred and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    result: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            # A package and its own submodules importing each other is how packages re-export.
            real = [m for m in comp if not any(o != m and o.startswith(m + ".") for o in comp)]
            if len(comp) > 1 and len(real) > 1:
                result.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return result


def main() -> None:
    known = modules()
    line_length = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["line-length"]
    sql_files, long_lines, largest_fn, largest_ctl = [], 0, (0, ""), (0, "")
    for name, path in known.items():
        text = path.read_text()
        rel = path.relative_to(ROOT)
        if SQL.search(text) and not str(rel).startswith("appliance/data/"):
            sql_files.append(str(rel))
        long_lines += sum(1 for line in text.splitlines() if len(line) > line_length)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                largest_fn = max(largest_fn, (size, f"{rel}:{node.name}"))
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", "") == "Controller" for b in node.bases):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                largest_ctl = max(largest_ctl, (size, f"{rel}:{node.name}"))
    worker_code = [p for n, p in known.items() if not n.startswith(("appliance.api", "appliance.commands"))]
    globals_ = sum(len(re.findall(r"\b(get_settings|memory_manager)\(\)", p.read_text())) for p in worker_code
                   if "def get_settings" not in p.read_text())
    untyped = 0
    for name, path in known.items():
        if ".contracts" in name or name.endswith("jobs.params"):
            untyped += len(re.findall(r"dict\[str, Any\]", path.read_text()))
    found = cycles({n: imports(n, p, known, deferred=False) for n, p in known.items()})
    found_all = cycles({n: imports(n, p, known, deferred=True) for n, p in known.items()})
    print(f"files holding SQL outside appliance/data/: {len(sql_files)}")
    for f in sql_files:
        print(f"  {f}")
    print(f"dict[str, Any] in job-parameter contracts: {untyped}")
    print(f"get_settings()/memory_manager() calls outside the API and the commands: {globals_}")
    print(f"import cycles (module level): {len(found)}")
    for comp in found:
        print("  " + " <-> ".join(comp))
    print(f"import cycles (deferred imports too): {len(found_all)}")
    for comp in found_all:
        print("  " + " <-> ".join(comp))
    print(f"largest controller: {largest_ctl[0]} lines ({largest_ctl[1]})")
    print(f"largest function: {largest_fn[0]} lines ({largest_fn[1]})")
    print(f"lines past {line_length} columns: {long_lines}")


if __name__ == "__main__":
    main()
