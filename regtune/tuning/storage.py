"""Where a study lives and how it searches: Optuna storages, samplers and pruners from names.

The queue of trials inside a study (claiming, reaping, topping up) is ``regtune.tuning.queue``.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import time
import warnings
import zlib
from pathlib import Path

import optuna

from regtune.exceptions import StudyError
from regtune.tracking.endpoints import connect_args, missing_driver
from regtune.tracking.masking import mask_secrets
from regtune.tuning.optuna_internals import SeededHyperbandPruner
from regtune.tuning.queue import on_stale_trial, owner_tag
from regtune.tuning.settings import DEFAULT_STORAGE, MEMORY, PRUNERS, SAMPLERS

__all__ = [
    "FIRST_RUNG_SHARE",
    "StudyError",
    "first_rung",
    "journal_path",
    "load_existing_study",
    "make_pruner",
    "make_sampler",
    "make_storage",
    "sampler_seed",
]



def make_storage(
    url: str | None = None,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    retry_failed: int = 0,
) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL; ``None`` is the embedded journal file ``DEFAULT_STORAGE``.

    ``":memory:"`` keeps the study in this process only. A path (or ``journal:PATH``) is a journal file: appends under a file lock, safe across
    processes, no server; a torn last record or a dead process's lock is recovered from
    (:mod:`regtune.tuning.journal`). Database URLs (``sqlite:///``, ``postgresql://``, ``mysql://``) get
    heartbeats, so a trial whose worker died is failed (and re-queued when ``retry_failed``).
    """
    url = url or DEFAULT_STORAGE
    if url == MEMORY:
        return optuna.storages.InMemoryStorage()
    path = journal_path(url)
    if path is not None:
        if not path.parent.exists():
            raise StudyError(f"storage {mask_secrets(url)!r}: directory {str(path.parent)!r} does not exist")
        from optuna.storages.journal import JournalStorage

        from regtune.tuning.journal import JournalBackend

        try:
            return JournalStorage(JournalBackend(path))
        except OSError as exc:
            raise StudyError(f"storage {mask_secrets(url)!r} cannot be written: {exc.strerror or exc}") from None
    heartbeat = heartbeat_interval or 10
    # The callback only reports the trials Optuna's fail_stale_trials failed, to
    # regtune.tuning.queue.reap_dead_trials, which closes their MLflow runs and re-queues them.
    stale_callback = {_stale_callback_argument(): on_stale_trial}
    for attempt in range(6):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=_engine_kwargs(url),
                    heartbeat_interval=heartbeat,
                    grace_period=grace_period or 3 * heartbeat,
                    **stale_callback,
                )
        except Exception as exc:  # sqlalchemy raises many kinds; all mean "cannot use this storage"
            if _schema_race(exc) and attempt < 5:
                time.sleep(0.2 * (attempt + 1))  # another worker is creating the same tables
                continue
            driver = missing_driver(url, exc)
            if driver is not None:
                raise StudyError(f"storage {driver}") from None
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StudyError(f"cannot reach storage {mask_secrets(url)}: {mask_secrets(reason)}; check that the "
                             "database server is up and reachable from here, and the URL") from None
    raise AssertionError("unreachable")


def _engine_kwargs(url: str) -> dict | None:
    """Test pooled connections before use, and bound how long connecting may take: without a
    connect timeout a PostgreSQL port that never answers holds every command for minutes."""
    if url.startswith("sqlite"):
        return None
    return {"pool_pre_ping": True, "connect_args": connect_args(url)}


def _stale_callback_argument() -> str:
    """Optuna 4.9 renamed ``failed_trial_callback`` (removed in 6) to ``heartbeat_stale_trial_callback``."""
    parameters = inspect.signature(optuna.storages.RDBStorage).parameters
    return "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in parameters else "failed_trial_callback"


def _schema_race(exc: BaseException | None) -> bool:
    """Whether creating Optuna's tables collided with another process creating them."""
    import sqlalchemy.exc

    while exc is not None:
        if isinstance(exc, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def journal_path(url: str | None) -> Path | None:
    """The journal file a storage URL names (``None`` means ``DEFAULT_STORAGE``), else ``None``."""
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


#: The first rung, as a share of ``max_epochs`` (benchmarks/pruning_replay.py; the figures are
#: in :func:`make_pruner`'s docstring).
FIRST_RUNG_SHARE = 0.4


def first_rung(max_epochs: int, warmup: int = 1) -> int:
    """The first step (epochs count from 0) at which a pruner judges a trial: once it has trained
    40% of ``max_epochs`` (epoch 16 of 40, 12 of 30), and never before ``warmup`` epochs."""
    return max(1, warmup - 1, math.ceil(FIRST_RUNG_SHARE * max_epochs) - 1)


def make_pruner(name: str, *, warmup: int, max_epochs: int) -> optuna.pruners.BasePruner:
    """Pruners that judge a trial first at :func:`first_rung`, on its latest validation score.

    Why so late: a regularized network (augmentation, label smoothing, dropout) learns slower
    first and ends better. Replayed on 360 recorded unpruned learning curves
    (benchmarks/pruning_replay.py: digits with the built-in CNN and image space, digits,
    breast_cancer, wine and diabetes with the default space, 2 seeds, 30-40 trials each; every
    study replayed in 10 trial orders, results/pruning_replay/latest.json), the rule before (first rung
    at epoch 3) lost the trial that would have ended best in 18% of the replays (Hyperband;
    median 21%, SHA 13%; in 2-3 of the 10 studies, digits with the CNN among them), for 63%
    fewer epochs. A first rung at 40% of ``max_epochs`` kept it in all 100 replays with each of the
    three pruners, for 37% fewer epochs (Hyperband; SHA 35%, median 31%); at 20-33% the best
    was still lost in 4-14% of them. Judging a smoothed (EMA) or best-so-far score instead of the
    latest one lost it as often or more. Hyperband keeps the best quarter at each rung
    (reduction factor 4); from 40% on that is one bracket, judged once.
    """
    first = first_rung(max_epochs, warmup)
    if name in ("hyperband", "median", "sha") and first >= max_epochs - 1:
        return optuna.pruners.NopPruner()  # the first judgement would come at the last epoch: nothing to save
    if name == "hyperband":
        return SeededHyperbandPruner(min_resource=first, max_resource=max_epochs, reduction_factor=4)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=first)
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise StudyError(f"pruner {name!r} is unknown; choose one of {', '.join(PRUNERS)}")


def sampler_seed(seed: int, *, creator: bool) -> int:
    """``seed`` for the process that created the study, so a one-worker run is reproducible.
    Any other (a resumed run, a spawned or remote worker) mixes in who it is: with the same
    seed every worker, and every resume, would sample the very same configurations again."""
    if creator:
        return seed
    return zlib.crc32(f"{seed}:{owner_tag()}".encode())


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
