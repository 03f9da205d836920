"""A worker: claims trials from the study queue and runs them until none is left.

The same function runs inline (``--jobs 1``) and in each spawned process (``--jobs N``); on
another machine it is simply another ``regtune tune`` against the same storage.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing import forkserver
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from regtune.metrics import Metric, get_metric
from regtune.nn.cohort import cohort_problem
from regtune.processes import safe_path_environment
from regtune.space.space import SearchSpace
from regtune.tracking.masking import mask_secrets
from regtune.tracking.relay import RelayTracker, connect
from regtune.tracking.tracker import Tracker, make_tracker
from regtune.tuning.budget import OutOfTime, search_deadline
from regtune.tuning.cohort import (
    AUTO,
    AUTO_ATTR,
    AUTO_SHARE,
    AUTO_SIZES,
    FALLBACK_ATTR,
    batching_problem,
    choose_cohort_size,
    cohort_sampler,
    fits_cohort,
    fixed_params,
    run_cohort_objective,
)
from regtune.tuning.ensemble import keep_predictions
from regtune.tuning.journal import process_alive
from regtune.tuning.queue import (
    OWNER_ATTR,
    claim_trials,
    has_heartbeats,
    heartbeat,
    reap_dead_trials,
    top_up,
)
from regtune.tuning.resources import threads_for, torch_threads
from regtune.tuning.settings import TuneSettings
from regtune.tuning.storage import make_pruner, make_sampler, make_storage, sampler_seed
from regtune.tuning.trial import Folds, Network, TrialPruned, run_objective, trial_seed

__all__ = ["COHORT_ATTR", "REPORTED_METRIC", "WorkerSpec", "close_reaped_runs", "exit_quietly", "has_fork_server",
           "prestart_workers", "run_worker", "stop_with_parent", "worker_context", "worker_process"]

REPORTED_METRIC = "val_score"  # the epoch record's key that run_objective reports to Optuna

_logger = logging.getLogger("regtune")
COHORT_ATTR = "regtune.cohort"  # "<leader's number>x<members>" on each trial trained in a cohort


@dataclass(frozen=True)
class WorkerSpec:
    """Plain, picklable settings a worker process rebuilds its study and tracker from: the run's
    :class:`~regtune.tuning.settings.TuneSettings` as resolved for it (study name, space, metric,
    tracking URI, this worker's device) and what the tuner derived from them."""

    settings: TuneSettings
    parent_run_id: str
    warmup: int
    max_epochs: int
    deadline: float | None = None  # wall clock (time.time()): spawned workers share the parent's
    queue_batch: int | None = None  # with a timeout: trials queued at a time (regtune.tuning.budget)
    network: Network = field(default_factory=Network)  # a user's module (--model), checked by the tuner


def run_worker(
    spec: WorkerSpec, folds: Folds, index: int, study: optuna.Study | None = None, tracker: Tracker | None = None
) -> None:
    """Claim and run trials until the queue is empty or the timeout passes.

    A spawned process rebuilds the study from ``spec``; the inline worker passes its own. A
    spawned worker on the parent's machine passes a tracker that relays to the parent's.
    """
    if spec.settings.n_jobs > 1:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    deadline = spec.deadline or (time.time() + spec.settings.timeout if spec.settings.timeout else None)
    if study is None:
        storage = make_storage(
            spec.settings.storage, heartbeat_interval=spec.settings.heartbeat_interval,
            grace_period=spec.settings.grace_period, retry_failed=spec.settings.retry_failed,
        )
        study = optuna.load_study(
            study_name=spec.settings.study_name,
            storage=storage,
            sampler=make_sampler(spec.settings.sampler, sampler_seed(spec.settings.seed + index, creator=False)),
            pruner=make_pruner(spec.settings.pruner, warmup=spec.warmup, max_epochs=spec.max_epochs),
        )
    space = spec.network.space(SearchSpace.from_yaml(spec.settings.space).for_task(folds.task))
    metric = get_metric(spec.settings.metric, folds.task)
    if tracker is None:
        tracker = make_tracker(spec.settings.tracking_uri, spec.settings.experiment)
    # Trials set their own torch threads; the caller's setting comes back. What the tracker
    # still holds is written on the way out, Ctrl-C included.
    def search_ends() -> float | None:  # the final refit's time is kept out of the search's
        return search_deadline(deadline, study, folds.splits, len(folds.y), members=max(1, spec.settings.ensemble))

    def out_of_time() -> bool:  # never before a trial completed: a study needs its baseline
        ends = search_ends()
        return (ends is not None and time.time() > ends
                and bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))))

    with _deferred_interrupt(), torch_threads(), contextlib.closing(tracker):
        while True:
            claimed = claim_trials(study, stop=lambda: _STOP.is_set() or out_of_time(),
                                   n_trials=spec.settings.n_trials or None)
            for trial in claimed:
                if spec.settings.cohort != 1:
                    _run_cohort(study, trial, claimed, space, metric, folds, tracker, spec, stop_at=search_ends())
                else:
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
    top_up(study, spec.settings.n_trials, [], batch=spec.queue_batch)
    return len(study.get_trials(deepcopy=False)) > before


