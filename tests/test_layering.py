"""dfl's import graph, read from the source: no import circle anywhere, the CPU kernels (dfl/ops) reached
only from behind the models, and the layers of docs/ARCHITECTURE.md never importing upwards.

Every import counts, also those inside functions (they run too, only later); imports under
``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import dfl

ROOT = Path(dfl.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(ROOT.rglob("*.py")):
        parts = list(f.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


MODULES = _modules()


def _runtime_imports(tree: ast.AST) -> list[ast.stmt]:
    """Import statements that run (those under ``if TYPE_CHECKING:`` never do)."""
    found: list[ast.stmt] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _resolve(name: str) -> str | None:
    """The dfl module an imported name lives in (the longest module prefix), None outside dfl."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def imports_of(module: str) -> set[str]:
    """The dfl modules ``module`` imports."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg import sub`` imports the module pkg.sub; ``from mod import name`` imports mod
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        out.update(m for m in map(_resolve, names) if m is not None and m != module)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return found


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_walker_sees_imports_inside_functions_and_from_packages() -> None:
    # guards the test itself: a walker that missed these would pass everything below
    assert "dfl.ops" in GRAPH["dfl.models.blocks"]                        # from dfl import ops
    assert "dfl.ops.winograd" in GRAPH["dfl.ops"]                         # from dfl.ops import winograd
    assert "dfl.models.store" in GRAPH["dfl.merge.frames"]                # inside load_predictor
    assert "dfl.models.registry" in GRAPH["dfl.merge.frames"]             # inside prepare_merge


def test_no_import_circle_in_dfl() -> None:
    assert _cycles(GRAPH) == []


def test_cpu_kernels_only_behind_the_models() -> None:
    """dfl/ops is imported only by itself and by the models' layers and runtime handle; the trainer and the
    merger reach it through dfl.models.runtime."""
    allowed = {"dfl.models.blocks", "dfl.models.runtime"}
    users = {m for m, deps in GRAPH.items() if not _in(m, "dfl.ops") and any(_in(d, "dfl.ops") for d in deps)}
    assert users <= allowed
    for area in ("dfl.training", "dfl.merge"):
        assert not [m for m in GRAPH if _in(m, area) and any(_in(d, "dfl.ops") for d in GRAPH[m])]


# lower layers never import these higher ones
NOT_BELOW = {
    "dfl.ops": ("dfl.models", "dfl.samples", "dfl.training", "dfl.merge", "dfl.interop", "dfl.cli"),
    "dfl.samples": ("dfl.models", "dfl.training", "dfl.merge", "dfl.interop", "dfl.cli"),
    "dfl.mask_samples": ("dfl.models", "dfl.training", "dfl.merge", "dfl.xseg", "dfl.interop", "dfl.cli"),
    "dfl.models": ("dfl.training", "dfl.merge", "dfl.interop", "dfl.cli", "dfl.demo_run"),
    "dfl.training": ("dfl.merge", "dfl.interop", "dfl.cli", "dfl.demo_run"),
    "dfl.merge": ("dfl.training", "dfl.interop", "dfl.cli", "dfl.demo_run"),
}


def test_layers_never_import_upwards() -> None:
    wrong = sorted((m, d) for low, highs in NOT_BELOW.items() for m in GRAPH if _in(m, low)
                   for d in GRAPH[m] if any(_in(d, h) for h in highs))
    assert wrong == []
