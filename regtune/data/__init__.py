"""Data in: load files and built-in datasets, check them, split train/validation/test, preprocess tables."""

from __future__ import annotations

import importlib
from typing import Any

# regtune 0.1 had one module here; its names stay reachable (pickles name regtune.data.X).
_OLD_HOMES = ("regtune.data.loading",)


def __getattr__(name: str) -> Any:
    if not name.startswith("__"):
        for home in _OLD_HOMES:
            module = importlib.import_module(home)
            if hasattr(module, name):
                return getattr(module, name)
    raise AttributeError(f"module 'regtune.data' has no attribute {name!r}")
