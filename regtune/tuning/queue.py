"""The trial queue: exact trial counts however many workers share a study, and nothing lost
when one of them dies.

Every trial of a study is created up front as a WAITING trial (the baseline first). Workers in
any process or on any machine claim WAITING trials atomically through the storage, so a study
asked for N trials gets exactly N, and a re-run of the same command only adds what is missing
(or, asked for fewer, leaves the surplus queued but unrun). A trial whose worker died (its
heartbeat went stale, or its process is gone from this host) is failed, handed back so its
MLflow run can be closed, and replaced, with its own parameters again when ``retry_failed``
allows. A baseline that did not complete is always queued again: without it the study has
nothing to compare the regularized trials with.

A study joined or resumed must have been created for the same data and settings (its
fingerprint, :mod:`regtune.tuning.fingerprint`) and queued by regtune: a study made by other
code is refused, one whose creator died before queuing is queued by whoever finds it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar

import optuna
from optuna.trial import FrozenTrial, TrialState

from regtune.exceptions import StudyError
from regtune.tuning.fingerprint import FINGERPRINT_ATTR, check_fingerprint
from regtune.tuning.journal import process_alive
from regtune.tuning.optuna_internals import storage_of

__all__ = [
    "AS_WRITTEN_ATTR",
    "CREATOR_ATTR",
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
    "runnable_trials",
    "top_up",
]

OWNER_ATTR = "regtune.owner"  # "host:pid" of the worker that claimed the trial
CREATOR_ATTR = "regtune.creator"  # "host:pid" of the process that created the study
#: Marks the trial of the user's network as written (their own dropout rate, their batch norm),
#: queued right after the baseline, which turns them off.
AS_WRITTEN_ATTR = "as_written"
_ENQUEUED = "regtune.enqueued"
_UID = "regtune.uid"
_PENDING = (TrialState.WAITING, TrialState.RUNNING)
_ADOPT_EMPTY_AFTER = 2.0  # s: an empty study without attrs is a creator that died right after creating it
_STALLED_AFTER = 10.0  # s: a creator elsewhere that queued nothing for this long is taken as dead

_logger = logging.getLogger("regtune")


def counted_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that count toward the requested number: finished ones, minus crashed workers'.

    A trial failed by the objective itself (divergence, an error in the model) carries a
    ``fail_reason`` and counts; a trial failed because its worker died does not, and is
    replaced.
    """
    return [t for t in study.get_trials(deepcopy=False) if _counts(t)]


def _counts(trial: FrozenTrial) -> bool:
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and "fail_reason" in trial.user_attrs)


def _queue_order(trial: FrozenTrial) -> tuple[bool, int]:
    """Baseline first (a re-queued one too), then by number."""
    return (not trial.user_attrs.get("baseline", False), trial.number)


def _runnable(trials: list[FrozenTrial], n_trials: int | None) -> list[FrozenTrial]:
    """The WAITING trials a worker may claim: with ``n_trials``, only those within the first
    ``n_trials - counted`` pending trials in queue order, so a study resumed with a lower
    ``--trials`` stops at that count however many workers claim at once."""
    pending = sorted((t for t in trials if t.state in _PENDING), key=_queue_order)
    if n_trials is not None:
        pending = pending[:max(0, n_trials - sum(_counts(t) for t in trials))]
    return [t for t in pending if t.state == TrialState.WAITING]


