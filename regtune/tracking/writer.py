"""The background writer of an :class:`~regtune.tracking.tracker.MLflowTracker`.

Each call to a SQLite store costs milliseconds of Python (SQLAlchemy) and a commit, so per-epoch
metrics and trial params wait here, per run, and one thread per tracker has them written as one
batch every ``interval`` seconds (live curves); at exit, what is queued is written.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import weakref
from collections.abc import Iterable
from typing import Protocol

from regtune.tracking.masking import mask_secrets

__all__ = ["BackgroundWriter"]

_logger = logging.getLogger("regtune")


class _Owner(Protocol):
    def flush(self) -> None: ...

    def close(self) -> None: ...


class BackgroundWriter:
    """Metrics and params waiting to be written, per run, in the order they came, and the
    thread that has its owner write them (``owner.flush()``) every ``interval`` seconds.

    The thread holds only a weak reference to the owner, so a tracker nobody uses any more is
    collected and its thread ends. ``interval <= 0``: no thread, the owner writes when it must.
    """

    def __init__(self, owner: _Owner, interval: float) -> None:
        self._owner = weakref.ref(owner)
        self._interval = interval
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[list, list]] = {}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.failed = False  # the last write failed: the store is down

    def add(self, run_id: str, metrics: Iterable = (), params: Iterable = ()) -> None:
        """Queue for ``run_id``; starts the thread on first use."""
        with self._lock:
            queued = self._runs.setdefault(run_id, ([], []))
            queued[0].extend(metrics)
            queued[1].extend(params)
            start = self._thread is None and self._interval > 0
            if start:
                self._thread = threading.Thread(
                    target=_flush_loop, args=(self._owner, self._stopping, self._interval),
                    name="regtune-mlflow-flusher", daemon=True,
                )
        if start:
            assert self._thread is not None
            self._thread.start()
            atexit.register(_close_at_exit, self._owner, weakref.ref(self))

    def take(self, run_id: str) -> tuple[list, list]:
        """The run's queued metrics and params, removed from the queue."""
        with self._lock:
            return self._runs.pop(run_id, ([], []))

    def put_back(self, run_id: str, metrics: list, params: list) -> None:
        """Return what :meth:`take` gave after a failed write, ahead of what came since."""
        with self._lock:
            later = self._runs.pop(run_id, ([], []))
            self._runs[run_id] = (metrics + later[0], params + later[1])
            self.failed = True

    def written(self) -> None:
        """A write succeeded: the store is up."""
        self.failed = False

    def run_ids(self) -> list[str]:
        with self._lock:
            return list(self._runs)

    def stop(self) -> None:
        """End the thread (after its current write); the next :meth:`add` starts another."""
        self._stopping.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._stopping.clear()


def _flush_loop(owner: weakref.ref, stopping: threading.Event, interval: float) -> None:
    failing = False
    while not stopping.wait(interval):
        tracker = owner()
        if tracker is None:
            return
        try:
            tracker.flush()
            failing = False
        except Exception as exc:  # the store is down: keep the queue, say so once, try again
            if not failing:
                _logger.warning("MLflow: could not write queued metrics (will retry): %s",
                                mask_secrets(f"{type(exc).__name__}: {exc}"))
            failing = True
        del tracker


def _close_at_exit(owner: weakref.ref, writer: weakref.ref) -> None:
    tracker, queue = owner(), writer()
    # A store that failed the last write is down: retrying it would hold up the exit.
    if tracker is not None and not (queue is not None and queue.failed):
        with contextlib.suppress(Exception):
            tracker.close()
