"""The trial queue: exact trial counts however many workers share a study, and nothing lost
when one of them dies.

Every trial of a study is created up front as a WAITING trial (the baseline first). Workers in
any process or on any machine claim WAITING trials atomically through the storage, so a study
asked for N trials gets exactly N, and a re-run of the same command only adds what is missing.
A trial whose worker died (its heartbeat went stale, or its process is gone from this host) is
failed, handed back so its MLflow run can be closed, and replaced, with its own parameters
again when ``retry_failed`` allows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextvars import ContextVar

import optuna
from optuna.trial import FrozenTrial, TrialState

from regtune.exceptions import StudyError
from regtune.tuning.optuna_internals import storage_of

__all__ = [
    "OWNER_ATTR",
    "claim_trials",
    "counted_trials",
    "has_heartbeats",
    "heartbeat",
    "on_stale_trial",
    "open_study",
    "owner_tag",
    "pop_waiting_trial",
    "reap_dead_trials",
    "top_up",
]

OWNER_ATTR = "regtune.owner"  # "host:pid" of the worker that claimed the trial
_ENQUEUED = "regtune.enqueued"

_logger = logging.getLogger("regtune")


def counted_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that count toward the requested number: finished ones, minus crashed workers'.

    A trial failed by the objective itself (divergence, an error in the model) carries a
    ``fail_reason`` and counts; a trial failed because its worker died does not, and is
    replaced.
    """
    out = []
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            out.append(t)
        elif t.state == TrialState.FAIL and "fail_reason" in t.user_attrs:
            out.append(t)
    return out


def open_study(
    *,
    study_name: str,
    storage: optuna.storages.BaseStorage,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    direction: str,
    n_trials: int,
    baseline_params: dict,
    attrs: dict,
    retry_failed: int = 0,
) -> tuple[optuna.Study, list[FrozenTrial]]:
    """Create the study (baseline first in its queue) or load it and top up the queue.

    Returns the study and the trials found abandoned by dead workers (now FAIL; their MLflow
    runs are the caller's to close). The creator enqueues every trial; a later run of the same
    command only enqueues what is missing, re-queuing a crashed trial's parameters up to
    ``retry_failed`` times.
    """
    reaped: list[FrozenTrial] = []
    try:
        study = optuna.create_study(
            study_name=study_name, storage=storage, sampler=sampler, pruner=pruner, direction=direction
        )
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
        created = False
        if study.direction.name.lower() != direction:
            raise StudyError(
                f"study {study_name!r} already exists and {study.direction.name.lower()}s its metric, "
                f"but this run would {direction} it; pick another --study or the same --metric"
            ) from None
        _wait_until_enqueued(study)
    if created:
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        study.enqueue_trial(baseline_params, user_attrs={"baseline": True})
        for _ in range(n_trials - 1):
            study.enqueue_trial({})
        study.set_user_attr(_ENQUEUED, True)
    else:
        reaped = reap_dead_trials(study)
        top_up(study, n_trials, reaped, retry_failed)
    return study, reaped


def top_up(study: optuna.Study, n_trials: int, reaped: list[FrozenTrial], retry_failed: int = 0) -> None:
    """Queue what the study lacks: the reaped trials' params again (up to ``retry_failed``
    times each), then fresh trials until ``n_trials`` are counted, waiting or running."""
    for t in reaped:
        if retry_failed and _retries(study, t) < retry_failed:
            study.enqueue_trial(t.params, user_attrs={**_public(t.user_attrs), "retry_of": t.number})
    pending = [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.WAITING, TrialState.RUNNING)]
    for _ in range(n_trials - len(counted_trials(study)) - len(pending)):
        study.enqueue_trial({})


def _public(attrs: dict) -> dict:
    return {k: v for k, v in attrs.items() if k in ("baseline",)}