def close_reaped_runs(tracker: Tracker, parent_run_id: str, reaped: Sequence[FrozenTrial]) -> None:
    """Close the MLflow runs of trials whose worker died, after giving each run back the epochs
    its worker had not written yet: Optuna holds the score of every epoch the trial reported
    (and its params), so a ``kill -9`` loses no epoch of the curve that Optuna has."""
    for t in reaped:
        # A worker that died within the first epochs may not have recorded its run id yet.
        run_id = t.user_attrs.get("mlflow_run_id") or tracker.trial_run_id(parent_run_id, t.number)
        if run_id:
            params = {**t.params, **({"trial_seed": t.user_attrs["seed"]} if "seed" in t.user_attrs else {})}
            tracker.backfill(run_id, REPORTED_METRIC, t.intermediate_values, params=params)
    if reaped:
        tracker.mark_orphans(parent_run_id, trials=[t.number for t in reaped], ended_too=True)


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
    (a trial outside them then can never enter them later); drop those it pushes out."""
    def keep(value: float, predictions: np.ndarray) -> None:
        keep_predictions(study, trial.number, value, predictions, task, k)

    return keep


_epoch_ends: dict[int, float] = {}  # trial number -> when its last epoch ended (time.time())


def _budget_point(trial: optuna.Trial, epoch: int, stop_at: float | None) -> None:
    """End a trial (never the baseline) whose next epoch would end after ``stop_at``: an epoch
    lasts about as long as the last one did, so waiting for the deadline to pass overruns it.
    It ends COMPLETE on the epochs it trained (:class:`OutOfTime`), user attr ``timeout``."""
    now = time.time()
    last = _epoch_ends.get(trial.number) if epoch > 0 else None  # numbers repeat across studies
    if last is None and trial.datetime_start is not None:  # epoch 0: since the trial started
        last = trial.datetime_start.timestamp()
    _epoch_ends[trial.number] = now
    next_end = now + (now - last if last is not None else 0.0)
    if stop_at is not None and next_end > stop_at and not trial.user_attrs.get("baseline"):
        _epoch_ends.pop(trial.number, None)
        trial.set_user_attr("timeout", True)
        raise OutOfTime(epoch)


_WATCH_LOCAL_S = 0.1  # s between looks at trials other workers on this machine still run
_WATCH_REMOTE_S = 1.0  # ... when one runs on another machine (a database the whole cluster reads)


def _replace_dead_workers_trials(
    study: optuna.Study, tracker: Tracker, spec: WorkerSpec, deadline: float | None,
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
            top_up(study, spec.settings.n_trials, reaped, spec.settings.retry_failed, baseline_params=baseline_params)
            return True
        local = all(t.user_attrs.get(OWNER_ATTR, "").rpartition(":")[0] == host for t in running)
        if not (heartbeats or local):
            return False
        # A peer finishing its last trial should not keep this worker (and the final refit) long.
        time.sleep(_WATCH_LOCAL_S if local else _WATCH_REMOTE_S)
    return False


def worker_process(
    spec: WorkerSpec, folds: Folds | str, index: int, parent_pid: int | None = None,
    relay: str | Connection | None = None,
) -> None:
    """Entry point of a spawned worker: a Ctrl-C ends it quietly (its trial is already failed).

    Every trial is in the storage and MLflow by the time the queue is empty, so the process
    leaves without the interpreter's slow teardown of torch, SQLAlchemy and MLflow (seconds).
    A worker whose parent (``parent_pid``) dies stops too instead of training on as an orphan.
    With ``relay`` (the address of a :class:`~regtune.tracking.relay.TrackerProcess`, or a
    pipe to the parent's tracker) it never imports MLflow. ``folds`` may be
    the path of a pickle of them, which the parent removes once its workers have ended.
    """
    if parent_pid is not None:
        stop_with_parent(parent_pid)
    if isinstance(folds, str):
        with open(folds, "rb") as f:
            folds = pickle.load(f)
    try:
        conn = connect(relay, spec.settings.tracking_uri, spec.settings.experiment) if isinstance(relay, str) else relay
        run_worker(spec, folds, index, tracker=RelayTracker(conn, spec.settings.tracking_uri) if conn else None)
    except KeyboardInterrupt:
        sys.exit(130)
    exit_quietly()


def exit_quietly() -> None:
    """End a worker or helper process whose work is all written: logs and output flushed,
    without the interpreter's teardown of torch, SQLAlchemy and MLflow (seconds)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# What the fork server imports once for all its children: this module (torch, Optuna, regtune),
# and torch._dynamo, which torch's optimizers import on their first step (~1 s each child paid
# in its first trial or refit).
_PRELOAD = [__name__, "torch._dynamo"]


def has_fork_server() -> bool:
    """Whether this platform starts workers from a fork server (milliseconds each) rather than
    spawning them (seconds of imports each)."""
    return "forkserver" in mp.get_all_start_methods()


def worker_context() -> BaseContext:
    """Where worker processes come from: a fork server that imported torch, Optuna and regtune
    once, so each worker starts in milliseconds instead of seconds of imports (and a second
    study in the same Python process reuses it); spawn where there is no fork server."""
    if not has_fork_server():
        return mp.get_context("spawn")
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    # Started here, not on the first start(): its ``python -c`` must not import a regtune.py
    # or mlflow.py lying in the working folder (the workers then take this process's sys.path).
    with safe_path_environment():
        forkserver.ensure_running()
    return context


def prestart_workers() -> None:
    """Start the fork server now: it imports while the study is set up (data, MLflow, the
    study), not when the first worker is wanted. Without one, nothing to do."""
    worker_context()


_ORPHAN_GRACE = 5.0  # s an orphaned worker gets to fail its trial before it exits regardless


def stop_with_parent(parent_pid: int) -> None:
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

    def watch() -> None:  # the pid, not getppid(): a fork server's worker is not the study's child
        while process_alive(parent_pid):
            time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.kill(os.getpid(), signal.SIGINT)
        time.sleep(_ORPHAN_GRACE)
        os._exit(130)

    threading.Thread(target=watch, name="regtune-parent-watch", daemon=True).start()


def _run_trial(
    study: optuna.Study, trial: optuna.Trial, space: SearchSpace, metric: Metric, folds: Folds,
    tracker: Tracker, spec: WorkerSpec, stop_at: float | None = None,
) -> None:
    """Run one claimed trial; whatever happens, it ends in one Optuna state and its MLflow run
    carries the same state (tag ``state``). Past ``stop_at`` (a timeout's end of the search) it
    is pruned at its next epoch, the baseline excepted, with user attr ``timeout``."""
    seed = trial_seed(spec.settings.seed, trial.number)
    trial.set_user_attr("seed", seed)
    with heartbeat(trial):
        run_id = None
        try:
            config, sample_error = None, None
            try:
                config = space.sample(trial)
                torch.set_num_threads(threads_for(config, folds.X.shape[1], spec.settings.n_jobs))
            except Exception as exc:  # a trial that cannot even be sampled still gets its run
                sample_error = exc
            run_id = _open_run(tracker, spec, trial, config, seed)
            if sample_error is not None:
                raise sample_error
            outcome: Outcome = run_objective(
                trial, config, folds, metric, seed=seed, device=spec.settings.device, warmup=spec.warmup,
                on_epoch=lambda epoch, record: (_log_epoch(tracker, trial, run_id, epoch, record), _stop_point(),
                                                _budget_point(trial, epoch, stop_at)),
                on_predictions=_keeper(study, trial, spec.settings.ensemble, folds.task)
                if spec.settings.ensemble > 1 else None,
                module=spec.network.estimator_params(trial.params),
            )
        except KeyboardInterrupt:
            _interrupted(study, trial, tracker, run_id)
            raise
        except Exception as exc:
            outcome = exc
        _end_trial(study, trial, tracker, run_id, outcome)


Outcome = tuple[float, dict[str, float]] | BaseException


def _open_run(tracker: Tracker, spec: WorkerSpec, trial: optuna.Trial, config: Any, seed: int,
              tags: dict[str, str] | None = None) -> str:
    """The trial's MLflow child run, with its params, resolved configuration and seeds: ``seed``
    the study's (the user's), ``trial_seed`` the one this trial's networks start from."""
    # a user's module: its name and arguments, not the built-in network's settings
    network = spec.network.run_params(config.to_dict()) if config else {}
    resolved = {k if k == "module" or k.startswith("module__") else f"config.{k}": v for k, v in network.items()}
    run_id = tracker.start_trial_run(
        spec.parent_run_id, trial.number,
        params={**trial.params, **resolved, "seed": spec.settings.seed, "trial_seed": seed},
        tags={"optuna.study": spec.settings.study_name, "baseline": str(bool(trial.user_attrs.get("baseline"))),
              **(tags or {})},
    )
    if isinstance(tracker, RelayTracker):
        _pending_run_ids.add(run_id)
        _record_run_id(trial, tracker, run_id)
    else:
        trial.set_user_attr("mlflow_run_id", run_id)
    return run_id


# Trials' MLflow run tokens (regtune.tracking.relay.RelayTracker) whose run id Optuna lacks yet.
_pending_run_ids: set[str] = set()


def _record_run_id(trial: optuna.Trial, tracker: Tracker, run_id: str | None, *, wait: bool = False) -> None:
    """Record the trial's MLflow run id (user attr ``mlflow_run_id``) once it is known.

    A relayed tracker opens the run without waiting and hands back a token; the run id follows
    a few epochs later and is recorded then, at the latest when the trial ends (``wait``).
    """
    if run_id not in _pending_run_ids:
        return
    known = tracker.resolve(run_id, wait=wait)
    if known is not None or wait:
        _pending_run_ids.discard(run_id)
    if known is not None:
        trial.set_user_attr("mlflow_run_id", known)


def _log_epoch(tracker: Tracker, trial: optuna.Trial, run_id: str | None, epoch: int, record: dict[str, float]) -> None:
    tracker.log_epoch(run_id, epoch, record)
    _record_run_id(trial, tracker, run_id)


def _end_trial(study: optuna.Study, trial: optuna.Trial, tracker: Tracker, run_id: str | None,
               outcome: Outcome) -> None:
    """Tell Optuna how the trial ended and close its MLflow run in the same state."""
    value, metrics, tags = None, None, {}
    if isinstance(outcome, TrialPruned):
        state, tags = TrialState.PRUNED, {"pruned_epoch": str(outcome.epoch)}
    elif isinstance(outcome, BaseException):  # a diverging or crashing trial fails alone; the study goes on
        reason = mask_secrets(f"{type(outcome).__name__}: {outcome}")[:500]  # it reaches the storage and the log
        trial.set_user_attr("fail_reason", reason)
        state, tags = TrialState.FAIL, {"fail_reason": reason}
        _logger.warning("trial %d failed: %s", trial.number, reason)
    else:
        value, metrics = outcome
        state = TrialState.COMPLETE
        trial.set_user_attr("best_epoch", metrics["best_epoch"])
    try:
        _close_run(tracker, run_id, state.name, tags, metrics=metrics)
        _record_run_id(trial, tracker, run_id, wait=True)
    finally:  # an MLflow error must not leave the Optuna trial RUNNING
        study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)


