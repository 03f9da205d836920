"""A refit function for the tests of ``regtune.tuning.refits``, importable by name so the helper
process (forked from the fork server, which cannot import a test module) can run it.

It is ``regtune.tuning.final.refit`` that records which process ran it (``model.pid_``) and
acts on its trial's user attrs: ``test.here_wait`` (seconds the study's process (any but the helper)
waits before this refit, so the helper takes the next ones; counted from the helper's first
refit, which it marks in the file ``test.marker``, else next to the study's storage, so a helper
slow to start on a busy machine still finds work), ``test.in_helper``: ``"exit"``
(the helper dies, as by kill -9), ``"raise"`` (the refit fails there) or ``"unpicklable"`` (its
model cannot go back) or ``"hang"`` (it writes its pid to ``test.pid_file`` and sleeps 2
minutes); ``test.here_interrupt``: Ctrl-C in the study's process after the wait. ``FIRST_WAIT`` does what ``test.here_wait`` does for a study's trials.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path
from typing import Any

from regtune.tuning.final import refit
from regtune.tuning.refits import HELPER_NAME

__all__ = ["FIRST_WAIT", "refit_where"]

#: Seconds the first refit in the process that sets it waits (a study's refits through tune()).
FIRST_WAIT = {"s": 0.0}


def _helper_alive() -> bool:
    """Whether this process has a helper, or is starting one (the thread that feeds it)."""
    return any(t.name == HELPER_NAME and t.is_alive() for t in threading.enumerate())


def _marker(attrs: dict[str, Any], settings: Any) -> Path | None:
    """The file the helper creates when it starts its first refit."""
    if "test.marker" in attrs:
        return Path(attrs["test.marker"])
    storage = getattr(settings, "storage", None)
    return Path(f"{storage}.helper-refits") if storage else None


def refit_where(config: Any, trial: Any, folds: Any, settings: Any, stop: Any = None, n_jobs: int = 1) -> Any:
    attrs = trial.user_attrs if trial is not None else {}
    here = multiprocessing.current_process().name != HELPER_NAME
    marker = _marker(attrs, settings)
    if here:
        wait = attrs.get("test.here_wait", 0.0) + FIRST_WAIT["s"]
        FIRST_WAIT["s"] = 0.0
        deadline = time.monotonic() + 60
        while wait and marker is not None and not marker.exists() and _helper_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(wait)
        if attrs.get("test.here_interrupt"):
            raise KeyboardInterrupt
    else:
        if marker is not None:
            marker.touch()
        action = attrs.get("test.in_helper")
        if action == "exit":
            os._exit(9)
        if action == "hang":
            Path(attrs["test.pid_file"]).write_text(str(os.getpid()))
            time.sleep(120)
        if action == "raise":
            raise ValueError(f"refit of trial {trial.number} failed in the helper")
    model = refit(config, trial, folds, settings, stop=stop, n_jobs=n_jobs)
    model.pid_ = os.getpid()
    if not here and attrs.get("test.in_helper") == "unpicklable":
        model.lock_ = threading.Lock()
    return model
