"""A worker: claims trials from the study queue and runs them until none is left.

The same function runs inline (``--jobs 1``) and in each spawned process (``--jobs N``); on
another machine it is simply another ``regtune tune`` against the same storage.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import optuna
import torch
from optuna.trial import TrialState

from regtune.config import RegConfig
from regtune.metrics import Metric, get_metric
from regtune.space.space import SearchSpace
from regtune.tracking.tracker import MLflowTracker, make_tracker
from regtune.tuning.queue import (
    OWNER_ATTR,
    claim_trials,
    has_heartbeats,
    heartbeat,
    reap_dead_trials,
    top_up,
)
from regtune.tuning.storage import make_pruner, make_sampler, make_storage, sampler_seed
from regtune.tuning.trial import Folds, TrialPruned, run_objective, trial_seed

__all__ = ["WorkerSpec", "run_worker", "worker_process"]

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


def run_worker(spec: WorkerSpec, folds: Folds, index: int, study: optuna.Study | None = None) -> None:
    """Claim and run trials until the queue is empty or the timeout passes.

    A spawned process rebuilds the study from ``spec``; the inline worker passes its own.
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
    space = SearchSpace.from_yaml(spec.space)
    metric = get_metric(spec.metric, folds.task)
    tracker = make_tracker(spec.tracking_uri, spec.experiment)
    threads = torch.get_num_threads()  # trials set their own; the caller's setting comes back
    with _deferred_interrupt(), _restore_threads(threads):
        while True:
            for trial in claim_trials(study, stop=_STOP.is_set):
                _run_trial(study, trial, space, metric, folds, tracker, spec)
                if deadline is not None and time.time() > deadline:
                    return
            _stop_point()
            if not _replace_dead_workers_trials(study, tracker, spec, deadline):
                return


_SMALL_BATCH_FLOPS = 5e6  # below this, one thread beats two (benchmarks/training_speed.py)


def _threads_for(config: RegConfig, n_features: int, n_jobs: int) -> int:
    """Torch threads for one trial: small networks run fastest on one thread (two threads
    spend more time synchronizing than computing); larger ones share the worker's cores."""
    widths = [n_features, *config.hidden_layer_sizes]
    flops = config.batch_size * sum(a * b for a, b in zip(widths, widths[1:], strict=False))
    if config.architecture == "mlp" and flops < _SMALL_BATCH_FLOPS:
        return 1
    return max(1, (os.cpu_count() or 1) // n_jobs)


@contextlib.contextmanager
def _restore_threads(threads: int) -> Iterator[None]:
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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


def _replace_dead_workers_trials(
    study: optuna.Study, tracker: MLflowTracker, spec: WorkerSpec, deadline: float | None
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
            tracker.mark_orphans(spec.parent_run_id, trials=[t.number for t in reaped])
            top_up(study, spec.n_trials, reaped, spec.retry_failed)
            return True
        local = all(t.user_attrs.get(OWNER_ATTR, "").rpartition(":")[0] == host for t in running)
        if not (heartbeats or local):
            return False
        time.sleep(1.0)  # a peer finishing its last trial should not keep this worker long
    return False


def worker_process(spec: WorkerSpec, folds: Folds, index: int) -> None:
    """Entry point of a spawned worker: a Ctrl-C ends it quietly (its trial is already failed).

    Every trial is in the storage and MLflow by the time the queue is empty, so the process
    leaves without the interpreter's slow teardown of torch, SQLAlchemy and MLflow (seconds).
    """
    try:
        run_worker(spec, folds, index)
    except KeyboardInterrupt:
        sys.exit(130)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _run_trial(
    study: optuna.Study, trial: optuna.Trial, space: SearchSpace, metric: Metric, folds: Folds,
    tracker: MLflowTracker, spec: WorkerSpec,
) -> None:
    """Run one claimed trial; whatever happens, it ends in one Optuna state and its MLflow run
    carries the same state (tag ``state``)."""
    seed = trial_seed(spec.seed, trial.number)
    trial.set_user_attr("seed", seed)
    with heartbeat(trial):
        run_id, value, metrics, tags = None, None, None, {}
        try:
            config, sample_error = None, None
            try:
                config = space.sample(trial)
                torch.set_num_threads(_threads_for(config, folds.X.shape[1], spec.n_jobs))
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
                on_epoch=lambda epoch, record: (tracker.log_epoch(run_id, epoch, record), _stop_point()),
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
            reason = f"{type(exc).__name__}: {exc}"[:500]
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
