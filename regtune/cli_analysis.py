"""``regtune report`` and ``regtune ablate``: registered on the main app by :mod:`regtune.cli`."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the analysis commands to ``app``."""
