"""Search spaces as data: distributions, the frozen SearchSpace, and its YAML files."""

from __future__ import annotations

import importlib
from typing import Any

# regtune 0.1 had one module here; its names stay reachable (pickles name regtune.space.X).
_OLD_HOMES = ("regtune.space.space", "regtune.space.distributions")


def __getattr__(name: str) -> Any:
    if not name.startswith("__"):
        for home in _OLD_HOMES:
            module = importlib.import_module(home)
            if hasattr(module, name):
                return getattr(module, name)
    raise AttributeError(f"module 'regtune.space' has no attribute {name!r}")
