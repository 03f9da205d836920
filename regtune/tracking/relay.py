"""Worker processes on one machine log through the process that started them.

A spawned worker that opened MLflow itself would import it (seconds of CPU per worker, on the
cores the trials need) and add one more writer to a SQLite store. Instead its
:class:`RelayTracker` sends each call down a pipe to a :class:`TrackerRelay` thread in the
parent, which runs it on the parent's :class:`~regtune.tracking.tracker.MLflowTracker` (and
its background writer). Epochs are sent without waiting; calls whose result or failure
matters (opening and closing a run) wait for the answer. A worker killed with ``kill -9``
loses nothing it had sent: the pipe holds it until the parent reads it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any

from regtune.exceptions import TrackingError

__all__ = ["RelayTracker", "TrackerRelay"]

# What a worker may ask of the parent's tracker; anything else is refused.
_CALLS = frozenset({"start_trial_run", "finish_trial", "set_tags", "end_run", "mark_orphans", "backfill",
                    "flush", "log_params", "log_metrics"})
_CASTS = frozenset({"log_epoch"})  # no answer awaited


class TrackerRelay:
    """Serve the workers' tracker calls in this process, one thread per worker pipe."""

    def __init__(self, tracker: Any) -> None:
        self._tracker = tracker
        self._threads: list[threading.Thread] = []

    def connect(self, context: Any) -> Connection:
        """A new pipe; returns the worker's end (pass it to the worker, then close it here)."""
        mine, theirs = context.Pipe(duplex=True)
        thread = threading.Thread(target=self._serve, args=(mine,), name="regtune-tracker-relay", daemon=True)
        thread.start()
        self._threads.append(thread)
        return theirs

    def join(self, timeout: float | None = None) -> None:
        """Wait until every worker has hung up (its calls are all served)."""
        for thread in self._threads:
            thread.join(timeout)

    def _serve(self, conn: Connection) -> None:
        with conn:
            while True:
                try:
                    name, args, kwargs = conn.recv()
                except (EOFError, OSError):  # the worker ended (or was killed): all it sent is served
                    return
                answer = name not in _CASTS
                try:
                    if name not in _CALLS and name not in _CASTS:
                        raise TrackingError(f"tracker call {name!r} is not relayed")
                    reply: tuple[str, Any] = ("ok", getattr(self._tracker, name)(*args, **kwargs))
                except Exception as exc:  # the worker raises it as its own
                    reply = ("error", f"{type(exc).__name__}: {exc}")
                if answer:
                    try:
                        conn.send(reply)
                    except (BrokenPipeError, OSError):
                        return


class RelayTracker:
    """The tracker interface a spawned worker uses: every call runs in the parent."""

    enabled = True

    def __init__(self, conn: Connection, tracking_uri: str) -> None:
        self._conn = conn
        self._lock = threading.Lock()  # the heartbeat or flusher threads never interleave a call
        self.tracking_uri = tracking_uri

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._conn.send((name, args, kwargs))
            status, value = self._conn.recv()
        if status == "error":
            raise TrackingError(f"MLflow (through the parent process): {value}")
        return value

    def log_epoch(self, run_id: str, epoch: int, metrics: Mapping[str, float]) -> None:
        with self._lock:
            self._conn.send(("log_epoch", (run_id, epoch, dict(metrics)), {}))

    def start_trial_run(self, *args: Any, **kwargs: Any) -> str:
        return self._call("start_trial_run", *args, **kwargs)

    def finish_trial(self, *args: Any, **kwargs: Any) -> None:
        self._call("finish_trial", *args, **kwargs)

    def set_tags(self, *args: Any, **kwargs: Any) -> None:
        self._call("set_tags", *args, **kwargs)

    def end_run(self, *args: Any, **kwargs: Any) -> None:
        self._call("end_run", *args, **kwargs)

    def mark_orphans(self, *args: Any, **kwargs: Any) -> int:
        return self._call("mark_orphans", *args, **kwargs)

    def backfill(self, *args: Any, **kwargs: Any) -> int:
        return self._call("backfill", *args, **kwargs)

    def log_params(self, *args: Any, **kwargs: Any) -> None:
        self._call("log_params", *args, **kwargs)

    def log_metrics(self, *args: Any, **kwargs: Any) -> None:
        self._call("log_metrics", *args, **kwargs)

    def flush(self, run_id: str | None = None) -> None:
        self._call("flush", run_id)

    def close(self) -> None:
        """Hang up; the parent has already written every finished trial."""
        with self._lock:
            self._conn.close()
