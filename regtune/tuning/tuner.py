"""``tune()``: check the settings, prepare the data, open the study and its MLflow run, run the
workers (:mod:`~regtune.tuning.pool`), then refit and log (:mod:`~regtune.tuning.final`).

Data flow: dataset -> test part held out -> preprocessor fitted on the rest -> folds ->
workers claim trials from the study's queue -> best and baseline refit -> test scores once.
"""

from __future__ import annotations

import contextlib
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import optuna

from regtune.data.loading import Dataset
from regtune.data.split import parse_cv
from regtune.exceptions import ModuleError, TuneError
from regtune.metrics import get_metric
from regtune.space.space import SearchSpace
from regtune.tracking.masking import mask_secrets
from regtune.tracking.relay import TrackerProcess
from regtune.tracking.tracker import OFF, StudyTracker, make_tracker
from regtune.tuning.budget import queue_batch
from regtune.tuning.final import TuneResult, finish
from regtune.tuning.fingerprint import FINGERPRINT_ATTR, module_code_hash, study_fingerprint
from regtune.tuning.pool import run_workers, sigint_ignored
from regtune.tuning.prepare import as_dataset, prepare
from regtune.tuning.queue import open_study
from regtune.tuning.resources import passive_openmp
from regtune.tuning.settings import AUTO_SPACE, DEFAULT_STORAGE, MEMORY, TuneSettings, resolve_space
from regtune.tuning.storage import (
    journal_path,
    make_pruner,
    make_sampler,
    make_storage,
    sampler_seed,
)
from regtune.tuning.trial import Folds, Network, baseline_config, check_network
from regtune.tuning.worker import WorkerSpec, close_reaped_runs, prestart_workers

__all__ = ["quiet_optuna", "tune"]


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna logs every trial at INFO; the progress bar and the summary say it all, so only
    its warnings get through (the CLI does the same), and the caller's verbosity comes back."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(before, optuna.logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