def _interrupted(study: optuna.Study, trial: optuna.Trial, tracker: Tracker, run_id: str | None) -> None:
    """Ctrl-C: FAIL, not counted (no fail_reason), so a re-run of the command queues a replacement."""
    trial.set_user_attr("interrupted", True)
    try:
        _close_run(tracker, run_id, "FAIL", {"fail_reason": "interrupted"}, status="KILLED")
        _record_run_id(trial, tracker, run_id, wait=True)
    finally:
        study.tell(trial, state=TrialState.FAIL)


def _run_cohort(
    study: optuna.Study, leader: optuna.Trial, more: Iterator[optuna.Trial], space: SearchSpace, metric: Metric,
    folds: Folds, tracker: Tracker, spec: WorkerSpec, stop_at: float | None = None,
) -> None:
    """Run ``leader`` with up to ``spec.settings.cohort - 1`` trials claimed from ``more`` as one cohort
    (:mod:`regtune.tuning.cohort`); a trial a cohort cannot train (a user's module that cannot be
    batched, an enqueued configuration of another structure) runs alone, as without cohorts.
    Each member ends in its own Optuna state and MLflow run, as :func:`_run_trial` ends one."""
    try:
        config = space.sample(leader)
    except Exception:
        config = None
    if config is None or cohort_problem(config) is not None or _module_problem(study, config, leader, folds, spec):
        _run_trial(study, leader, space, metric, folds, tracker, spec, stop_at)
        return
    size = (_auto_cohort_size(study, config, leader, folds, tracker, spec, stop_at) if spec.settings.cohort == AUTO
            else spec.settings.cohort)
    if size <= 1:
        _run_trial(study, leader, space, metric, folds, tracker, spec, stop_at)
        return
    trials, configs, alone = [leader], [config], []
    with contextlib.ExitStack() as beats:
        beats.enter_context(heartbeat(leader))
        with cohort_sampler(study, fixed_params(space, leader.params)):
            # Enqueued trials (priors, retries) keep their own structure and train alone; at
            # most K-1 of them are claimed here, so a cohort never holds the queue for long.
            while len(trials) < size and len(alone) < size - 1:
                trial = next(more, None)
                if trial is None:
                    break
                beats.enter_context(heartbeat(trial))
                try:
                    member = space.sample(trial)
                except Exception:
                    member = None
                same_module = spec.network.estimator_params(trial.params) == spec.network.estimator_params(leader.params)
                if member is not None and fits_cohort(config, member) and same_module:
                    trials.append(trial)
                    configs.append(member)
                else:
                    alone.append(trial)
        if len(trials) == 1:
            alone.insert(0, leader)
        try:
            if len(trials) > 1:
                _train_cohort(study, trials, configs, folds, metric, tracker, spec, stop_at)
            while alone:
                _stop_point()
                _run_trial(study, alone.pop(0), space, metric, folds, tracker, spec, stop_at)
        except KeyboardInterrupt:  # the trials claimed but not started: FAIL, uncounted, as the running ones
            for trial in alone:
                _interrupted(study, trial, tracker, None)
            raise


