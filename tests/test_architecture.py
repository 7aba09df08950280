"""The package layout holds: no import cycles, short modules, click only in cli/, layers one way.

Every module under ``convdiag/`` is parsed with :mod:`ast` (nothing is imported), so the
checks are cheap and see imports inside functions too; imports under ``if TYPE_CHECKING:``
are left out because they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "convdiag"
MAX_LINES = 400
#: the loop, lowest first; a module may import its own layer or a lower one
LAYERS = ("load", "targets", "analyses", "diagnosis", "remedies", "training", "report", "cli")
#: folders that count as another layer, and layers that share a rank
SAME_AS = {"models": "load", "watch": "report"}
EXEMPT = {"api", "__init__", "__main__", "errors"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Absolute names of the modules ``tree`` imports, outside ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _modules() -> dict[str, tuple[Path, set[str]]]:
    out: dict[str, tuple[Path, set[str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        out[name] = (path, _imports(tree, name, path.name == "__init__.py"))
    return out


MODULES = _modules()


def _graph() -> dict[str, set[str]]:
    """Edges between convdiag modules; importing a package's name resolves to the package."""
    graph: dict[str, set[str]] = {}
    for name, (_, imported) in MODULES.items():
        edges = {m for m in imported if m in MODULES and m != name}
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
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
            strong(v)
    return found


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2 or parts[1] in EXEMPT:
        return None
    folder = SAME_AS.get(parts[1], parts[1])
    return LAYERS.index(folder) if folder in LAYERS else None


def test_no_import_cycles() -> None:
    """No two convdiag modules import each other, directly or around a loop."""
    assert _cycles(_graph()) == []


def test_no_module_over_400_lines() -> None:
    """Every module stays short enough to read in one sitting."""
    long = {
        name: n
        for name, (path, _) in MODULES.items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_click_only_under_cli() -> None:
    """Only the command line imports click; the library is usable without it."""
    users = sorted(
        name
        for name, (_, imported) in MODULES.items()
        if any(m == "click" or m.startswith("click.") for m in imported)
        and not name.startswith("convdiag.cli")
    )
    assert users == []


def test_layers_import_downwards() -> None:
    """A folder imports only its own layer or the ones before it in the loop."""
    upward = []
    for name, (_, imported) in MODULES.items():
        own = _layer(name)
        if own is None:
            continue
        for target in sorted(imported):
            if not target.startswith("convdiag.") or target not in MODULES:
                continue
            other = _layer(target)
            if other is not None and other > own:
                upward.append(f"{name} -> {target}")
    assert upward == []
