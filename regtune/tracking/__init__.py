"""MLflow: parent run per study, child run per trial, and the pyfunc model."""

from __future__ import annotations

import importlib
from typing import Any

# regtune 0.1 had one module here; its names stay reachable (pickles name regtune.tracking.X).
_OLD_HOMES = ("regtune.tracking.tracker",)


def __getattr__(name: str) -> Any:
    if not name.startswith("__"):
        for home in _OLD_HOMES:
            module = importlib.import_module(home)
            if hasattr(module, name):
                return getattr(module, name)
    raise AttributeError(f"module 'regtune.tracking' has no attribute {name!r}")
