"""The dependency rules of the architecture, checked on the real import graph."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_web_process_never_imports_torch_or_onnxruntime():
    loaded = run(
        "import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'webapp.settings');"
        "import django; django.setup();"
        "import webapp.urls, webapp.audits.views, webapp.audits.forms, worker.dispatch, exports.dataset;"
        "from django.test import Client;"
        "print(sorted(m for m in ('torch', 'onnxruntime', 'insightface') if m in sys.modules))")
    assert loaded == "[]"


def test_framework_free_packages_do_not_import_django():
    for package in ("generator", "audit"):
        for path in (ROOT / package).glob("*.py"):
            text = path.read_text()
            assert "import django" not in text and "from django" not in text, path


# --- the import graph, read from the source with ast --------------------------------------------

#: The project's own packages; imports of anything else (Django, numpy, ...) are not edges.
PACKAGES = ("audit", "generator", "exports", "worker", "webapp")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES
            for path in sorted((ROOT / package).rglob("*.py"))}


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that module ``name`` imports anywhere in its source: at the top, in
    functions, under ``if TYPE_CHECKING``. ``from a import b`` counts as importing ``a.b``
    where that is a module, else ``a``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # ``import a.b.c`` of a name in a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_pages_reach_the_worker_only_through_dispatch():
    """The web process schedules, cancels and resumes work through ``worker.dispatch`` and
    imports no other worker module (management commands are worker-side entry points)."""
    graph = import_graph()
    offending = {name: sorted(t for t in targets
                              if t.split(".")[0] == "worker" and t != "worker.dispatch")
                 for name, targets in graph.items()
                 if name.startswith("webapp") and ".management.commands" not in name}
    assert {name: ts for name, ts in offending.items() if ts} == {}


def test_exports_never_import_the_worker_or_the_views():
    graph = import_graph()
    offending = {name: sorted(t for t in targets
                              if t.split(".")[0] == "worker" or t == "webapp.audits.views")
                 for name, targets in graph.items() if name.split(".")[0] == "exports"}
    assert {name: ts for name, ts in offending.items() if ts} == {}


def test_the_project_has_no_import_circles():
    """No two project modules import each other, directly or through others, not even inside a
    function. (Django's app loading importing ``webapp.audits.models`` is not an import of a
    project module and does not count.)"""
    circles = [c for c in strongly_connected(import_graph()) if len(c) > 1]
    assert circles == []