def _module_problem(study: optuna.Study, config: Any, leader: optuna.Trial, folds: Folds, spec: WorkerSpec) -> bool:
    """Whether the network (a user's module, or the built-in one with a Trainer argument a cohort
    does not replay) must train alone: checked once per study, the reason logged once."""
    if FALLBACK_ATTR not in study.user_attrs:
        reason = batching_problem(config, folds, device=spec.settings.device, seed=spec.settings.seed,
                                  module=spec.network.estimator_params(leader.params))
        if reason is not None:
            _logger.warning("%s trains every trial alone: %s", spec.network.label or "the network", reason)
        study.set_user_attr(FALLBACK_ATTR, reason or "")
    return bool(study.user_attrs[FALLBACK_ATTR])


def _auto_cohort_size(study: optuna.Study, config: Any, leader: optuna.Trial, folds: Folds, tracker: Tracker,
                      spec: WorkerSpec, stop_at: float | None = None) -> int:
    """``--cohort auto``: the K a worker of this study measured first, else measured now on
    this leader's structure (within :data:`AUTO_SHARE` of the time left to ``stop_at``),
    recorded as a study user attr and a parent-run tag."""
    chosen = study.user_attrs.get(AUTO_ATTR)
    if chosen is None:
        torch.set_num_threads(threads_for(config, folds.X.shape[1], spec.settings.n_jobs))
        sizes = [K for K in AUTO_SIZES if K <= (spec.settings.n_trials or AUTO_SIZES[-1])]  # no larger than the study
        until = None if stop_at is None else time.time() + AUTO_SHARE * max(0.0, stop_at - time.time())
        k, rates = choose_cohort_size(config, folds, device=spec.settings.device, seed=spec.settings.seed, sizes=sizes,
                                      module=spec.network.estimator_params(leader.params), until=until)
        chosen = {"k": k, "trial_epochs_per_s": {str(K): round(r, 2) for K, r in rates.items()}}
        study.set_user_attr(AUTO_ATTR, chosen)
        tracker.set_tags(spec.parent_run_id, {AUTO_ATTR: str(k)})
    return int(chosen["k"])


