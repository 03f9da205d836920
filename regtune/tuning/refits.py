"""The final refits of a study (the best trial, the ensemble's other members, the baseline, the
network as written) one after the other in this process, or, for a study run with
``n_jobs >= 2``, shared with one helper process forked from the workers' fork server: each
refit goes to whichever process is free first, so two refits train at once on two cores.

A refit is a function of its configuration, its trial's seed and the data alone, so where it
runs does not change the model (beyond float rounding where a network trains on several
threads). The budget is kept as one after the other keeps it: a refit starts only where its
estimate still fits in the time left when it starts (:meth:`FinalBudget.fits`), and the best
trial's, which a :class:`StopBy` may cut short, always trains in this process. A helper that
cannot start, dies, or cannot send its model back leaves its refit to this process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial

from regtune.config import RegConfig
from regtune.tuning.budget import FinalBudget, StopBy
from regtune.tuning.settings import TuneSettings
from regtune.tuning.trial import Folds
from regtune.tuning.worker import exit_quietly, has_fork_server, stop_with_parent, worker_context

__all__ = ["HELPER_NAME", "RefitJob", "parallel_refits", "run_refits", "serve_refits"]

HELPER_NAME = "regtune-refit-helper"  # the helper process's name, and its feeding thread's

_logger = logging.getLogger("regtune")

#: ``fit(config, trial, folds, settings, stop=..., n_jobs=...)``: one refit (``final.refit``).
Fit = Callable[..., Any]


@dataclass
class RefitJob:
    """One refit: ``key`` names its result (jobs of one key are refit once: one trial's refit
    serves each of its roles). ``what`` is how the budget's note names it if it is skipped for
    time; ``None``: always refit. ``stop`` (the best
    trial's) keeps the job in this process, where the callback's state is read afterwards."""

    key: Hashable
    config: RegConfig
    trial: FrozenTrial | None
    what: str | None = None
    stop: StopBy | None = None


def parallel_refits(settings: TuneSettings) -> bool:
    """Whether this study's refits may take a second process: it ran workers, and new ones
    come from a fork server in milliseconds (a spawned process would import for seconds)."""
    return settings.n_jobs >= 2 and has_fork_server()


def run_refits(jobs: Sequence[RefitJob], fit: Fit, folds: Folds, settings: TuneSettings, budget: FinalBudget,
               *, lanes: int = 1) -> dict[Hashable, Any]:
    """Run ``jobs`` in their order in ``lanes`` processes (1 or 2); each key's model, ``None``
    where the budget skipped it (:attr:`FinalBudget.skipped` says so)."""
    queue = _Queue(jobs, budget)
    helper = _HelperLane(queue, fit, folds, settings) if lanes > 1 and len(queue) > 1 else None
    n_jobs = 2 if helper is not None else 1  # two refits at once share the cores, as two workers' trials did
    try:
        while True:
            while (job := queue.take(here=True)) is not None:
                started = time.time()
                queue.done(job, fit(job.config, job.trial, folds, settings, stop=job.stop, n_jobs=n_jobs))
                _logger.debug("refit %s here: %.2f s from %.3f", job.key, time.time() - started, started)
            if not queue.wait_for_helper():  # True: its job came back (it died); refit here
                break
    finally:
        queue.close()
        if helper is not None:
            helper.stop()
    return queue.results


class _Queue:
    """The jobs not started yet; a job is taken only when it still fits in the time left."""

    def __init__(self, jobs: Sequence[RefitJob], budget: FinalBudget) -> None:
        self._jobs: list[RefitJob] = []
        for job in jobs:  # one refit per key: the baseline may be an ensemble member too
            same = next((j for j in self._jobs if j.key == job.key), None)
            if same is None:
                self._jobs.append(job)
            elif same.what is not None and job.what is not None:
                same.what = f"{same.what} and {job.what}"
        self._budget, self._closed, self._away = budget, False, 0
        self._changed = threading.Condition()
        self.results: dict[Hashable, Any] = {}
        self.error: BaseException | None = None

    def __len__(self) -> int:
        return len(self._jobs)

    def take(self, here: bool) -> RefitJob | None:
        """The next job this process (``here``) or the helper may run; ``None`` when none is left."""
        with self._changed:
            if self.error is not None and here:
                raise self.error
            while not self._closed and self.error is None:
                job = next((j for j in self._jobs if here or j.stop is None), None)
                if job is None:
                    return None
                self._jobs.remove(job)
                if job.what is None or self._budget.fits(job.trial, job.what):
                    self._away += not here
                    return job
                self.results[job.key] = None
            return None

    def done(self, job: RefitJob, model: Any, *, helper: bool = False) -> None:
        self._back(helper, lambda: self.results.__setitem__(job.key, model))

    def give_back(self, job: RefitJob) -> None:
        """A job the helper could not finish: first in line again, for this process."""
        self._back(True, lambda: self._jobs.insert(0, job))

    def fail(self, error: BaseException) -> None:
        """A refit in the helper raised: no job starts any more, and this process raises it."""
        self._back(True, lambda: setattr(self, "error", self.error or error))

    def _back(self, helper: bool, update: Callable[[], None]) -> None:
        with self._changed:
            update()
            self._away -= helper
            self._changed.notify_all()

    def wait_for_helper(self) -> bool:
        """Wait until the helper holds no job; whether one came back for this process (or its
        error, raised by the next :meth:`take`). With nothing left, no job goes out again."""
        with self._changed:
            self._changed.wait_for(lambda: self._away == 0)
            if self._jobs or self.error is not None:
                return True
            self._closed = True
            return False

    def close(self) -> None:
        with self._changed:
            self._closed = True


@dataclass
class _HelperLane:
    """A thread of this process that feeds jobs to one helper process, one at a time."""

    queue: _Queue
    fit: Fit
    folds: Folds
    settings: TuneSettings
    _conn: Any = None
    _proc: Any = None
    _thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name=HELPER_NAME, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        job = None
        try:
            ctx = worker_context()
            self._conn, child = ctx.Pipe()
            self._proc = ctx.Process(target=serve_refits, args=(child, os.getpid()), daemon=True, name=HELPER_NAME)
            self._proc.start()
            child.close()
            self._conn.send((self.fit, self.folds, self.settings))
            self._conn.recv()  # ready: the jobs still waiting go to whichever process is free
            while (job := self.queue.take(here=False)) is not None:
                started = time.time()
                self._conn.send((job.config, job.trial))
                status, value = self._conn.recv()
                _logger.debug("refit %s in the helper: %.2f s from %.3f", job.key, time.time() - started, started)
                if status == "error":
                    self.queue.fail(value)
                    return
                if status != "ok":  # a model that does not pickle (a user's module): refit here
                    _logger.info("refit of %s goes on in this process: %s", job.key, value)
                    self.queue.give_back(job)
                    return
                self.queue.done(job, value, helper=True)
                job = None
        except Exception as exc:  # noqa: BLE001 - a helper that died or never started: its job is refit here
            if job is not None:
                self.queue.give_back(job)
            _logger.info("refits go on in this process alone: %s", exc)
        finally:
            if self._conn is not None:  # the helper reads the end of its pipe and exits
                with contextlib.suppress(OSError):
                    self._conn.close()

    def stop(self) -> None:
        """End the helper: at once where it still refits (on the way out of an error or
        Ctrl-C, its model is not wanted), else it exits on its own when its pipe closes."""
        if self._proc is not None and self._proc.pid is not None and self._proc.is_alive() and self._thread.is_alive():
            self._proc.kill()
            self._proc.join(timeout=5)
        self._thread.join(timeout=10)


def serve_refits(conn: Any, parent_pid: int) -> None:
    """The helper process: receives the refit function, folds and settings once, then refits
    one job after another until this process closes the pipe; each model goes back pickled.

    It ends with its parent (:func:`~regtune.tuning.worker.stop_with_parent`), and without
    the interpreter's slow teardown of torch.
    """
    stop_with_parent(parent_pid)
    try:
        fit, folds, settings = conn.recv()
        conn.send("ready")
        while True:
            config, trial = conn.recv()
            try:
                model = fit(config, trial, folds, settings, n_jobs=2)
            except Exception as exc:  # noqa: BLE001 - raised again in the study's process
                conn.send(("error", _sendable(exc)))
                continue
            try:
                conn.send(("ok", model))
            except Exception as exc:  # noqa: BLE001 - e.g. a model that does not pickle
                conn.send(("unsent", f"{type(exc).__name__}: {exc}"))
    except (EOFError, OSError):  # the study's process is done with this one
        pass
    exit_quietly()


def _sendable(exc: Exception) -> Exception:
    """``exc`` if it pickles, else a RuntimeError with its text."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc
