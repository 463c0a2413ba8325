"""The shape of the code, in figures: long modules, long functions, import circles and nested
lookups into the stored summary outside its result object.

    python bench/code_shape.py [CHECKOUT]     # default: this checkout

Prints modules over 500 lines, functions over 80 lines, every import circle among the
project's modules (imports inside functions count too), and each place outside
``audit/summary.py`` and the summary's builders (``worker/results.py``, ``worker/summary/``)
that indexes the stored summary dict: a subscript or ``.get`` with a constant key on a chain
that starts at something named ``summary`` (``summary["design"]``,
``(result.summary.get("fr_models") or {})``), or any ``["operating_points"]`` lookup.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.test_architecture import imported_modules, strongly_connected  # noqa: E402 - the rules' own graph

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
PACKAGES = ("audit", "exports", "generator", "webapp", "worker")
#: Where the summary is built or wrapped (its producer and its result object).
SUMMARY_HOME = ("audit/summary.py", "worker/results.py", "worker/summary")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            found[name] = path
    return found


def package_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Circles between packages' ``__init__`` modules and their own submodules are not
    circles of the design; everything else is."""
    return [c for c in strongly_connected(graph) if len(c) > 1
            and not all(m == c[0] or m.startswith(c[0] + ".") for m in c)]


def _root_is_summary(node: ast.AST) -> bool:
    """Whether a chain of subscripts and ``.get`` calls starts at something named ``summary``
    (``summary``, ``result.summary``, ``summary["a"].get("b")``)."""
    while True:
        if isinstance(node, ast.Subscript):
            node = node.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "get"):
            node = node.func.value
        elif isinstance(node, ast.BoolOp):  # (summary.get("x") or {})
            node = node.values[0]
        else:
            break
    return (isinstance(node, ast.Name) and node.id == "summary") or (
        isinstance(node, ast.Attribute) and node.attr == "summary")


def summary_lookups(path: Path) -> list[int]:
    """Lines that index the summary dict (see the module docstring); one per line."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        key = base = None
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            key, base = node.slice.value, node.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "get" and node.args
              and isinstance(node.args[0], ast.Constant)):
            key, base = node.args[0].value, node.func.value
        if base is None or not isinstance(key, str):
            continue
        if key == "operating_points" or _root_is_summary(base):
            lines.append(node.lineno)
    return sorted(set(lines))


def main() -> None:
    found = modules()
    rel = {name: str(path.relative_to(ROOT)) for name, path in found.items()}
    long_modules = sorted(((len(p.read_text().splitlines()), rel[n]) for n, p in found.items()),
                          reverse=True)
    print("modules over 500 lines:")
    for n, name in long_modules:
        if n > 500:
            print(f"  {n:5d}  {name}")
    print("functions over 80 lines:")
    for name, path in found.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    print(f"  {n:5d}  {rel[name]}:{node.lineno} {node.name}")
    graph = {name: imported_modules(name, path, found) for name, path in found.items()}
    print("import circles:")
    for c in package_circles(graph):
        print("  " + " <-> ".join(c))
    print("summary lookups outside the result object (file: lines):")
    total = 0
    for name, path in found.items():
        if rel[name].startswith(SUMMARY_HOME):
            continue
        hits = summary_lookups(path)
        if hits:
            total += len(hits)
            print(f"  {rel[name]}: {', '.join(map(str, hits))}")
    print(f"  total {total}")


if __name__ == "__main__":
    main()