def runnable_trials(study: optuna.Study, n_trials: int | None = None) -> int:
    """How many WAITING trials workers asked for ``n_trials`` will still run."""
    return len(_runnable(study.get_trials(deepcopy=False), n_trials))


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
    fingerprint: dict | None = None,
    priors: Sequence[dict] = (),
    batch: int | None = None,
    as_written: dict | None = None,
) -> tuple[optuna.Study, list[FrozenTrial]]:
    """Create the study (baseline first in its queue, then ``as_written``, then the ``priors``)
    or load it and top up the queue.

    Returns the study and the trials found abandoned by dead workers (now FAIL; their MLflow
    runs are the caller's to close). The creator records ``fingerprint`` and enqueues every
    trial; a later run of the same command checks the fingerprint (a :class:`StudyError` names
    what differs), then only enqueues what is missing, re-queuing a crashed trial's parameters
    up to ``retry_failed`` times and a baseline that did not complete.
    """
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
    if created:
        # The creator's first write says who it is: a study it leaves unqueued is then
        # recognisably regtune's, and whether it died can be told on this host.
        study.set_user_attr(CREATOR_ATTR, owner_tag())
        _record(study, attrs, fingerprint)
        top_up(study, n_trials, [], baseline_params=baseline_params, priors=priors, batch=batch,
               as_written=as_written)
        study.set_user_attr(_ENQUEUED, True)
        return study, []
    adopt = _await_queue(study)
    _check(study, fingerprint, adopting=adopt)
    if adopt:
        _logger.warning("study %r was never queued (its creator stopped first); queuing its baseline and "
                        "trials here", study_name)
        _record(study, attrs, fingerprint)
    reaped = reap_dead_trials(study)
    top_up(study, n_trials, reaped, retry_failed, baseline_params=baseline_params, priors=priors, batch=batch,
           as_written=as_written)
    if adopt:
        study.set_user_attr(_ENQUEUED, True)
    _say_surplus(study, n_trials)
    return study, reaped


def _record(study: optuna.Study, attrs: dict, fingerprint: dict | None) -> None:
    """Write what the study is for: the fingerprint first, then the other attrs it lacks."""
    current = study.user_attrs
    if fingerprint is not None and FINGERPRINT_ATTR not in current:
        study.set_user_attr(FINGERPRINT_ATTR, fingerprint)
    for key, value in attrs.items():
        if key not in current:
            study.set_user_attr(key, value)


def _check(study: optuna.Study, fingerprint: dict | None, *, adopting: bool) -> None:
    if fingerprint is None:
        return
    recorded = study.user_attrs.get(FINGERPRINT_ATTR)
    if recorded:
        check_fingerprint(study.study_name, recorded, fingerprint)
    elif not adopting:
        raise StudyError(f"study {study.study_name!r} has no fingerprint (it was made before regtune 0.2), so "
                         "its data, space and split cannot be checked: use another --study")


def _say_surplus(study: optuna.Study, n_trials: int) -> None:
    """One line when a lower ``--trials`` leaves queued trials unrun."""
    trials = study.get_trials(deepcopy=False)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    unrun = waiting - len(_runnable(trials, n_trials))
    if unrun > 0:
        held = sum(_counts(t) or t.state in _PENDING for t in trials)
        what = "1 queued trial is" if unrun == 1 else f"{unrun} queued trials are"
        _logger.warning("study %r holds %d trials but --trials %d asks for fewer: %s left unrun (run with "
                        "--trials %d to run %s)", study.study_name, held, n_trials, what, held,
                        "it" if unrun == 1 else "them")


def top_up(
    study: optuna.Study, n_trials: int, reaped: list[FrozenTrial], retry_failed: int = 0, *,
    baseline_params: dict | None = None, priors: Sequence[dict] = (), batch: int | None = None,
    as_written: dict | None = None,
) -> None:
    """Queue what the study lacks: the reaped trials' params again (up to ``retry_failed``
    times each), the baseline if none completed or is pending (given ``baseline_params``), the
    user's network as written if the study has not run it (``as_written``: its params; user
    attr :data:`AS_WRITTEN_ATTR`), the ``priors`` the study has not run (user attr ``prior`` =
    their index), then fresh trials until ``n_trials`` are counted, waiting or running.

    With ``batch`` (a study with a timeout) fresh trials are queued only until ``batch`` wait,
    and workers queue the next ones as they go: a study stopped by its timeout must not leave
    hundreds of WAITING trials behind.
    """
    for t in reaped:
        if retry_failed and _retries(study, t) < retry_failed:
            params = t.params
            if t.user_attrs.get("baseline") and not params and baseline_params is not None:
                params = baseline_params  # killed before it sampled: its params are the baseline's
            study.enqueue_trial(params, user_attrs={**_public(t.user_attrs), "retry_of": t.number})
    trials = study.get_trials(deepcopy=False)
    if baseline_params is not None and not any(_is_baseline(t) for t in trials):
        study.enqueue_trial(baseline_params, user_attrs={"baseline": True})
        trials = study.get_trials(deepcopy=False)
    room = n_trials - sum(_counts(t) or t.state in _PENDING for t in trials)
    held = [t for t in trials if _counts(t) or t.state in _PENDING]
    if as_written is not None and room > 0 and not any(t.user_attrs.get(AS_WRITTEN_ATTR) for t in held):
        study.enqueue_trial(as_written, user_attrs={AS_WRITTEN_ATTR: True})
        room -= 1
    have = {t.user_attrs.get("prior") for t in held}
    for index, params in enumerate(priors):
        if room > 0 and index not in have:
            study.enqueue_trial(params, user_attrs={"prior": index})
            room -= 1
    if batch is not None:
        waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        room = min(room, batch - waiting)
    for _ in range(room):
        study.enqueue_trial({})


