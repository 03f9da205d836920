"""Trials log to MLflow through a tracker process, off their critical path.

A trial that wrote to MLflow itself would wait on SQLite commits (tens of milliseconds each),
and its process would import MLflow (seconds of CPU). Instead every worker (the inline one
of ``--jobs 1`` included) holds a :class:`RelayTracker` that sends each call down a pipe to a
:class:`TrackerRelay`, which runs it on a real :class:`~regtune.tracking.tracker.MLflowTracker`
(and its background writer). :class:`TrackerProcess` runs that relay in a process of its own,
so MLflow's CPU and I/O go to another core while the trial trains.

Nothing a trial does waits for MLflow: opening its run returns a token at once (the real run
id follows down the pipe, see :meth:`RelayTracker.resolve`), and epochs and the run's end are
sent without waiting. A worker killed with ``kill -9`` loses nothing it had sent: the pipe
holds it until the relay reads it; the tracker process writes what it holds once every
worker has hung up, even when the process that started it was killed.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from regtune.exceptions import TrackingError
from regtune.processes import python_command, safe_environment

if TYPE_CHECKING:
    from regtune.tracking.tracker import Tracker

__all__ = ["RelayTracker", "TrackerProcess", "TrackerRelay", "connect"]

# What a worker may ask of the relay's tracker; anything else is refused.
_CALLS = frozenset({"mark_orphans", "backfill", "flush", "log_params", "log_metrics", "trial_run_id"})
# Sent without waiting for an answer; a failure is logged by the relay.
_CASTS = frozenset({"open_trial_run", "log_epoch", "finish_trial", "set_tags", "end_run"})

_logger = logging.getLogger("regtune")
BOOT_TIMEOUT = 120.0  # s the tracker process may take to import MLflow (a loaded machine)


class TrackerRelay:
    """Serve the workers' tracker calls, one thread per worker pipe.

    Either every pipe uses ``tracker``, or each pipe names its store and experiment first
    (``("hello", (tracking_uri, experiment), {})``) and gets the tracker ``open_tracker`` makes
    for them, made once per store: one tracker process serves every study of a session.
    """

    def __init__(self, tracker: Tracker | None = None, *,
                 open_tracker: Callable[[str, str], Tracker] | None = None) -> None:
        self._tracker, self._open_tracker = tracker, open_tracker
        self._trackers: dict[tuple[str, str], Tracker] = {}
        self._opening = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._runs: dict[str, str | None] = {}  # token -> run id (None: the run could not be opened)

    def trackers(self) -> list[Tracker]:
        """Every tracker this relay has used."""
        return [t for t in (self._tracker, *self._trackers.values()) if t is not None]

    def connect(self, context: Any) -> Connection:
        """A new pipe; returns the worker's end (pass it to the worker, then close it here)."""
        mine, theirs = context.Pipe(duplex=True)
        self.serve(mine)
        return theirs

    def serve(self, conn: Connection) -> None:
        """Serve ``conn`` in a thread until its worker hangs up."""
        thread = threading.Thread(target=self._serve, args=(conn,), name="regtune-tracker-relay", daemon=True)
        thread.start()
        self._threads.append(thread)

    def join(self, timeout: float | None = None) -> None:
        """Wait until every worker has hung up (its calls are all served)."""
        for thread in self._threads:
            thread.join(timeout)

    def _serve(self, conn: Connection) -> None:
        tracker = self._tracker
        with conn:
            while True:
                try:
                    name, args, kwargs = conn.recv()
                except (EOFError, OSError):  # the worker ended (or was killed): all it sent is served
                    return
                if name == "hello" and self._open_tracker is not None:
                    tracker = self._store(*args)
                    continue
                try:
                    if isinstance(tracker, Exception):
                        raise TrackingError(f"the MLflow store cannot be used: {tracker}")
                    reply = self._run(tracker, name, args, kwargs)
                except Exception as exc:
                    if name in _CASTS:  # nobody waits for it: say so here
                        _logger.warning("MLflow: %s failed: %s: %s", name, type(exc).__name__, exc)
                        continue
                    reply = ("error", f"{type(exc).__name__}: {exc}")  # the worker raises it as its own
                if reply is not None:
                    try:
                        conn.send(reply)
                    except (BrokenPipeError, OSError):
                        return

    def _store(self, tracking_uri: str, experiment: str) -> Tracker | Exception:
        """The tracker of this store and experiment (or why there is none)."""
        assert self._open_tracker is not None
        with self._opening:
            key = (tracking_uri, experiment)
            if key not in self._trackers:
                try:
                    self._trackers[key] = self._open_tracker(tracking_uri, experiment)
                except Exception as exc:  # said to each call that needs it
                    return exc
            return self._trackers[key]

    def _run(self, tracker: Tracker | None, name: str, args: tuple, kwargs: dict) -> tuple | None:
        if name not in _CALLS and name not in _CASTS:
            raise TrackingError(f"tracker call {name!r} is not relayed")
        if name == "open_trial_run":  # the worker learns the run id, or that there is none
            token, *rest = args
            try:
                self._runs[token] = tracker.start_trial_run(*rest, **kwargs)
            except Exception as exc:
                self._runs[token] = None
                _logger.warning("MLflow: could not open the run of trial %s: %s: %s", rest[1] if len(rest) > 1 else "?",
                                type(exc).__name__, exc)
            return ("run", token, self._runs[token])
        if args and isinstance(args[0], str) and args[0] in self._runs:
            run_id = self._runs[args[0]]
            if run_id is None:
                raise TrackingError("the trial's MLflow run could not be opened")
            args = (run_id, *args[1:])
        value = getattr(tracker, name)(*args, **kwargs)
        return None if name in _CASTS else ("ok", value)


