"""The worker processes of one study: this process is worker 0, the others are started once
(from a fork server) and claim trials from the study's queue until it is empty.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna

from regtune.processes import safe_path_environment
from regtune.tracking.relay import RelayTracker, TrackerProcess, TrackerRelay
from regtune.tracking.tracker import StudyTracker
from regtune.tuning.queue import reap_dead_trials, runnable_trials
from regtune.tuning.resources import assign_devices, passive_openmp
from regtune.tuning.storage import StudyError
from regtune.tuning.trial import Folds
from regtune.tuning.worker import (
    WorkerSpec,
    close_reaped_runs,
    run_worker,
    worker_context,
    worker_process,
)

__all__ = ["run_workers", "sigint_ignored"]


def run_workers(
    spec: WorkerSpec, folds: Folds, study: optuna.Study, console: Any, tracker: StudyTracker,
) -> None:
    """Run the study's trials in ``spec.settings.n_jobs`` processes (this one included) until
    its queue is empty; a worker that died is reaped, its MLflow run closed."""
    from regtune.tuning.progress import StudyProgress

    settings = spec.settings
    with StudyProgress(study, settings.n_trials, enabled=settings.progress, console=console):
        n_procs = max(1, min(settings.n_jobs, runnable_trials(study, settings.n_trials)))
        specs = [replace(spec, settings=replace(settings, device=device))  # each worker its own device
                 for device in assign_devices(settings.device, n_procs, _n_gpus())]
        # Trials log through a tracker process (MLflow off their critical path, on another
        # core); where there is none, through this process's tracker.
        process = TrackerProcess.shared() if tracker.enabled and TrackerProcess.supported() else None
        inline = tracker if process is None else RelayTracker(
            process.connect(tracker.tracking_uri, settings.experiment), tracker.tracking_uri)
        if n_procs == 1:
            # One process is enough; with nothing queued it still waits for trials running in
            # other processes (and replaces those of dead ones) before the study is finished.
            run_worker(specs[0], folds, 0, study, inline)
            return
        # This process is worker 0 (torch and the data are loaded already: it trains at once);
        # workers 1..N-1 are started once and claim trials from the queue until it is empty.
        with sigint_ignored(), passive_openmp():
            ctx = worker_context()
        # Workers never import MLflow, and a SQLite store has one writer per machine.
        relay = TrackerRelay(tracker) if tracker.enabled and process is None else None
        pipes = [process.address if process is not None else relay.connect(ctx) if relay else None
                 for _ in range(1, n_procs)]
        with tempfile.TemporaryDirectory(prefix="regtune-workers-") as tmp:
            # The data go through a file: more than a pipe's 64 KB in the spawn arguments would
            # hold this process in start() until the worker has imported torch (seconds).
            shared = Path(tmp) / "folds.pkl"
            with shared.open("wb") as f:
                pickle.dump(folds, f, protocol=pickle.HIGHEST_PROTOCOL)
            procs = [ctx.Process(target=worker_process, args=(specs[i], str(shared), i, os.getpid(), pipes[i - 1]),
                                 daemon=False) for i in range(1, n_procs)]
            starting = _Starter(procs, pipes, ctx.get_start_method() == "forkserver")
            try:
                run_worker(specs[0], folds, 0, study, inline)
                starting.join()
                for p in procs:
                    p.join()
                if relay is not None:
                    relay.join(timeout=30)
            except KeyboardInterrupt:
                starting.join(quiet=True)
                _stop_workers(procs)
                raise
            finally:
                starting.join(quiet=True)  # none starts after the data's folder is gone
                # A worker that died mid-trial left its trial RUNNING and its MLflow run open.
                close_reaped_runs(tracker, spec.parent_run_id, reap_dead_trials(study))
        bad = [p.exitcode for p in procs if p.exitcode not in (0, None)]
        if bad:
            raise StudyError(f"{len(bad)} of {len(procs)} worker processes failed (exit codes {bad}); see the log above")


class _Starter:
    """Starts the worker processes; from a fork server, in a thread while worker 0 trains.

    The first ``start()`` on a fork server waits until it has imported torch (seconds after
    :func:`~regtune.tuning.worker.prestart_workers` on a cold start): worker 0 trains
    meanwhile instead of waiting with it. The fork server's children take its environment and
    signal settings (SIG_IGN for SIGINT, sleeping OpenMP threads, a safe ``sys.path``), set
    when it started. A spawned worker takes this process's, set here around ``start()``.
    """

    def __init__(self, procs: list, pipes: list, in_background: bool) -> None:
        self._procs, self._pipes, self._error = procs, pipes, None
        self._thread = None
        if in_background:
            self._thread = threading.Thread(target=self._run, name="regtune-worker-start", daemon=True)
            self._thread.start()
        else:
            # A worker booting up is not killed mid-import by Ctrl-C (it inherits SIG_IGN), its
            # torch loads with sleeping OpenMP threads, and it never imports from the working folder.
            with sigint_ignored(), passive_openmp(), safe_path_environment():
                self._run()
            self.join()  # a worker that cannot start fails the study before worker 0 trains

    def _run(self) -> None:
        try:
            for p in self._procs:
                p.start()
        except BaseException as exc:  # noqa: BLE001 - raised by join(), in the caller's thread
            self._error = exc
        finally:
            for pipe in self._pipes:
                if pipe is not None and not isinstance(pipe, str):
                    pipe.close()  # the worker holds its own copy; its end closing is how we hear it stop

    def join(self, quiet: bool = False) -> None:
        """Wait until every worker has started (one that did not is left out of the list);
        raise what stopped one from starting, unless ``quiet`` (on the way out of an error)."""
        if self._thread is not None:
            self._thread.join()
        self._procs[:] = [p for p in self._procs if p.pid is not None]
        if self._error is not None and not quiet:
            error, self._error = self._error, None
            raise error


def _n_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop_workers(procs: list) -> None:
    """After Ctrl-C: let the workers fail their running trials and close their MLflow runs.

    A Ctrl-C in a terminal reaches the workers too, ``kill -INT`` on this process does not:
    each worker gets one SIGINT from here as well (a worker acts on the first only). A worker
    still booting ignores it; one still running after 10 s is terminated, and a trial it left
    RUNNING is reaped by the caller.
    """
    for p in procs:
        if p.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGINT)
    deadline = time.monotonic() + 10
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.terminate()
            p.join(timeout=5)
