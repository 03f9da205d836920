"""Old module paths of regtune 0.1 (one flat package) kept importable as aliases.

Pickles and MLflow models saved by 0.1 name classes by their old module (``regtune.estimator``,
``regtune.serving``); a finder at the end of ``sys.meta_path`` hands out the new module under
the old name, so they still load. Nothing new should import these names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["ALIASES", "install", "old_names"]

ALIASES: dict[str, str] = {
    "regtune.ablation": "regtune.analysis.ablation",
    "regtune.callbacks": "regtune.nn.callbacks",
    "regtune.cli_analysis": "regtune.cli.analysis",
    "regtune.distributions": "regtune.space.distributions",
    "regtune.effects": "regtune.analysis.effects",
    "regtune.errors": "regtune.cli.errors",
    "regtune.estimator": "regtune.estimators.net",
    "regtune.mlflow_model": "regtune.tracking.pyfunc_model",
    "regtune.model": "regtune.nn.models",
    "regtune.objective": "regtune.tuning.trial",
    "regtune.plots": "regtune.analysis.plots",
    "regtune.predict": "regtune.cli.predict",
    "regtune.progress": "regtune.tuning.progress",
    "regtune.regularizers": "regtune.nn.regularizers",
    "regtune.report_cli": "regtune.cli.tables",
    "regtune.reporting": "regtune.analysis.report",
    "regtune.search": "regtune.estimators.tuned",
    "regtune.serving": "regtune.estimators.persistence",
    "regtune.space_yaml": "regtune.space.yaml",
    "regtune.study": "regtune.tuning.storage",
    "regtune.study_data": "regtune.analysis.study_data",
    "regtune.training": "regtune.nn.trainer",
    "regtune.tuner": "regtune.tuning.tuner",
    "regtune.worker": "regtune.tuning.worker",
}


def _target(fullname: str) -> str | None:
    for old, new in ALIASES.items():
        if fullname == old or fullname.startswith(old + "."):
            return new + fullname[len(old):]
    return None


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self._target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self._target)

    def exec_module(self, module: ModuleType) -> None:
        """The target module is already executed."""


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        new = _target(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install() -> None:
    """Put the alias finder last on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())


def old_names(package: str, *homes: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` for a package that was one module in 0.1: its old names are
    looked up, on first use, in the modules that hold them now (pickles name
    ``regtune.<package>.X``)."""

    def __getattr__(name: str) -> Any:
        if not name.startswith("__"):
            for home in homes:
                module = importlib.import_module(home)
                if hasattr(module, name):
                    return getattr(module, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
