"""Module boundaries: no reaching for private names, no cycles in space/, a light config."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import regtune

PACKAGE = Path(regtune.__file__).parent


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every ``from regtune... import names`` in ``path``, anywhere in it."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            if module.startswith("regtune"):
                found.append((module, [alias.name for alias in node.names]))
    return found


def _is_module(module: str, name: str) -> bool:
    folder = PACKAGE.parent.joinpath(*module.split("."))
    return (folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file()


def test_no_module_imports_another_modules_private_names() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}: from {module} import {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for module, names in _imports(path)
        for name in names
        if name.startswith("_") and not name.startswith("__") and not _is_module(module, name)
    ]
    assert not offenders, "\n".join(offenders)


def test_space_yaml_reads_text_without_knowing_search_spaces() -> None:
    imported = {module for module, _ in _imports(PACKAGE / "space" / "yaml.py")}
    assert "regtune.space.space" not in imported and "regtune.space" not in imported


def test_config_table_and_spaces_load_without_torch() -> None:
    code = ("import sys, regtune.config, regtune.regularizer_table, regtune.space.space; "
            "heavy = [m for m in ('torch', 'sklearn') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
