"""A worker: claims trials from the study queue and runs them until none is left.

The same function runs inline (``--jobs 1``) and in each spawned process (``--jobs N``); on
another machine it is simply another ``regtune tune`` against the same storage.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from regtune.metrics import Metric, get_metric
from regtune.space.space import SearchSpace
from regtune.tracking.relay import RelayTracker
from regtune.tracking.tracker import MLflowTracker, make_tracker, mask_secrets
from regtune.tuning.budget import search_deadline
from regtune.tuning.ensemble import PREDICTIONS_ATTR, encode_predictions, in_top
from regtune.tuning.queue import (
    OWNER_ATTR,
    claim_trials,
    has_heartbeats,
    heartbeat,
    reap_dead_trials,
    top_up,
)
from regtune.tuning.resources import threads_for, torch_threads
from regtune.tuning.storage import make_pruner, make_sampler, make_storage, sampler_seed
from regtune.tuning.trial import Folds, Network, TrialPruned, run_objective, trial_seed

__all__ = ["REPORTED_METRIC", "WorkerSpec", "close_reaped_runs", "run_worker", "worker_process"]

REPORTED_METRIC = "val_score"  # the epoch record's key that run_objective reports to Optuna

_logger = logging.getLogger("regtune")


@dataclass(frozen=True)
class WorkerSpec:
    """Plain, picklable settings a worker process rebuilds its study and tracker from."""

    study_name: str
    storage: str | None
    sampler: str
    pruner: str
    seed: int
    space: str
    metric: str
    device: str
    tracking_uri: str
    experiment: str
    parent_run_id: str
    warmup: int
    max_epochs: int
    timeout: float | None = None
    heartbeat_interval: int | None = None
    grace_period: int | None = None
    retry_failed: int = 0
    n_jobs: int = 1
    deadline: float | None = None  # wall clock (time.time()): spawned workers share the parent's
    n_trials: int = 0  # the study's total, to replace the trials of workers that died
    queue_batch: int | None = None  # with a timeout: trials queued at a time (regtune.tuning.budget)
    ensemble: int = 0  # >= 2: the top trials keep out-of-fold predictions (regtune.tuning.ensemble)
    network: Network = field(default_factory=Network)  # a user's module (--model), checked by the tuner


def run_worker(
    spec: WorkerSpec, folds: Folds, index: int, study: optuna.Study | None = None, tracker: Any = None
) -> None:
    """Claim and run trials until the queue is empty or the timeout passes.

    A spawned process rebuilds the study from ``spec``; the inline worker passes its own. A
    spawned worker on the parent's machine passes a tracker that relays to the parent's.
    """
    if spec.n_jobs > 1:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    deadline = spec.deadline or (time.time() + spec.timeout if spec.timeout else None)
    if study is None:
        storage = make_storage(
            spec.storage, heartbeat_interval=spec.heartbeat_interval, grace_period=spec.grace_period,
            retry_failed=spec.retry_failed,
        )
        study = optuna.load_study(
            study_name=spec.study_name,
            storage=storage,
            sampler=make_sampler(spec.sampler, sampler_seed(spec.seed + index, creator=False)),
            pruner=make_pruner(spec.pruner, warmup=spec.warmup, max_epochs=spec.max_epochs),
        )
    space = spec.network.space(SearchSpace.from_yaml(spec.space).for_task(folds.task))
    metric = get_metric(spec.metric, folds.task)
    if tracker is None:
        tracker = make_tracker(spec.tracking_uri, spec.experiment)
    # Trials set their own torch threads; the caller's setting comes back. What the tracker
    # still holds is written on the way out, Ctrl-C included.
    def search_ends() -> float | None:  # the final refit's time is kept out of the search's
        return search_deadline(deadline, study, folds.splits, len(folds.y), members=max(1, spec.ensemble))

    def out_of_time() -> bool:  # never before a trial completed: a study needs its baseline
        ends = search_ends()
        return (ends is not None and time.time() > ends
                and bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))))

    with _deferred_interrupt(), torch_threads(), contextlib.closing(tracker):
        while True:
            for trial in claim_trials(study, stop=lambda: _STOP.is_set() or out_of_time(),
                                      n_trials=spec.n_trials or None):
                _run_trial(study, trial, space, metric, folds, tracker, spec, stop_at=search_ends())
                if deadline is not None and time.time() > deadline:
                    return
            _stop_point()
            if spec.queue_batch is not None and not out_of_time() and _queue_more(study, spec):
                continue
            if not _replace_dead_workers_trials(study, tracker, spec, deadline, space.baseline_params()):
                return


def _queue_more(study: optuna.Study, spec: WorkerSpec) -> bool:
    """Queue the next batch of a study with a timeout; whether any trial was added."""
    before = len(study.get_trials(deepcopy=False))
    top_up(study, spec.n_trials, [], batch=spec.queue_batch)
    return len(study.get_trials(deepcopy=False)) > before


def close_reaped_runs(tracker: MLflowTracker, parent_run_id: str, reaped: Sequence[FrozenTrial]) -> None:
    """Close the MLflow runs of trials whose worker died, after giving each run back the epochs
    its worker had not written yet: Optuna holds the score of every epoch the trial reported
    (and its params), so a ``kill -9`` loses no epoch of the curve that Optuna has."""
    for t in reaped:
        run_id = t.user_attrs.get("mlflow_run_id")
        if run_id:
            params = {**t.params, **({"seed": t.user_attrs["seed"]} if "seed" in t.user_attrs else {})}
            tracker.backfill(run_id, REPORTED_METRIC, t.intermediate_values, params=params)
    if reaped:
        tracker.mark_orphans(parent_run_id, trials=[t.number for t in reaped])


_STOP = threading.Event()


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[None]:
    """Turn the first Ctrl-C into a request honoured at the next epoch boundary.

    A KeyboardInterrupt raised inside a storage or MLflow write can leave a SQLite transaction
    open and the store locked for everyone; between epochs nothing is being written. A second
    Ctrl-C is ignored so it cannot cut short the closing of the trial either.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _STOP.clear()
    previous = signal.signal(signal.SIGINT, _request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _request_stop(signum: int, frame: object) -> None:
    _STOP.set()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_point() -> None:
    if _STOP.is_set():
        raise KeyboardInterrupt


def _keeper(study: optuna.Study, trial: optuna.Trial, k: int, task: str) -> Callable[[float, np.ndarray], None]:
    """Keep a trial's out-of-fold predictions if it ranks among the top ``k`` when it ends
    (a trial outside them then can never enter them later)."""
    def keep(value: float, predictions: np.ndarray) -> None:
        if in_top(study, value, k):
            trial.set_user_attr(PREDICTIONS_ATTR, encode_predictions(predictions, task))

    return keep


def _budget_point(trial: optuna.Trial, epoch: int, stop_at: float | None) -> None:
    if stop_at is not None and time.time() > stop_at and not trial.user_attrs.get("baseline"):
        trial.set_user_attr("timeout", True)
        raise TrialPruned(epoch)


def _replace_dead_workers_trials(
    study: optuna.Study, tracker: MLflowTracker, spec: WorkerSpec, deadline: float | None,
    baseline_params: dict,
) -> bool:
    """The queue is empty: watch the trials other workers still run. One whose worker died
    (stale heartbeat, or a dead process on this host) is failed, its MLflow run closed and a
    replacement queued: then True. False once nothing runs, nothing can be watched (a journal
    file shared across hosts has no heartbeats), or the timeout has passed."""
    import socket

    host = socket.gethostname()
    heartbeats = has_heartbeats(study)
    while deadline is None or time.time() < deadline:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return False
        reaped = reap_dead_trials(study)
        if reaped:
            close_reaped_runs(tracker, spec.parent_run_id, reaped)
            top_up(study, spec.n_trials, reaped, spec.retry_failed, baseline_params=baseline_params)
            return True
        local = all(t.user_attrs.get(OWNER_ATTR, "").rpartition(":")[0] == host for t in running)
        if not (heartbeats or local):
            return False
        time.sleep(1.0)  # a peer finishing its last trial should not keep this worker long
    return False


def worker_process(
    spec: WorkerSpec, folds: Folds | str, index: int, parent_pid: int | None = None, relay: Connection | None = None
) -> None:
    """Entry point of a spawned worker: a Ctrl-C ends it quietly (its trial is already failed).

    Every trial is in the storage and MLflow by the time the queue is empty, so the process
    leaves without the interpreter's slow teardown of torch, SQLAlchemy and MLflow (seconds).
    A worker whose parent (``parent_pid``) dies stops too instead of training on as an orphan.
    With ``relay`` (a pipe to the parent's tracker) it never imports MLflow. ``folds`` may be
    the path of a pickle of them, which the parent removes once its workers have ended.
    """
    if parent_pid is not None:
        _stop_with_parent(parent_pid)
    if isinstance(folds, str):
        with open(folds, "rb") as f:
            folds = pickle.load(f)
    try:
        run_worker(spec, folds, index, tracker=RelayTracker(relay, spec.tracking_uri) if relay else None)
    except KeyboardInterrupt:
        sys.exit(130)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


_ORPHAN_GRACE = 5.0  # s an orphaned worker gets to fail its trial before it exits regardless


def _stop_with_parent(parent_pid: int) -> None:
    """Stop this worker when ``parent_pid`` dies (even by kill -9, which no handler sees).

    On Linux the kernel sends SIGINT at once (PR_SET_PDEATHSIG); elsewhere a watcher thread
    notices within half a second. SIGINT ends the running trial at its next epoch as a Ctrl-C
    would (FAIL, MLflow run KILLED); a worker still busy after a grace period exits anyway, and
    the next run reaps its trial by its dead process id.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGINT))  # PR_SET_PDEATHSIG

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.kill(os.getpid(), signal.SIGINT)
        time.sleep(_ORPHAN_GRACE)
        os._exit(130)

    threading.Thread(target=watch, name="regtune-parent-watch", daemon=True).start()


def _run_trial(
    study: optuna.Study, trial: optuna.Trial, space: SearchSpace, metric: Metric, folds: Folds,
    tracker: MLflowTracker, spec: WorkerSpec, stop_at: float | None = None,
) -> None:
    """Run one claimed trial; whatever happens, it ends in one Optuna state and its MLflow run
    carries the same state (tag ``state``). Past ``stop_at`` (a timeout's end of the search) it
    is pruned at its next epoch, the baseline excepted, with user attr ``timeout``."""
    seed = trial_seed(spec.seed, trial.number)
    trial.set_user_attr("seed", seed)
    with heartbeat(trial):
        run_id, value, metrics, tags = None, None, None, {}
        try:
            config, sample_error = None, None
            try:
                config = space.sample(trial)
                torch.set_num_threads(threads_for(config, folds.X.shape[1], spec.n_jobs))
            except Exception as exc:  # a trial that cannot even be sampled still gets its run
                sample_error = exc
            resolved = {f"config.{k}": v for k, v in config.to_dict().items()} if config else {}
            run_id = tracker.start_trial_run(
                spec.parent_run_id, trial.number,
                params={**trial.params, **resolved, "seed": seed},
                tags={"optuna.study": spec.study_name, "baseline": str(bool(trial.user_attrs.get("baseline")))},
            )
            trial.set_user_attr("mlflow_run_id", run_id)
            if sample_error is not None:
                raise sample_error
            value, summary = run_objective(
                trial, config, folds, metric, seed=seed, device=spec.device, warmup=spec.warmup,
                on_epoch=lambda epoch, record: (tracker.log_epoch(run_id, epoch, record), _stop_point(),
                                                _budget_point(trial, epoch, stop_at)),
                on_predictions=_keeper(study, trial, spec.ensemble, folds.task) if spec.ensemble > 1 else None,
                module=spec.network.estimator_params(trial.params),
            )
        except TrialPruned as exc:
            state, tags = TrialState.PRUNED, {"pruned_epoch": str(exc.epoch)}
        except KeyboardInterrupt:
            # Not counted (no fail_reason): a re-run of the command queues a replacement.
            trial.set_user_attr("interrupted", True)
            try:
                _close_run(tracker, run_id, "FAIL", {"fail_reason": "interrupted"}, status="KILLED")
            finally:
                study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as exc:  # a diverging or crashing trial fails alone; the study goes on
            reason = mask_secrets(f"{type(exc).__name__}: {exc}")[:500]  # it reaches the storage and the log
            trial.set_user_attr("fail_reason", reason)
            state, tags = TrialState.FAIL, {"fail_reason": reason}
            _logger.warning("trial %d failed: %s", trial.number, reason)
        else:
            state, metrics = TrialState.COMPLETE, summary
            trial.set_user_attr("best_epoch", summary["best_epoch"])
        try:
            _close_run(tracker, run_id, state.name, tags, metrics=metrics)
        finally:  # an MLflow error must not leave the Optuna trial RUNNING
            study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)


def _close_run(
    tracker: MLflowTracker, run_id: str | None, state: str, tags: dict, *, metrics: dict | None = None,
    status: str | None = None,
) -> None:
    if not run_id:
        return
    if status is None:
        tracker.finish_trial(run_id, state, metrics=metrics, tags=tags)
    else:
        tracker.set_tags(run_id, {**tags, "state": state})
        tracker.end_run(run_id, status)
