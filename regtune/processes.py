"""How regtune starts Python processes: importing only from the installation, never from the
working folder.

``python -c CODE`` and ``python -m MODULE`` put the working folder first on ``sys.path``, so a
``mlflow.py``, ``regtune.py`` or ``statistics.py`` lying there would be imported (and run) in
place of the real one. Every interpreter regtune starts (the tracker process, the fork server
of the workers, the MLflow UI) gets a safe path instead: ``-P`` / ``PYTHONSAFEPATH`` on Python
3.11+, isolated mode (``-I``) with the installation named explicitly before that.
"""

from __future__ import annotations

import contextlib
import os
import sys
import sysconfig
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["INSTALL_ROOT", "python_command", "safe_environment", "safe_path_environment"]

INSTALL_ROOT = str(Path(__file__).resolve().parent.parent)  # where this regtune is imported from
_SAFE_PATH = sys.version_info >= (3, 11)
_environ_lock = threading.Lock()


def python_command(*, code: str | None = None, module: str | None = None) -> list[str]:
    """argv of this interpreter running ``code`` (``-c``) or ``module`` (``-m``) with the working
    folder off ``sys.path``; this regtune comes first on it (``PYTHONPATH`` is kept after it)."""
    if (code is None) == (module is None):
        raise ValueError("python_command takes code or module")
    # A source checkout (or editable install) is named first; site-packages is on the path already
    # and must not come before the standard library.
    root = [] if INSTALL_ROOT in _site_packages() else [INSTALL_ROOT]
    if _SAFE_PATH:
        flags, prelude = ["-P"], f"import sys; sys.path[:0] = {root!r}; "
    else:  # Python 3.10: no safe-path flag; isolated mode also drops PYTHONPATH, so name it here
        extra = [*root, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
        flags, prelude = ["-I"], f"import sys; sys.path[:0] = {extra!r}; "
    if code is not None:
        return [sys.executable, *flags, "-c", prelude + code]
    if _SAFE_PATH:
        return [sys.executable, *flags, "-m", module]
    return [sys.executable, *flags, "-c", prelude + f"import runpy; runpy.run_module({module!r}, run_name='__main__', "
            "alter_sys=True)"]


def safe_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) for a process whose own children, too, keep the working
    folder off ``sys.path`` (Python 3.11+ reads ``PYTHONSAFEPATH``)."""
    return {**(os.environ if env is None else env), "PYTHONSAFEPATH": "1"}


def _site_packages() -> set[str]:
    paths = sysconfig.get_paths()
    return {str(Path(paths[key]).resolve()) for key in ("purelib", "platlib")}


@contextlib.contextmanager
def safe_path_environment() -> Iterator[None]:
    """Processes started inside (``multiprocessing``'s fork server, which runs ``python -c``)
    keep the working folder off ``sys.path`` (``PYTHONSAFEPATH``, Python 3.11+)."""
    with _environ_lock:
        previous = os.environ.get("PYTHONSAFEPATH")
        os.environ["PYTHONSAFEPATH"] = "1"
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("PYTHONSAFEPATH", None)
            else:
                os.environ["PYTHONSAFEPATH"] = previous