def _retries(study: optuna.Study, trial: FrozenTrial) -> int:
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    count, current = 0, trial
    while "retry_of" in current.user_attrs and current.user_attrs["retry_of"] in by_number:
        count += 1
        current = by_number[current.user_attrs["retry_of"]]
    return count


def _wait_until_enqueued(study: optuna.Study, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while _ENQUEUED not in study.user_attrs and time.monotonic() < deadline:
        time.sleep(0.2)


def owner_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_trials(study: optuna.Study, stop: Callable[[], bool] | None = None) -> Iterator[optuna.Trial]:
    """Yield WAITING trials claimed atomically by this process until the queue is empty
    (or ``stop()`` says to stop claiming).

    Unlike ``Study.ask`` this never creates a trial, so the count stays the one enqueued.
    """
    storage = storage_of(study)
    study_id = storage.get_study_id_from_name(study.study_name)
    while stop is None or not stop():
        trial_id = pop_waiting_trial(storage, study_id)
        if trial_id is None:
            return
        trial = optuna.Trial(study, trial_id)
        trial.set_user_attr(OWNER_ATTR, owner_tag())
        yield trial


def pop_waiting_trial(storage: optuna.storages.BaseStorage, study_id: int) -> int | None:
    """Claim the oldest WAITING trial by moving it to RUNNING; its id, or ``None`` if none is left.

    The storage makes the move atomic: ``set_trial_state_values`` returns False (or raises
    UpdateFinishedTrialError) for every process but the one that won, so each trial runs once.
    """
    for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def _heartbeat_interval(storage: optuna.storages.BaseStorage) -> int | None:
    """Seconds between heartbeats; ``None`` for storages without them (memory, journal file)."""
    interval = getattr(storage, "get_heartbeat_interval", None)
    return interval() if callable(interval) else None


def has_heartbeats(study: optuna.Study) -> bool:
    """Whether a dead worker's trial shows up as a stale heartbeat, wherever the worker ran."""
    return _heartbeat_interval(storage_of(study)) is not None


@contextlib.contextmanager
def heartbeat(trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat while it runs (``Study.optimize`` does this for its own
    trials), so workers elsewhere can tell it from the trial of a worker that died."""
    storage = trial.storage
    interval = _heartbeat_interval(storage)
    if interval is None:
        yield
        return
    study_id = storage.get_study_id_from_name(trial.study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                storage.record_heartbeat(trial_id)
            except Exception as exc:  # a database hiccup; the next beat tries again
                _logger.warning("trial %d: could not record its heartbeat: %s", trial.number, exc)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"regtune-heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


_stale_here: ContextVar[list[FrozenTrial] | None] = ContextVar("regtune_stale_here", default=None)


def on_stale_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """The stale-heartbeat callback ``make_storage`` gives every database storage.

    ``optuna.storages.fail_stale_trials`` calls it for each trial that *this* call failed (a
    trial failed by another worker at the same moment is not reported twice), which is how
    ``reap_dead_trials`` learns which runs to close and which params to queue again.
    """
    reaped = _stale_here.get()
    if reaped is not None:
        reaped.append(trial)


def reap_dead_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Fail RUNNING trials whose worker is gone: stale heartbeats, or a dead process on this host.

    Returns the trials failed here (their MLflow runs are the caller's to close).
    """
    reaped: list[FrozenTrial] = []
    token = _stale_here.set(reaped)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    finally:
        _stale_here.reset(token)
    storage, study_id = storage_of(study), None
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner_host, _, pid = t.user_attrs.get(OWNER_ATTR, "").rpartition(":")
        if owner_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        if study_id is None:
            study_id = storage.get_study_id_from_name(study.study_name)
        try:
            # Through the storage, not Study.tell: this process's sampler has no business with
            # another worker's trial.
            if storage.set_trial_state_values(
                storage.get_trial_id_from_study_id_trial_number(study_id, t.number), state=TrialState.FAIL
            ):
                reaped.append(t)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return reaped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