class RelayTracker:
    """The tracker interface a worker uses: every call runs in the relay, none waits for MLflow
    except those whose answer the worker needs (reaping a dead worker's trials, flushing)."""

    enabled = True

    def __init__(self, conn: Connection, tracking_uri: str) -> None:
        self._conn = conn
        self._lock = threading.Lock()  # the heartbeat or flusher threads never interleave a call
        self._runs: dict[str, str | None] = {}
        self.tracking_uri = tracking_uri

    def _send(self, name: str, *args: Any, **kwargs: Any) -> None:
        try:
            self._conn.send((name, args, kwargs))
        except (BrokenPipeError, OSError):
            raise TrackingError("the MLflow tracker process has ended; the study's MLflow runs stop here, "
                                "its Optuna trials are kept (resume with the same command)") from None

    def _receive(self) -> tuple:
        """The next answer; run ids arriving meanwhile are kept. Caller holds ``_lock``."""
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                raise TrackingError("the MLflow tracker process has ended") from None
            if message[0] != "run":
                return message
            self._runs[message[1]] = message[2]

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._send(name, *args, **kwargs)
            status, value = self._receive()
        if status == "error":
            raise TrackingError(f"MLflow (through the tracker process): {value}")
        return value

    def _cast(self, name: str, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            self._send(name, *args, **kwargs)

    def start_trial_run(self, parent_run_id: str, trial_number: int, params: Mapping[str, Any],
                        tags: Mapping[str, Any] | None = None) -> str:
        """Open the trial's run without waiting; returns a token every later call may use in
        place of the run id, and :meth:`resolve` turns into the run id."""
        token = f"pending-{uuid.uuid4().hex}"
        self._cast("open_trial_run", token, parent_run_id, trial_number, dict(params), dict(tags or {}))
        return token

    def resolve(self, run_id: str, *, wait: bool = False) -> str | None:
        """The MLflow run id behind a token of :meth:`start_trial_run` (any other id is itself);
        ``None`` while the relay has not answered (``wait=False``) or if the run could not be opened."""
        if not run_id.startswith("pending-"):
            return run_id
        with self._lock:
            while run_id not in self._runs and (wait or self._conn.poll()):
                try:
                    message = self._conn.recv()
                except (EOFError, OSError):
                    raise TrackingError("the MLflow tracker process has ended") from None
                if message[0] != "run":  # only run ids come unasked
                    raise TrackingError(f"unexpected answer from the MLflow tracker process: {message[0]!r}")
                self._runs[message[1]] = message[2]
            return self._runs.get(run_id)

    def log_epoch(self, run_id: str, epoch: int, metrics: Mapping[str, float]) -> None:
        self._cast("log_epoch", run_id, epoch, dict(metrics))

    def finish_trial(self, run_id: str, state: str, metrics: Mapping[str, float] | None = None,
                     tags: Mapping[str, Any] | None = None, *, step: int | None = None) -> None:
        self._cast("finish_trial", run_id, state, metrics=_plain(metrics), tags=_plain(tags), step=step)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self._cast("set_tags", run_id, dict(tags))

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self._cast("end_run", run_id, status)

    def mark_orphans(self, parent_run_id: str, status: str = "KILLED",
                     trials: Iterable[int] | Callable[[int], bool] | None = None, *,
                     ended_too: bool = False) -> int:
        if callable(trials):
            raise TypeError("a relayed mark_orphans takes the trial numbers, not a predicate")
        numbers = None if trials is None else list(trials)
        return self._call("mark_orphans", parent_run_id, status, numbers, ended_too=ended_too)

    def backfill(self, run_id: str, key: str, values: Mapping[int, float],
                 params: Mapping[str, Any] | None = None) -> int:
        return self._call("backfill", run_id, key, dict(values), params=_plain(params))

    def trial_run_id(self, parent_run_id: str, trial_number: int) -> str | None:
        return self._call("trial_run_id", parent_run_id, trial_number)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        self._call("log_params", run_id, dict(params))

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._call("log_metrics", run_id, dict(metrics), step)

    def flush(self, run_id: str | None = None) -> None:
        """Write what the relay holds (for ``run_id``) now, and wait until it is written."""
        self._call("flush", run_id)

    def close(self) -> None:
        """Wait until everything this worker sent is written, then hang up. Never raises: it
        runs on the way out of Ctrl-C too (what is in the pipe is written all the same)."""
        try:
            self.flush()
        except TrackingError as exc:
            _logger.warning("MLflow: %s", exc)
        finally:
            with self._lock:
                self._conn.close()


def _plain(mapping: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A mapping as a dict (it goes down a pipe), ``None`` as itself."""
    return None if mapping is None else dict(mapping)


class TrackerProcess:
    """A process running a :class:`TrackerRelay` over MLflow trackers of its own; workers connect
    to its socket (:meth:`connect`), the inline worker of ``--jobs 1`` as well as spawned ones.

    One serves every study of a Python process (:meth:`shared`), whatever their stores: a
    notebook, a test session or a benchmark that tunes again does not import MLflow again. It
    is a plain subprocess (not ``multiprocessing``), so a user's script is never re-imported
    in it, in a session of its own, so a Ctrl-C meant for the study does not cut its writes
    short. The socket exists before the process has booted (workers connect and send at once;
    the kernel holds it all); the process ends once this one lets it go (:meth:`retire`, at
    exit, or by dying) and every worker has hung up, having written everything it was sent.
    """

    _shared: TrackerProcess | None = None
    _lock = threading.Lock()

    def __init__(self, proc: subprocess.Popen, address: str) -> None:
        self._proc, self.address = proc, address
        self._ready = False

    @staticmethod
    def supported() -> bool:
        """Unix sockets and inherited descriptors: POSIX (elsewhere trackers stay in-process)."""
        return os.name == "posix" and hasattr(socket, "AF_UNIX")

    @classmethod
    def shared(cls) -> TrackerProcess:
        """This Python process's tracker process, started if there is none (or it died)."""
        with cls._lock:
            if cls._shared is None or not cls._shared.alive():
                cls._shared = cls._start()
            return cls._shared

    @classmethod
    def _start(cls) -> TrackerProcess:
        folder = tempfile.mkdtemp(prefix="regtune-tracker-")  # private (0700): only this user connects
        address = os.path.join(folder, "socket")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(address)
            listener.listen(128)
            fd = listener.fileno()
            # Only this installation's regtune and MLflow, never a mlflow.py in the working folder.
            proc = subprocess.Popen(
                python_command(code="from regtune.tracking.relay import _main; _main()"),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=[fd], env=safe_environment(),
                start_new_session=True,
            )
        finally:
            listener.close()  # the process holds its own: if it dies, connecting fails at once
        assert proc.stdin is not None
        # stdin stays open: its end (this process exiting, even by kill -9) tells it to finish.
        proc.stdin.write(json.dumps({"fd": fd}).encode() + b"\n")
        proc.stdin.flush()
        process = cls(proc, address)
        atexit.register(process.retire)
        return process

    def alive(self) -> bool:
        return self._proc.poll() is None and os.path.exists(self.address)

    def connect(self, tracking_uri: str, experiment: str) -> Connection:
        """A new pipe to the process, for :class:`RelayTracker`, logging to this store, once
        the process has booted (see :meth:`wait_ready`)."""
        self.wait_ready()
        return connect(self.address, tracking_uri, experiment)

    def wait_ready(self, timeout: float = BOOT_TIMEOUT) -> None:
        """Wait until the process has imported MLflow; raise :class:`TrackingError` at once if
        it could not (the study's process imported MLflow meanwhile: this is rarely a wait)."""
        if self._ready:
            return
        assert self._proc.stdout is not None
        readable, _, _ = select.select([self._proc.stdout], [], [], timeout)
        line = self._proc.stdout.readline() if readable else b""
        try:
            status = json.loads(line) if line.strip() else {}
        except ValueError:
            status = {}
        if status.get("ready"):
            self._ready = True
            return
        if not readable:
            reason = f"it has not started within {timeout:.0f} s"
        elif "error" in status:
            reason = status["error"]
        else:
            code = self._proc.wait(5) if self._proc.poll() is None else self._proc.returncode
            reason = f"it exited with code {code}; its error is printed above"
        self.retire()
        raise TrackingError(
            f"the MLflow tracker process could not start ({reason}); check that mlflow imports in "
            f"{sys.executable}, or pass --tracking-uri off"
        )

    def retire(self, timeout: float | None = None) -> None:
        """Let it go: it serves the workers still connected, writes, and ends. ``timeout``:
        wait that long for it to end."""
        with contextlib.suppress(OSError):
            os.unlink(self.address)
            os.rmdir(os.path.dirname(self.address))
        with contextlib.suppress(OSError):
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        if timeout is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout)


def connect(address: str, tracking_uri: str, experiment: str) -> Connection:
    """Connect to a :class:`TrackerProcess` at ``address`` and name the store (the URI goes
    down the socket, never into a command line); returns at once even while it boots."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(address)
    except OSError as exc:
        sock.close()
        raise TrackingError(f"the MLflow tracker process at {address} cannot be reached ({exc})") from None
    conn = Connection(sock.detach())
    conn.send(("hello", (tracking_uri, experiment), {}))
    return conn


def _main() -> None:
    """The tracker process: accept workers and serve them until the study's process lets go."""
    from regtune.tracking.tracker import MLflowTracker

    config = json.loads(sys.stdin.readline())
    listener = socket.socket(fileno=config["fd"])
    try:
        from mlflow.tracking import MlflowClient  # noqa: F401  (what every tracker needs, imported once)
    except Exception as exc:
        sys.stdout.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        sys.stdout.flush()
        os._exit(1)
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    os.dup2(2, 1)  # nobody reads the pipe from now on: anything printed goes where errors go
    released = threading.Event()

    def watch_parent() -> None:
        sys.stdin.read()  # returns at EOF: the study's process retired us or died
        released.set()

    threading.Thread(target=watch_parent, name="regtune-tracker-parent", daemon=True).start()
    relay = TrackerRelay(open_tracker=MLflowTracker)
    listener.settimeout(0.5)
    while not released.is_set():
        try:
            sock, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            break
        sock.settimeout(None)
        relay.serve(Connection(sock.detach()))
    listener.close()
    relay.join()
    try:
        for tracker in relay.trackers():
            with contextlib.suppress(Exception):  # a store that is down: nothing more to do
                tracker.close()
    finally:
        logging.shutdown()
        sys.stderr.flush()
        os._exit(0)  # without the interpreter's slow teardown of MLflow and SQLAlchemy