def _is_baseline(trial: FrozenTrial) -> bool:
    """A baseline that completed, will run, or failed by its own objective (a result too)."""
    return bool(trial.user_attrs.get("baseline")) and (trial.state in _PENDING or _counts(trial))


def _public(attrs: dict) -> dict:
    return {k: v for k, v in attrs.items() if k in ("baseline", "prior", AS_WRITTEN_ATTR)}


def _retries(study: optuna.Study, trial: FrozenTrial) -> int:
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    count, current = 0, trial
    while "retry_of" in current.user_attrs and current.user_attrs["retry_of"] in by_number:
        count += 1
        current = by_number[current.user_attrs["retry_of"]]
    return count


def _await_queue(study: optuna.Study) -> bool:
    """Wait while the study's creator queues its trials; True if this process must queue them.

    A study queued by regtune goes on at once. One with trials or attrs but no sign of regtune
    was made by other code: refused. One whose creator is known dead (a gone process on this
    host), stopped queuing long ago, or that is empty and attr-less for a moment (a creator
    killed right after creating it) is this process's to queue.
    """
    start = changed = time.monotonic()
    seen: tuple[int, int] | None = None
    while True:
        attrs = study.user_attrs
        if _ENQUEUED in attrs:
            return False
        trials = study.get_trials(deepcopy=False)
        now = time.monotonic()
        if not any(key in attrs for key in (CREATOR_ATTR, FINGERPRINT_ATTR, _UID)):
            if trials or attrs:
                raise StudyError(
                    f"study {study.study_name!r} was not created by regtune (it has {len(trials)} trials and no "
                    "regtune fingerprint); regtune will not add trials to it: use another --study")
            if now - start > _ADOPT_EMPTY_AFTER:
                return True
        else:
            if _dead_here(attrs.get(CREATOR_ATTR, "")):
                return True
            if (len(trials), len(attrs)) != seen:
                seen, changed = (len(trials), len(attrs)), now
            elif now - changed > _STALLED_AFTER:
                return True
        time.sleep(0.2)


def owner_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_trials(
    study: optuna.Study, stop: Callable[[], bool] | None = None, n_trials: int | None = None,
) -> Iterator[optuna.Trial]:
    """Yield WAITING trials claimed atomically by this process until the queue is empty
    (or ``stop()`` says to stop claiming, or the study holds ``n_trials`` counted trials).

    Unlike ``Study.ask`` this never creates a trial, so the count stays the one enqueued.
    """
    storage = storage_of(study)
    study_id = storage.get_study_id_from_name(study.study_name)
    while stop is None or not stop():
        trial_id = pop_waiting_trial(storage, study_id, n_trials)
        if trial_id is None:
            return
        trial = optuna.Trial(study, trial_id)
        trial.set_user_attr(OWNER_ATTR, owner_tag())
        yield trial


def pop_waiting_trial(
    storage: optuna.storages.BaseStorage, study_id: int, n_trials: int | None = None,
) -> int | None:
    """Claim the next WAITING trial (a baseline first, then the oldest) by moving it to RUNNING;
    its id, or ``None`` if none is left within ``n_trials``.

    The storage makes the move atomic: ``set_trial_state_values`` returns False (or raises
    UpdateFinishedTrialError) for every process but the one that won, so each trial runs once.
    """
    for t in _runnable(storage.get_all_trials(study_id, deepcopy=False), n_trials):
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
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _dead_here(t.user_attrs.get(OWNER_ATTR, "")):
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


def _dead_here(owner: str) -> bool:
    """Whether ``owner`` ("host:pid") is a process of this host that is gone."""
    host, _, pid = owner.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid))

