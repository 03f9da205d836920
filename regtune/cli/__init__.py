"""The `regtune` command line over all of the above."""

from __future__ import annotations

import importlib
from typing import Any

# regtune 0.1 had one module here; its names stay reachable (pickles name regtune.cli.X).
_OLD_HOMES = ("regtune.cli.app",)


def __getattr__(name: str) -> Any:
    if not name.startswith("__"):
        for home in _OLD_HOMES:
            module = importlib.import_module(home)
            if hasattr(module, name):
                return getattr(module, name)
    raise AttributeError(f"module 'regtune.cli' has no attribute {name!r}")
