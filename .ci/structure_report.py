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
from dataclasses import dataclass
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


def _import_nodes(body: list[ast.stmt], deferred: bool) -> list[ast.AST]:
    """The import statements of ``body``: at its top level (and in top-level if/try blocks), or
    (``deferred``) at any depth. Blocks under ``if TYPE_CHECKING:`` never run, so they never count."""
    found: list[ast.AST] = []

    def visit(node: ast.AST, top: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
            return
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        nested = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
        if nested and not deferred:
            return
        for child in ast.iter_child_nodes(node):
            visit(child, top and not nested)

    for statement in body:
        visit(statement, True)
    return found


def imports(name: str, path: Path, known: dict[str, Path], deferred: bool) -> set[str]:
    """Modules of the package that ``name`` imports: at module level, or anywhere (``deferred``:
    imports inside functions too, which keep torch out of the API but still tie two modules)."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _import_nodes(tree.body, deferred):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
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


@dataclass
class Report:
    sql_files: list[str]
    untyped_params: list[str]  # "path: line" of Any in job-parameter contracts
    globals_in_worker_code: list[str]  # "path: call"
    cycles: list[list[str]]  # module-level imports
    cycles_all: list[list[str]]  # deferred imports too
    largest_controller: tuple[int, str]
    largest_function: tuple[int, str]
    line_length: int
    long_lines: int


WORKER_SIDE = (
    "appliance.pipeline",
    "appliance.jobs",
    "appliance.data",
    "appliance.memory",
    "appliance.events",
    "appliance.contracts",
    "appliance.device",
)


def measure() -> Report:
    known = modules()
    found = re.search(r"^line-length\s*=\s*(\d+)", (ROOT / "pyproject.toml").read_text(), re.M)
    line_length = int(found.group(1)) if found else 88
    sql_files, long_lines, largest_fn, largest_ctl = [], 0, (0, ""), (0, "")
    untyped, globals_ = [], []
    for name, path in known.items():
        text = path.read_text()
        rel = str(path.relative_to(ROOT))
        if SQL.search(text) and not rel.startswith("appliance/data/"):
            sql_files.append(rel)
        long_lines += sum(1 for line in text.splitlines() if len(line) > line_length)
        if name.startswith("appliance.contracts.params"):
            untyped += [
                f"{rel}:{i}"
                for i, line in enumerate(text.splitlines(), 1)
                if re.search(r"\bAny\b", line) and not line.lstrip().startswith("#")
            ]
        if name.startswith(WORKER_SIDE):
            globals_ += [f"{rel}: {m}" for m in re.findall(r"\b(?:get_settings|memory_manager)\(\)", text)]
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                largest_fn = max(largest_fn, (size, f"{rel}:{node.name}"))
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", "") == "Controller" for b in node.bases):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                largest_ctl = max(largest_ctl, (size, f"{rel}:{node.name}"))
    return Report(
        sql_files=sql_files,
        untyped_params=untyped,
        globals_in_worker_code=globals_,
        cycles=cycles({n: imports(n, p, known, deferred=False) for n, p in known.items()}),
        cycles_all=cycles({n: imports(n, p, known, deferred=True) for n, p in known.items()}),
        largest_controller=largest_ctl,
        largest_function=largest_fn,
        line_length=line_length,
        long_lines=long_lines,
    )


def main() -> None:
    r = measure()
    print(f"files holding SQL outside appliance/data/: {len(r.sql_files)}")
    for f in r.sql_files:
        print(f"  {f}")
    print(f"Any in job-parameter contracts (appliance/contracts/params): {len(r.untyped_params)}")
    print(f"get_settings()/memory_manager() calls in worker-side code: {len(r.globals_in_worker_code)}")
    for g in r.globals_in_worker_code:
        print(f"  {g}")
    print(f"import cycles (module level): {len(r.cycles)}")
    for comp in r.cycles:
        print("  " + " <-> ".join(comp))
    print(f"import cycles (deferred imports too): {len(r.cycles_all)}")
    for comp in r.cycles_all:
        print("  " + " <-> ".join(comp))
    print(f"largest controller: {r.largest_controller[0]} lines ({r.largest_controller[1]})")
    print(f"largest function: {r.largest_function[0]} lines ({r.largest_function[1]})")
    print(f"lines past {r.line_length} columns: {r.long_lines}")


if __name__ == "__main__":
    main()
