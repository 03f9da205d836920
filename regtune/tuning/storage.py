"""Optuna plumbing: storages, samplers, pruners, and a trial queue that makes counts exact.

Every trial of a study is created up front as a WAITING trial (the baseline first). Workers in
any process or on any machine claim WAITING trials atomically through the storage, so a study
asked for N trials gets exactly N, however many workers share it, and a re-run of the same
command only adds what is missing.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
from optuna.trial import TrialState

from regtune.exceptions import StudyError
from regtune.tracking.tracker import mask_secrets

__all__ = [
    "DEFAULT_STORAGE",
    "MEMORY",
    "PRUNERS",
    "SAMPLERS",
    "StudyError",
    "claim_trials",
    "counted_trials",
    "journal_path",
    "load_existing_study",
    "make_pruner",
    "make_sampler",
    "make_storage",
    "open_study",
    "reap_dead_trials",
    "sampler_seed",
    "top_up",
]

DEFAULT_STORAGE = "regtune.journal"
MEMORY = ":memory:"  # one process only: trials vanish with it
SAMPLERS = ("tpe", "random", "cmaes", "gp")
PRUNERS = ("hyperband", "median", "sha", "none")
_OWNER = "regtune.owner"


def make_storage(
    url: str | None = None,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    retry_failed: int = 0,
) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL; ``None`` is the embedded journal file ``./regtune.journal``.

    ``":memory:"`` keeps the study in this process only. A path (or ``journal:PATH``) is a journal file: appends under a file lock, safe across
    processes, no server. Database URLs (``sqlite:///``, ``postgresql://``, ``mysql://``) get
    heartbeats, so a trial whose worker died is failed (and re-queued when ``retry_failed``).
    """
    url = url or DEFAULT_STORAGE
    if url == MEMORY:
        return optuna.storages.InMemoryStorage()
    path = journal_path(url)
    if path is not None:
        if not path.parent.exists():
            raise StudyError(f"storage {url!r}: directory {str(path.parent)!r} does not exist")
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        try:
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as exc:
            raise StudyError(f"storage {url!r} cannot be written: {exc.strerror or exc}") from None
    heartbeat = heartbeat_interval or 10
    for attempt in range(6):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # No failed_trial_callback: reap_dead_trials fails stale trials itself, so their
                # MLflow runs get closed and --retry-failed re-queues them like any other.
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None,
                    heartbeat_interval=heartbeat,
                    grace_period=grace_period or 3 * heartbeat,
                )
        except Exception as exc:  # sqlalchemy raises many kinds; all mean "cannot use this storage"
            if _schema_race(exc) and attempt < 5:
                time.sleep(0.2 * (attempt + 1))  # another worker is creating the same tables
                continue
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StudyError(f"cannot reach storage {mask_secrets(url)}: {mask_secrets(reason)}") from None
    raise AssertionError("unreachable")


def _schema_race(exc: BaseException | None) -> bool:
    """Whether creating Optuna's tables collided with another process creating them."""
    import sqlalchemy.exc

    while exc is not None:
        if isinstance(exc, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def journal_path(url: str | None) -> Path | None:
    """The journal file a storage URL names (``None`` means ``./regtune.journal``), else ``None``."""
    url = url or DEFAULT_STORAGE
    if url == MEMORY or "://" in url:
        return None
    return Path(url.removeprefix("journal:")).expanduser()


# Samplers whose Optuna implementation imports an optional package when it first samples.
_SAMPLER_PACKAGES = {"cmaes": ("cmaes", "cmaes"), "gp": ("scipy", "scipy")}


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    """``tpe`` (multivariate, grouped for conditional spaces), ``random``, ``cmaes``, ``gp``.

    CMA-ES and GP cannot sample the conditional (regularizer-specific) params jointly; they
    sample those independently, which is expected here, so that warning is off.
    """
    if name in _SAMPLER_PACKAGES:
        module, package = _SAMPLER_PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            # Otherwise every trial but the enqueued baseline would fail with ModuleNotFoundError.
            raise StudyError(f"sampler {name!r} needs the {package!r} package; "
                             f"install it (pip install {package}) or choose another sampler")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=8)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)
    raise StudyError(f"sampler {name!r} is unknown; choose one of {', '.join(SAMPLERS)}")


