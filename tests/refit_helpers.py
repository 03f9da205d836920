"""A refit function for the tests of ``regtune.tuning.refits``, importable by name so the helper
process (forked from the fork server, which cannot import a test module) can run it.

It is ``regtune.tuning.final.refit`` that records which process ran it (``model.pid_``) and
acts on its trial's user attrs: ``test.here_wait`` (seconds the study's process, ``test.parent``,
waits before this refit, so the helper takes the next ones), ``test.in_helper``: ``"exit"``
(the helper dies, as by kill -9), ``"raise"`` (the refit fails there) or ``"unpicklable"`` (its
model cannot go back) or ``"hang"`` (it writes its pid to ``test.pid_file`` and sleeps 2
minutes); ``test.here_interrupt``: Ctrl-C in the study's process after the wait. ``FIRST_WAIT`` does what ``test.here_wait`` does for a study's trials.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from regtune.tuning.final import refit

__all__ = ["FIRST_WAIT", "refit_where"]

#: Seconds the first refit in the process that sets it waits (a study's refits through tune()).
FIRST_WAIT = {"s": 0.0}


def refit_where(config: Any, trial: Any, folds: Any, settings: Any, stop: Any = None, n_jobs: int = 1) -> Any:
    attrs = trial.user_attrs if trial is not None else {}
    here = os.getpid() == attrs.get("test.parent", os.getpid())
    if here:
        time.sleep(attrs.get("test.here_wait", 0.0) + FIRST_WAIT["s"])
        FIRST_WAIT["s"] = 0.0
        if attrs.get("test.here_interrupt"):
            raise KeyboardInterrupt
    else:
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
