"""Every error regtune raises on purpose derives from :class:`RegtuneError`.

``except regtune.RegtuneError`` catches the user's mistakes (bad data, settings, spaces,
unreachable stores) and nothing else; each class also keeps the built-in base it had before
(``ValueError``, ``RuntimeError``), so older ``except ValueError`` code keeps working. The CLI
prints a ``RegtuneError`` as one line and exits 2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = [
    "DataError",
    "DivergenceError",
    "ModuleError",
    "RegConfigError",
    "RegtuneError",
    "ReportError",
    "SearchSpaceError",
    "StudyError",
    "TrackingError",
    "TuneError",
]


class RegtuneError(Exception):
    """Base of every error regtune raises about its input, settings or environment."""


class DataError(RegtuneError, ValueError):
    """The data cannot be used as given; the message says which value and how to fix it."""


class RegConfigError(RegtuneError, ValueError):
    """A configuration value is outside what the network accepts."""


class TuneError(RegtuneError, ValueError):
    """Settings that cannot run; raised before anything is created."""


class ReportError(RegtuneError, ValueError):
    """A study cannot be reported or ablated as asked (missing store, run, space or data)."""


class StudyError(RegtuneError, RuntimeError):
    """The study or its storage cannot be used as asked."""


class TrackingError(RegtuneError, RuntimeError):
    """The MLflow tracking store cannot be reached or written."""


class ModuleError(RegtuneError, ValueError):
    """A network given as ``module=`` / ``--model`` cannot be loaded, built, run or saved;
    the message names the module, the argument and what was expected."""


class DivergenceError(RegtuneError, FloatingPointError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, value: float) -> None:
        super().__init__(f"training diverged at epoch {epoch}: loss={value}")
        self.epoch, self.value = epoch, value

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.epoch, self.value))


class SearchSpaceError(RegtuneError, ValueError):
    """A search space file, or params given to a space, cannot be used.

    Parameters
    ----------
    detail : str
        What is wrong and what is allowed.
    path : path-like, optional
        The space's YAML file.
    line : int, optional
        1-based line in that file.
    key : str, optional
        Dotted location of the offending entry, e.g. ``regularizers.dropout.dropout.high``.
    """

    def __init__(
        self, detail: str, *, path: str | os.PathLike[str] | None = None,
        line: int | None = None, key: str | None = None,
    ) -> None:
        self.detail, self.line, self.key = detail, line, key
        self.path = Path(path) if path is not None else None
        where = "search space" + (f" '{self.path.name}'" if self.path else "")
        where += f", line {line}" if line else ""
        super().__init__(f"{where}: {key}: {detail}" if key else f"{where}: {detail}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_search_space_error, (type(self), self.detail, self.path, self.line, self.key))

    def within(self, prefix: str) -> SearchSpaceError:
        """The same error, its key nested under ``prefix``."""
        key = f"{prefix}.{self.key}" if self.key else prefix
        return type(self)(self.detail, path=self.path, line=self.line, key=key)




def _rebuild_search_space_error(cls: type[SearchSpaceError], detail: str, path: Path | None,
                   line: int | None, key: str | None) -> SearchSpaceError:
    return cls(detail, path=path, line=line, key=key)