@quiet_optuna()
def tune(
    data: Any,
    y: Any = None,
    *,
    target: str | None = None,
    settings: TuneSettings | None = None,
    console: Any = None,
    sample_weight: Any = None,
    X_val: Any = None,
    y_val: Any = None,
    sample_weight_val: Any = None,
    **options: Any,
) -> TuneResult:
    """Search the regularization for ``data``; refit the best and the baseline; test both once.

    ``data`` is a :class:`~regtune.data.loading.Dataset`, a built-in name, a CSV/Parquet path, or ``X``
    with ``y``. ``options`` are :class:`TuneSettings` fields (``n_trials=20, space="minimal"``).
    ``sample_weight`` weighs each row of ``data`` in every trial's training and validation
    score; ``X_val, y_val`` (and ``sample_weight_val``) replace the folds: every trial trains
    on the search part and is scored on them, and the final model trains on the search part.

    Every setting is checked before anything is created: bad input leaves no study, no MLflow
    run. Once the parent run exists it always ends: KILLED on Ctrl-C, FAILED on an error.
    """
    started = time.time()  # a timeout covers the whole call: loading, search, refit, logging
    settings = replace(settings or TuneSettings(), **options)  # checked as it is built
    if settings.n_jobs > 1:  # workers' imports run while this process sets the study up
        with sigint_ignored(), passive_openmp():
            prestart_workers()
    space = None if settings.space == AUTO_SPACE else SearchSpace.from_yaml(settings.space)
    dataset = as_dataset(data, y, target=target)
    if space is None:  # the resolved name is what the study name, fingerprint and MLflow record
        settings = replace(settings, space=resolve_space(settings.space, dataset.image_shape))
        space = SearchSpace.from_yaml(settings.space)
    metric = get_metric(settings.metric, dataset.task)
    _check_device(settings.device)
    network = Network(settings.module, dict(settings.module_params), fixed=dict(settings.estimator_params))
    if (sample_weight is not None or sample_weight_val is not None or settings.estimator_params) and settings.cohort > 1:
        settings = replace(settings, cohort=1)  # a cohort trains the built-in loss, unweighted, in float32
    study_name = settings.study_name or "-".join(p for p in (dataset.name, network.label, space.name, metric.name) if p)
    settings = _pinned_cv(settings, study_name)
    folds, X_test, y_test, prep = prepare(dataset, settings, baseline=baseline_config(space, network),
                                          deadline=started + settings.timeout if settings.timeout else None,
                                          network=network, sample_weight=sample_weight,
                                          validation=None if X_val is None else (X_val, y_val, sample_weight_val))
    fingerprint = study_fingerprint(
        dataset, space, metric=metric.name, cv=settings.cv, n_folds=_folds_label(folds), seed=settings.seed,
        test_size=settings.test_size, val_size=settings.val_size,
        module=_module_name(network.module), module_params=dict(network.params),
        module_code=module_code_hash(network.module),
    )
    space = space.for_task(dataset.task)  # a regression study never samples label smoothing
    network = check_network(network, space, folds, settings.device)  # one batch, before any trial
    space = network.space(space)  # without what the module cannot take (batch_norm, ...)
    settings = _check_loggable(settings, network)
    _check_images(space, dataset)
    max_epochs = space.to_config(space.baseline_params()).max_epochs
    warmup = _warmup(max_epochs)
    sampler = make_sampler(settings.sampler, settings.seed)
    pruner = make_pruner(settings.pruner, warmup=warmup, max_epochs=max_epochs)
    journal = journal_path(settings.storage)
    fresh_journal = journal if journal is not None and not journal.exists() else None
    storage = _open_storage(settings)
    tracker = _open_tracker(settings, fresh_journal)
    existed = study_name in optuna.study.get_all_study_names(storage)
    study, reaped = open_study(
        study_name=study_name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction=metric.direction,
        n_trials=settings.n_trials,
        baseline_params=space.baseline_params(),
        attrs={"dataset": dataset.name, "target": dataset.target, "space": space.name, "metric": metric.name,
               "seed": settings.seed, "regtune.uid": uuid.uuid4().hex,
               **({"regtune.module": _module_name(network.module), "regtune.module_params": dict(network.params),
                   "regtune.module_unsupported": list(network.unsupported)} if network.module is not None else {})},
        retry_failed=settings.retry_failed,
        fingerprint=fingerprint,
        priors=space.prior_params(),
        batch=queue_batch(settings.timeout, settings.n_jobs),
        as_written=network.as_written_params(space),
    )
    if existed:  # resuming, or joining other workers: do not repeat their draws
        study.sampler = make_sampler(settings.sampler, sampler_seed(settings.seed, creator=False))
    try:
        parent = tracker.start_study_run(
            study_name,
            params={**_loggable(settings), "dataset": dataset.name, "task": dataset.task, "metric": metric.name,
                    "metric_label": metric.label,
                    "n_rows": len(dataset.y), "n_features": dataset.X.shape[1], "folds": len(folds.splits),
                    "target": dataset.target, "data_hash": fingerprint["data"],
                    "data_source": dataset.source or ""},
            tags={"regtune.space": space.name,
                  "regtune.storage": mask_secrets(settings.storage or DEFAULT_STORAGE)},
            uid=study.user_attrs.get("regtune.uid"),
        )
    except BaseException:
        if not existed:  # no run to log to: take back the study this call created
            optuna.delete_study(study_name=study_name, storage=storage)
        raise
    try:
        tracker.log_dataset(parent, dataset, fingerprint["data"])  # the MLflow UI's Dataset column
        if "mlflow_parent_run_id" not in study.user_attrs:
            study.set_user_attr("mlflow_parent_run_id", parent)
            if space.path is not None:
                tracker.log_artifact(parent, str(space.path), "search_space")
        if reaped:
            close_reaped_runs(tracker, parent, reaped)
        spec = WorkerSpec(
            settings=replace(settings, study_name=study_name, metric=metric.name, tracking_uri=tracker.tracking_uri),
            parent_run_id=parent, warmup=warmup, max_epochs=max_epochs,
            deadline=started + settings.timeout if settings.timeout else None,
            queue_batch=queue_batch(settings.timeout, settings.n_jobs), network=network,
        )
        run_workers(spec, folds, study, console, tracker)
        meta = {"target": dataset.target, "columns": [str(c) for c in dataset.X.columns], "dataset": dataset.name}
        return finish(study, space, metric, folds, X_test, y_test, prep, tracker, parent, settings, meta,
                       example=dataset.X.head(5), deadline=started + settings.timeout if settings.timeout else None)
    except KeyboardInterrupt:
        _end_quietly(tracker, parent, "KILLED")
        raise
    except BaseException:
        _end_quietly(tracker, parent, "FAILED")
        raise


def _folds_label(folds: Folds) -> int | str:
    """What the fingerprint compares: the fold count, or ``"RxK"`` (6 folds are not 2x3)."""
    return len(folds.splits) if folds.repeats == 1 else folds.plan