def make_pruner(name: str, *, warmup: int, max_epochs: int) -> optuna.pruners.BasePruner:
    """Pruners that never judge a trial before ``warmup`` epochs (Optuna's defaults prune at epoch 0)."""
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=warmup, max_resource=max_epochs, reduction_factor=3)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup)
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=warmup, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise StudyError(f"pruner {name!r} is unknown; choose one of {', '.join(PRUNERS)}")


def counted_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
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
) -> tuple[optuna.Study, list[optuna.trial.FrozenTrial]]:
    """Create the study (baseline first in its queue) or load it and top up the queue.

    Returns the study and the trials found abandoned by dead workers (now FAIL; their MLflow
    runs are the caller's to close). The creator enqueues every trial; a later run of the same
    command only enqueues what is missing, re-queuing a crashed trial's parameters up to
    ``retry_failed`` times.
    """
    reaped: list[optuna.trial.FrozenTrial] = []
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
        study.set_user_attr("regtune.enqueued", True)
    else:
        reaped = reap_dead_trials(study)
        top_up(study, n_trials, reaped, retry_failed)
    return study, reaped


def top_up(
    study: optuna.Study, n_trials: int, reaped: list[optuna.trial.FrozenTrial], retry_failed: int = 0
) -> None:
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


def _retries(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int:
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    count, current = 0, trial
    while "retry_of" in current.user_attrs and current.user_attrs["retry_of"] in by_number:
        count += 1
        current = by_number[current.user_attrs["retry_of"]]
    return count


def _wait_until_enqueued(study: optuna.Study, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while "regtune.enqueued" not in study.user_attrs and time.monotonic() < deadline:
        time.sleep(0.2)


def sampler_seed(seed: int, *, creator: bool) -> int:
    """``seed`` for the process that created the study, so a one-worker run is reproducible.
    Any other (a resumed run, a spawned or remote worker) mixes in who it is: with the same
    seed every worker, and every resume, would sample the very same configurations again."""
    if creator:
        return seed
    import zlib

    return zlib.crc32(f"{seed}:{owner_tag()}".encode())


def owner_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def reap_dead_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Fail RUNNING trials whose worker is gone: stale heartbeats, or a dead process on this host.

    Returns the trials failed here (their MLflow runs are the caller's to close).
    """
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

    storage = study._storage
    reaped = []
    if isinstance(storage, BaseHeartbeat) and is_heartbeat_enabled(storage):
        for trial_id in storage._get_stale_trial_ids(study._study_id):
            try:
                if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                    reaped.append(storage.get_trial(trial_id))
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get(_OWNER, "")
        owner_host, _, pid = owner.rpartition(":")
        if owner_host == host and pid.isdigit() and not _alive(int(pid)):
            try:
                if study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
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


def claim_trials(study: optuna.Study, stop: Callable[[], bool] | None = None) -> Iterator[optuna.Trial]:
    """Yield WAITING trials claimed atomically by this process until the queue is empty
    (or ``stop()`` says to stop claiming)."""
    while stop is None or not stop():
        trial_id = study._pop_waiting_trial_id()
        if trial_id is None:
            return
        study._thread_local.cached_all_trials = None
        trial = optuna.Trial(study, trial_id)
        trial.set_user_attr(_OWNER, owner_tag())
        yield trial


def load_existing_study(study_name: str, storage: str | None = None) -> optuna.Study:
    """Load a study that must already exist; the error lists the studies that do."""
    journal = journal_path(storage)
    if journal is not None and not journal.is_file():  # do not leave an empty journal behind
        raise StudyError(f"no study {study_name!r}: the journal file {str(journal)!r} does not exist; "
                         "run `regtune tune` first or pass --storage")
    store = make_storage(storage)
    names = [s.study_name for s in optuna.study.get_all_study_summaries(store, include_best_trial=False)]
    if study_name not in names:
        where = mask_secrets(storage or DEFAULT_STORAGE)
        known = ", ".join(sorted(names)) or "none"
        raise StudyError(f"no study {study_name!r} in {where}; studies there: {known}")
    return optuna.load_study(study_name=study_name, storage=store)
