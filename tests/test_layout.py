"""The file tree is the architecture (DESIGN.md): no import cycles, no module reaching for
another's private names, and each layer importing only the layers above it. Every import
counts, those inside functions too: a lazy import is still an arrow."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import regtune

PACKAGE = Path(regtune.__file__).parent
# DESIGN.md's data flow, top to bottom: each layer uses only the ones above it. Modules directly
# under regtune/ (config, metrics, exceptions, ...) are the base every layer may use.
LAYERS = ("data", "space", "nn", "estimators", "tracking", "tuning", "analysis", "search", "cli")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # the regtune module the statement loads; a package stands for its __init__
    name: str | None  # the name taken from ``target`` by ``from target import name``
    line: int
    module_level: bool  # False inside a function body, where an import runs only when called

    def __str__(self) -> str:
        taken = f" ({self.name})" if self.name else ""
        return f"{self.importer}:{self.line} -> {self.target}{taken}"


def _imports(module: str) -> list[Import]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"), str(MODULES[module]))
    return list(_walk(module, tree, module_level=True))


def _walk(module: str, node: ast.AST, module_level: bool) -> Iterator[Import]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _walk(module, child, module_level=False)
        elif isinstance(child, ast.Import):
            for alias in child.names:
                if _ours(alias.name):
                    yield Import(module, alias.name, None, child.lineno, module_level)
        elif isinstance(child, ast.ImportFrom):
            base = _absolute(module, child)
            if not _ours(base):
                continue
            for alias in child.names:
                submodule = f"{base}.{alias.name}"
                if submodule in MODULES:
                    yield Import(module, submodule, None, child.lineno, module_level)
                else:
                    yield Import(module, base, alias.name, child.lineno, module_level)
        else:
            yield from _walk(module, child, module_level)


def _ours(name: str) -> bool:
    return name == "regtune" or name.startswith("regtune.")


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".")
    if MODULES[module].name != "__init__.py":
        package = package[:-1]
    package = package[: len(package) - node.level + 1]
    return ".".join([*package, *([node.module] if node.module else [])])


ALL_IMPORTS = [imp for module in MODULES for imp in _imports(module)]
ARROWS = [imp for imp in ALL_IMPORTS if imp.target != imp.importer]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _layer(module: str) -> str | None:
    """The layer folder of ``module``, ``"base"`` for modules directly under regtune/, else None."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    if len(parts) == 2 and parts[1] != "__main__":
        return "base"
    return None


def test_the_parser_sees_the_imports_it_should() -> None:
    """Guards the checks below against passing because nothing was found."""
    edges = {(imp.importer, imp.target) for imp in ARROWS if imp.module_level}
    assert ("regtune.estimators.net", "regtune.nn.trainer") in edges
    assert ("regtune.data.loading", "regtune.data.checks") in edges
    lazy = {(imp.importer, imp.target) for imp in ALL_IMPORTS if not imp.module_level}
    assert ("regtune.cli.app", "regtune.data.loading") in lazy
    assert _layer("regtune.config") == "base" and _layer("regtune.nn.regularizers.penalties") == "nn"


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for imp in ARROWS:
        graph[imp.importer].add(imp.target)
    cycles: list[list[str]] = []
    state: dict[str, str] = {}  # "open" while on the DFS path, "done" after

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_module_imports_another_modules_private_names() -> None:
    """``from regtune.x import _y`` anywhere, even inside a function; a private module may be
    imported only by its own package."""
    offenders = []
    for imp in ALL_IMPORTS:
        if imp.name is not None and _private(imp.name):
            offenders.append(imp)
        parts = imp.target.split(".")
        for depth in range(1, len(parts)):
            parent = ".".join(parts[:depth])
            inside = imp.importer == parent or imp.importer.startswith(parent + ".")
            if _private(parts[depth]) and not inside:
                offenders.append(imp)
    assert not offenders, "private names imported: " + "; ".join(map(str, offenders))


def test_layers_import_only_the_layers_above_them() -> None:
    offenders = []
    for imp in ARROWS:
        source, target = _layer(imp.importer), _layer(imp.target)
        if source is None or target is None or target == "base" or source == target:
            continue
        if source == "base" or LAYERS.index(target) > LAYERS.index(source):
            offenders.append(imp)  # the base must not depend on any layer
    assert not offenders, "imports against the layer order: " + "; ".join(map(str, offenders))


def test_no_subpackage_cycles() -> None:
    """Folders, not only modules: no two layers import each other, by any path."""
    reach: dict[str, set[str]] = {}
    for imp in ARROWS:
        source, target = _layer(imp.importer), _layer(imp.target)
        if source and target and source != target:
            reach.setdefault(source, set()).add(target)
    changed = True
    while changed:
        changed = False
        for targets in reach.values():
            more = set().union(*(reach.get(t, set()) for t in targets)) - targets
            if more:
                targets |= more
                changed = True
    assert not [layer for layer, targets in reach.items() if layer in targets]
