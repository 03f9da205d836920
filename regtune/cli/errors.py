"""How the CLI words each kind of error: expected ones are the user's to fix, others are ours."""

from __future__ import annotations

__all__ = ["describe"]


def describe(exc: BaseException) -> tuple[str, int]:
    """``(one-line message, exit code)``: 2 for bad input or settings, 1 for anything else."""
    from regtune.config import RegConfigError
    from regtune.data.loading import DataError
    from regtune.space.space import SearchSpaceError
    from regtune.tracking.tracker import TrackingError
    from regtune.tuning.storage import StudyError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (DataError, SearchSpaceError, RegConfigError, StudyError, TrackingError)):
        return text, 2
    if isinstance(exc, (ValueError, FileNotFoundError, PermissionError, KeyError)):
        return text, 2
    return f"{type(exc).__name__}: {text} (set REGTUNE_DEBUG=1 to see the traceback)", 1