def _pinned_cv(settings: TuneSettings, study_name: str) -> TuneSettings:
    """A study resumed with ``cv="auto"`` and a timeout keeps the folds it was created with:
    the time left differs from run to run, so the budget could choose others, and trials
    scored on other folds do not compare. Only a storage that exists already is opened."""
    if settings.cv != "auto" or settings.timeout is None or settings.storage == MEMORY:
        return settings
    journal, url = journal_path(settings.storage), str(settings.storage)
    if journal is not None and not journal.exists():
        return settings
    if journal is None and not (url.startswith(("postgresql", "mysql"))
                                or (url.startswith("sqlite:///") and Path(url.removeprefix("sqlite:///")).exists())):
        return settings
    try:
        storage = _open_storage(settings)
        if study_name not in optuna.study.get_all_study_names(storage):
            return settings
        recorded = optuna.load_study(study_name=study_name, storage=storage).user_attrs.get(FINGERPRINT_ATTR, {})
    except Exception:  # noqa: BLE001 - opening it for real later says what is wrong
        return settings
    folds = recorded.get("folds")
    return settings if folds is None else replace(settings, cv=parse_cv(str(folds)))


def _check_loggable(settings: TuneSettings, network: Network) -> TuneSettings:
    """A module MLflow cannot ship (defined in a notebook or a function): say so now, and run
    the study without logging the model rather than fail at its end. Without tracking no model
    is logged: nothing to say."""
    if not settings.log_model or network.module is None or settings.tracking_uri == OFF:
        return settings
    from regtune.nn.models import ModuleFactory, module_reference

    try:
        module_reference(ModuleFactory.of(network.module).factory)
    except ModuleError as exc:
        if settings.register_model:
            raise TuneError(f"register_model={settings.register_model!r}: the model cannot be logged, so it "
                            f"cannot be registered: {exc}") from None
        warnings.warn(f"the best model will not be logged to MLflow: {exc}", UserWarning, stacklevel=3)
        return replace(settings, log_model=False)
    return settings


def _check_images(space: SearchSpace, dataset: Dataset) -> None:
    """A CNN or image augmentation without images would fail every trial: say so up front."""
    if dataset.image_shape is not None:
        return
    architectures = {space.to_config(space.baseline_params()).architecture}
    architectures |= {c for p in space.params if p.name == "architecture" for c in getattr(p, "choices", ())}
    needs = ["a CNN"] if "cnn" in architectures else []
    needs += ["image augmentation"] if "augment" in space.families() else []
    if needs:
        raise TuneError(
            f"search space {space.name!r} trains {' and '.join(needs)}, which need images, but {dataset.name!r} "
            "holds table rows with no image shape; use a tabular space (default, minimal, cocktail), or images: "
            "the built-in digits, or RegTuneClassifier(image_shape=(C, H, W)) for rows of C*H*W pixels"
        )


def _warmup(max_epochs: int) -> int:
    return max(3, max_epochs // 10)


def _loggable(settings: TuneSettings) -> dict[str, Any]:
    values = {k: mask_secrets(str(v)) if isinstance(v, str) else v for k, v in asdict(settings).items()}
    values["module"] = _module_name(settings.module)
    return values


def _module_name(module: Any) -> str:
    """How logs and study attributes name a user's module: its spec, or ``package.module:Name``."""
    return Network(module).reference


def _check_device(device: str) -> None:
    """A device that cannot train would fail every trial; say so before the study starts."""
    from regtune.nn.trainer import resolve_device

    resolve_device(device)


def _open_storage(settings: TuneSettings) -> optuna.storages.BaseStorage:
    return make_storage(
        settings.storage, heartbeat_interval=settings.heartbeat_interval, grace_period=settings.grace_period,
        retry_failed=settings.retry_failed,
    )


def _open_tracker(settings: TuneSettings, fresh_journal: Path | None) -> StudyTracker:
    """The tracker; if the store is unusable, remove the empty journal file this run just made.

    The trials' tracker process starts first: it imports MLflow while this process does.
    """
    if settings.tracking_uri != OFF and TrackerProcess.supported():
        TrackerProcess.shared()
    try:
        return make_tracker(settings.tracking_uri, settings.experiment)
    except BaseException:
        if fresh_journal is not None and fresh_journal.is_file() and fresh_journal.stat().st_size == 0:
            fresh_journal.unlink()
        raise


def _end_quietly(tracker: StudyTracker, run_id: str, status: str) -> None:
    """End the parent run on the way out of an error; the original error is the one to report."""
    try:
        tracker.end_run(run_id, status)
    except Exception as exc:  # the store may be what failed
        warnings.warn(f"could not mark MLflow run {run_id} {status}: {mask_secrets(str(exc))}", RuntimeWarning, stacklevel=2)