def _train_cohort(
    study: optuna.Study, trials: list[optuna.Trial], configs: list[Any], folds: Folds, metric: Metric,
    tracker: Tracker, spec: WorkerSpec, stop_at: float | None,
) -> None:
    seeds = [trial_seed(spec.settings.seed, t.number) for t in trials]
    torch.set_num_threads(threads_for(configs[0], folds.X.shape[1], spec.settings.n_jobs))
    run_ids: list[str | None] = [None] * len(trials)
    ended: set[int] = set()

    def end(k: int, outcome: Outcome) -> None:
        ended.add(k)
        _end_trial(study, trials[k], tracker, run_ids[k], outcome)

    def on_epoch(k: int, epoch: int, record: dict[str, float]) -> None:
        _log_epoch(tracker, trials[k], run_ids[k], epoch, record)
        _stop_point()
        _budget_point(trials[k], epoch, stop_at)

    try:
        tag = {"regtune.cohort": f"{trials[0].number}x{len(trials)}"}  # leader's number x members
        for k, (trial, config, seed) in enumerate(zip(trials, configs, seeds, strict=True)):
            trial.set_user_attr("seed", seed)
            trial.set_user_attr(COHORT_ATTR, tag["regtune.cohort"])
            run_ids[k] = _open_run(tracker, spec, trial, config, seed, tags=tag)
        run_cohort_objective(
            trials, configs, folds, metric, seeds=seeds, device=spec.settings.device, warmup=spec.warmup,
            on_epoch=on_epoch, on_end=end,
            on_predictions=[_keeper(study, t, spec.settings.ensemble, folds.task) for t in trials]
            if spec.settings.ensemble > 1
            else None,
            module=spec.network.estimator_params(trials[0].params),
        )
    except KeyboardInterrupt:
        for k in range(len(trials)):
            if k not in ended:
                _interrupted(study, trials[k], tracker, run_ids[k])
        raise
    except Exception as exc:  # the cohort could not be built: every member not ended fails with the reason
        for k in range(len(trials)):
            if k not in ended:
                end(k, exc)


def _close_run(
    tracker: Tracker, run_id: str | None, state: str, tags: dict, *, metrics: dict | None = None,
    status: str | None = None,
) -> None:
    if not run_id:
        return
    if status is None:
        tracker.finish_trial(run_id, state, metrics=metrics, tags=tags)
    else:
        tracker.set_tags(run_id, {**tags, "state": state})
        tracker.end_run(run_id, status)
