"""How the CLI words each kind of error: expected ones are the user's to fix, others are ours."""

from __future__ import annotations

from regtune.exceptions import RegtuneError

__all__ = ["describe"]


def describe(exc: BaseException) -> tuple[str, int]:
    """``(one-line message, exit code)``: 2 for bad input or settings, 1 for anything else."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (RegtuneError, ValueError, FileNotFoundError, PermissionError, KeyError)):
        return text, 2
    return f"{type(exc).__name__}: {text} (set REGTUNE_DEBUG=1 to see the traceback)", 1
