"""``tune()``: split the data, run the study in one or more worker processes, refit, log.

Data flow: dataset -> test part held out -> preprocessor fitted on the rest -> folds ->
workers claim trials from the study's queue -> best and baseline refit -> test scores once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import signal
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from regtune.config import RegConfig, no_regularization
from regtune.data.images import as_rows, to_numpy
from regtune.data.loading import Dataset, dataset_from_frame, load_dataset
from regtune.data.preprocess import TabularPreprocessor
from regtune.data.split import auto_plan, cv_splits, parse_cv, resolve_plan, split_dataset
from regtune.exceptions import DataError, ModuleError, TuneError
from regtune.metrics import Metric, get_metric
from regtune.nn.callbacks import StopAfter
from regtune.processes import safe_path_environment
from regtune.space.space import SearchSpace
from regtune.tracking.relay import RelayTracker, TrackerProcess, TrackerRelay
from regtune.tracking.tracker import OFF, MLflowTracker, make_tracker, mask_secrets
from regtune.tuning.budget import PROBE_EPOCHS, FinalBudget, StopBy, fits_left, queue_batch
from regtune.tuning.fingerprint import FINGERPRINT_ATTR, module_code_hash, study_fingerprint
from regtune.tuning.queue import AS_WRITTEN_ATTR, open_study, reap_dead_trials, runnable_trials
from regtune.tuning.resources import assign_devices, passive_openmp, threads_for, torch_threads
from regtune.tuning.selection import selection_metrics, selection_summary
from regtune.tuning.storage import (
    DEFAULT_STORAGE,
    MEMORY,
    PRUNERS,
    SAMPLERS,
    StudyError,
    journal_path,
    make_pruner,
    make_sampler,
    make_storage,
    sampler_seed,
)
from regtune.tuning.trial import Folds, Network, check_network, make_estimator, trial_seed
from regtune.tuning.worker import (
    WorkerSpec,
    close_reaped_runs,
    prestart_workers,
    run_worker,
    worker_context,
    worker_process,
)

__all__ = ["DEFAULT_ENSEMBLE", "TuneError", "TuneResult", "TuneSettings", "as_dataset", "prepare", "quiet_optuna",
           "trials_frame", "tune"]


#: The final model averages up to this many of the best trials (greedy ensemble selection on
#: their out-of-fold predictions). Measured in ``benchmarks/final_model_ab.py``: after the same
#: 30 s search, the ensemble's test score beat the best trial's on 9 of 10 unseen datasets
#: (mean +0.006). 0 or 1: the best trial alone.
DEFAULT_ENSEMBLE = 5


@dataclass(frozen=True)
class TuneSettings:
    """Everything a tuning run needs besides the data; mirrors the ``regtune tune`` options."""

    space: str = "default"
    n_trials: int = 30
    timeout: float | None = None
    sampler: str = "tpe"
    pruner: str = "hyperband"
    metric: str | None = None
    cv: int | str = "auto"
    storage: str | None = None
    study_name: str | None = None
    experiment: str = "regtune"
    tracking_uri: str | None = None
    n_jobs: int = 1
    seed: int = 0
    device: str = "auto"
    test_size: float = 0.2
    val_size: float = 0.2
    retry_failed: int = 0
    heartbeat_interval: int | None = None
    grace_period: int | None = None
    progress: bool = True
    log_model: bool = True
    ensemble: int = DEFAULT_ENSEMBLE
    cohort: int | str = 1  # >= 2: up to this many trials of one structure train as one batched network; "auto"
    # A user's network (--model): an nn.Module class or factory, or "file.py:Name" /
    # "package.module:Name"; module_params are its fixed constructor arguments (no module__).
    module: Any = None
    module_params: Mapping[str, Any] = field(default_factory=dict)
    # Fixed parameters of every trial's estimator, never searched (the RegTune estimators'
    # criterion, class_weight, precision, channels_last).
    estimator_params: Mapping[str, Any] = field(default_factory=dict)
    register_model: str | None = None  # a Model Registry name: the logged model becomes its next version

    def check(self) -> None:
        """Reject settings that cannot run, before any data is read or anything is created."""
        if isinstance(self.n_trials, bool) or not isinstance(self.n_trials, int) or self.n_trials < 1:
            raise TuneError(f"trials={self.n_trials!r} must be a whole number >= 1")
        if self.timeout is not None and (not _is_number(self.timeout) or not self.timeout > 0):
            raise TuneError(f"timeout={self.timeout!r} must be > 0 seconds")
        if self.sampler not in SAMPLERS:
            raise TuneError(f"sampler {self.sampler!r} is unknown; choose one of {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise TuneError(f"pruner {self.pruner!r} is unknown; choose one of {', '.join(PRUNERS)}")
        if isinstance(self.n_jobs, bool) or not isinstance(self.n_jobs, int) or self.n_jobs < 1:
            raise TuneError(f"jobs={self.n_jobs!r} must be a whole number >= 1")
        if self.storage == MEMORY and self.n_jobs > 1:
            raise TuneError("storage ':memory:' lives in one process; use a journal file or database with n_jobs > 1")
        try:
            parse_cv(self.cv)
        except DataError as exc:
            raise TuneError(str(exc)) from None
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise TuneError(f"seed={self.seed!r} must be a whole number >= 0")
        if not _is_number(self.test_size) or not 0 <= self.test_size < 1:
            raise TuneError(f"test_size={self.test_size!r} must be in [0, 1) (0 = no test part)")
        if not _is_number(self.val_size) or not 0 < self.val_size < 1 - self.test_size:
            raise TuneError(f"val_size={self.val_size!r} must be > 0 and leave rows to train on "
                            f"(test_size + val_size < 1, test_size={self.test_size!r})")
        if isinstance(self.retry_failed, bool) or not isinstance(self.retry_failed, int) or self.retry_failed < 0:
            raise TuneError(f"retry_failed={self.retry_failed!r} must be a whole number >= 0")
        if isinstance(self.ensemble, bool) or not isinstance(self.ensemble, int) or self.ensemble < 0:
            raise TuneError(f"ensemble={self.ensemble!r} must be a whole number: 0 or 1 for the best model alone, "
                            "K >= 2 to average up to K of the best trials")
        if self.cohort != "auto" and (isinstance(self.cohort, bool) or not isinstance(self.cohort, int)
                                      or self.cohort < 1):
            raise TuneError(f"cohort={self.cohort!r} must be 'auto' or a whole number: 1 trains each trial alone, "
                            "K >= 2 trains up to K trials of one structure as one batched network, 'auto' measures "
                            "which K trains the most trials per minute on this device")
        for name in ("heartbeat_interval", "grace_period"):
            value = getattr(self, name)
            if value is not None and (not _is_number(value) or value < 1):
                raise TuneError(f"{name}={value!r} must be >= 1 second")
        if not isinstance(self.experiment, str) or not self.experiment.strip():
            raise TuneError(f"experiment={self.experiment!r} must be a non-empty name")
        if self.study_name is not None and (not isinstance(self.study_name, str) or not self.study_name.strip()):
            raise TuneError(f"study_name={self.study_name!r} must be a non-empty name")
        _check_registered_name(self)


def _check_registered_name(settings: TuneSettings) -> None:
    name = settings.register_model
    if name is None:
        return
    if not isinstance(name, str) or not name.strip() or any(c in name for c in "/:"):
        raise TuneError(f"register_model={name!r} must be a Model Registry name without '/' or ':', "
                        "such as 'digits-classifier'")
    if settings.tracking_uri == OFF or not settings.log_model:
        why = "tracking_uri='off' logs nothing" if settings.log_model else "log_model=False logs no model"
        raise TuneError(f"register_model={name!r} registers the logged model, but {why}; pass a tracking URI "
                        "(e.g. sqlite:///mlflow.db) or leave register_model unset")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


@dataclass
class TuneResult:
    """What a finished study gives back: the refit models, scores side by side, where to look."""

    study: optuna.Study
    study_name: str
    metric: Metric
    best_params: dict[str, Any]
    best_config: RegConfig
    best_value: float
    best_estimator: Any
    baseline_estimator: Any  # None where its refit did not fit in the timeout (``notes`` says so)
    preprocessor: TabularPreprocessor | None
    scores: pd.DataFrame
    parent_run_id: str
    tracking_uri: str
    experiment_id: str
    model_uri: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    ensemble_estimator: Any = None  # a WeightedEnsemble with settings.ensemble >= 2, else None
    # How honest the choice is (regtune.tuning.selection.selection_summary): optimism, spread.
    selection: dict[str, Any] = field(default_factory=dict)
    registered_model: str | None = None  # the Model Registry name and version of model_uri
    registered_version: int | None = None
    # What the summary must say besides the scores: work skipped for time, a newer best found
    # by another run of the same study.
    notes: list[str] = field(default_factory=list)

    @property
    def trials(self) -> pd.DataFrame:
        return trials_frame(self.study)


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial that ran or runs: number, state, value, params and the MLflow run id
    (trials queued but never started, ``WAITING``, are not trials of the search yet)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING:
            continue
        rows.append({
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "baseline": bool(t.user_attrs.get("baseline", False)),
            "epochs": len(t.intermediate_values),
            "duration_s": t.duration.total_seconds() if t.duration else None,
            "mlflow_run_id": t.user_attrs.get("mlflow_run_id"),
            "fail_reason": t.user_attrs.get("fail_reason"),
            **{f"params_{k}": v for k, v in t.params.items()},
        })
    return pd.DataFrame(rows)


def prepare(data: Dataset, settings: TuneSettings, *, baseline: RegConfig | None = None,
            deadline: float | None = None, network: Network | None = None,
            sample_weight: np.ndarray | None = None, validation: tuple[Any, Any, Any] | None = None,
            ) -> tuple[Folds, Any, Any, TabularPreprocessor | None]:
    """Hold out the test part (unless ``test_size=0``), preprocess the rest, build the folds.

    With ``cv="auto"``, a ``deadline`` (``time.time()``) and the space's ``baseline``
    configuration, the folds also weigh the time: one short fit of the baseline is timed, and
    :func:`~regtune.data.split.auto_plan` picks the most folds and repeats that still leave time
    for enough trials. Returns the folds, the test features and target (``None`` without a test
    part) and the fitted preprocessor (``None`` for images, which the network scales itself).

    ``sample_weight`` (one per row of ``data``) follows its rows into the folds; ``validation``
    ``(X_val, y_val, sample_weight_val)`` replaces the folds with one split: train on the
    search part, validate on it (:func:`given_validation`).
    """
    if sample_weight is not None:  # rows are found again by position
        data = replace(data, X=data.X.reset_index(drop=True), y=data.y.reset_index(drop=True))
    if settings.test_size > 0:
        split = split_dataset(
            data.X, data.y, task=data.task, test_size=settings.test_size, val_size=settings.val_size,
            random_state=settings.seed,
        )
        X_part, y_part = pd.concat([split.X_train, split.X_val]), pd.concat([split.y_train, split.y_val])
        X_test_raw, y_test = split.X_test, split.y_test.to_numpy()
    else:
        X_part, y_part, X_test_raw, y_test = data.X, data.y, None, None
    if sample_weight is not None and len(sample_weight) != len(data.y):
        raise DataError(f"sample_weight has {len(sample_weight)} values but the data has {len(data.y)} rows; "
                        "pass one weight per row")
    weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)[X_part.index.to_numpy()]
    prep = None
    if data.image_shape is None:
        prep = TabularPreprocessor().fit(X_part)
        X_arr = prep.transform(X_part)
        X_test = prep.transform(X_test_raw) if X_test_raw is not None else None
    else:
        X_arr = X_part.to_numpy(np.float32)
        X_test = X_test_raw.to_numpy(np.float32) if X_test_raw is not None else None
    y_arr = y_part.to_numpy()
    if validation is not None:
        return given_validation(X_arr, y_arr, weights, validation, data, prep), X_test, y_test, prep
    val_share = settings.val_size / (1 - settings.test_size)
    fits = None
    if (parse_cv(settings.cv) == "auto" and deadline is not None and baseline is not None
            and auto_plan(len(y_arr))[1] > 1):
        fits = _probe_fits(baseline, X_arr, y_arr, data, settings, deadline, network)
    splits = cv_splits(y_arr, task=data.task, cv=settings.cv, random_state=settings.seed, val_share=val_share,
                       fits=fits)
    repeats = resolve_plan(settings.cv, y_arr, data.task, fits=fits, val_share=val_share)[0]
    return (Folds(X_arr, y_arr, data.task, splits, data.image_shape, repeats=repeats, sample_weight=weights),
            X_test, y_test, prep)


def given_validation(X: np.ndarray, y: np.ndarray, weights: np.ndarray | None, validation: tuple[Any, Any, Any],
                     data: Dataset, prep: TabularPreprocessor | None) -> Folds:
    """The search part and the user's validation set as one split (validation rows last),
    preprocessed alike; the preprocessor never saw the validation rows."""
    X_val_raw, y_val, w_val = validation
    rows, _ = as_rows(X_val_raw)
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(np.asarray(rows))
    if set(map(str, frame.columns)) == set(map(str, data.X.columns)):  # named alike: take them in the data's order
        frame = frame.rename(columns=str)[[str(c) for c in data.X.columns]]
    if frame.shape[1] != data.X.shape[1]:
        raise DataError(f"X_val has {frame.shape[1]} columns but the data has {data.X.shape[1]}; pass the same columns")
    frame.columns = data.X.columns
    X_val = prep.transform(frame) if prep is not None else frame.to_numpy(np.float32)
    y_val = to_numpy(y_val)
    if len(y_val) != len(X_val):
        raise DataError(f"X_val has {len(X_val)} rows but y_val has {len(y_val)}; pass matching rows")
    n, m = len(y), len(y_val)
    if weights is None and w_val is None:
        w = None
    else:
        w = np.concatenate([np.ones(n) if weights is None else weights,
                            np.ones(m) if w_val is None else np.asarray(w_val, dtype=np.float64)])
    return Folds(np.concatenate([X, X_val]), np.concatenate([y, y_val]), data.task, [(np.arange(n), np.arange(n, n + m))],
                 data.image_shape, sample_weight=w, validation_given=True)


def _probe_fits(baseline: RegConfig, X: np.ndarray, y: np.ndarray, data: Dataset, settings: TuneSettings,
                deadline: float, network: Network | None) -> float | None:
    """Time :data:`~regtune.tuning.budget.PROBE_EPOCHS` epochs of the baseline on every row of
    the search part; how many such fits the time left holds (``None``: the probe failed, and
    ``cv="auto"`` falls back on the rows alone; the study itself will say what is wrong)."""
    config = baseline.replace(max_epochs=PROBE_EPOCHS, early_stopping=False)
    est = make_estimator(config, data.task, image_shape=data.image_shape, device=settings.device,
                         random_state=settings.seed, module=(network or Network()).estimator_params())
    start = time.perf_counter()
    try:
        with torch_threads(threads_for(config, X.shape[1], n_jobs=settings.n_jobs)), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
    except Exception:  # noqa: BLE001 - the check of the network reports it properly
        return None
    epoch_seconds = (time.perf_counter() - start) / PROBE_EPOCHS
    return fits_left(deadline - time.time(), epoch_seconds, baseline.max_epochs) * settings.n_jobs


def as_dataset(data: Any, y: Any = None, *, target: str | None = None, task: str | None = None) -> Dataset:
    """Accept what users have: a Dataset, a built-in name or file path, or X (and y); X may hold
    images ``(N, C, H, W)`` or ``(N, H, W)`` (arrays or torch tensors)."""
    if y is not None and isinstance(data, (Dataset, str, os.PathLike)):
        what = "a Dataset" if isinstance(data, Dataset) else f"data={os.fspath(data)!r}, a dataset name or file,"
        raise DataError(f"y is given, but {what} holds its own target, so y would be ignored; pass X and y, "
                        "or data alone (target=COLUMN picks a file's target column)")
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (str, os.PathLike)):
        return load_dataset(data, target, task=task)
    rows, image_shape = as_rows(data)
    if image_shape is not None:
        if y is None:
            raise DataError(f"X holds images of shape {image_shape}; pass their labels or targets as y")
        rows = pd.DataFrame(rows, columns=[f"px{i}" for i in range(rows.shape[1])])
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(np.asarray(rows))
    frame = frame.rename(columns=str)
    if y is None:
        return dataset_from_frame(frame, target, task=task)
    y = to_numpy(y)
    if len(y) != len(frame):
        raise DataError(f"X has {len(frame)} rows but y has {len(y)}; pass matching rows")
    name = target or getattr(y, "name", None) or "target"
    while name in frame.columns:
        name = f"{name}_"
    frame = frame.assign(**{name: np.asarray(y)})
    return dataset_from_frame(frame, name, task=task, image_shape=image_shape)


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
    settings = replace(settings or TuneSettings(), **options)
    settings.check()
    if settings.n_jobs > 1:  # workers' imports run while this process sets the study up
        with _sigint_ignored(), passive_openmp():
            prestart_workers()
    space = SearchSpace.from_yaml(settings.space)
    dataset = as_dataset(data, y, target=target)
    metric = get_metric(settings.metric, dataset.task)
    _check_device(settings.device)
    network = Network(settings.module, dict(settings.module_params), fixed=dict(settings.estimator_params))
    if (sample_weight is not None or sample_weight_val is not None or settings.estimator_params) and settings.cohort > 1:
        settings = replace(settings, cohort=1)  # a cohort trains the built-in loss, unweighted, in float32
    study_name = settings.study_name or "-".join(p for p in (dataset.name, network.label, space.name, metric.name) if p)
    settings = _pinned_cv(settings, study_name)
    folds, X_test, y_test, prep = prepare(dataset, settings, baseline=space.to_config(space.baseline_params()),
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
            study_name=study_name, storage=settings.storage, sampler=settings.sampler, pruner=settings.pruner,
            seed=settings.seed, space=settings.space, metric=metric.name, device=settings.device,
            tracking_uri=tracker.tracking_uri, experiment=settings.experiment, parent_run_id=parent,
            warmup=warmup, max_epochs=max_epochs, timeout=settings.timeout,
            heartbeat_interval=settings.heartbeat_interval, grace_period=settings.grace_period,
            retry_failed=settings.retry_failed, n_jobs=settings.n_jobs,
            deadline=started + settings.timeout if settings.timeout else None,
            n_trials=settings.n_trials, queue_batch=queue_batch(settings.timeout, settings.n_jobs),
            ensemble=settings.ensemble, network=network, cohort=settings.cohort,
        )
        _run_workers(spec, folds, study, settings, console, tracker)
        meta = {"target": dataset.target, "columns": [str(c) for c in dataset.X.columns], "dataset": dataset.name}
        return _finish(study, space, metric, folds, X_test, y_test, prep, tracker, parent, settings, meta,
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
    the study without logging the model rather than fail at its end."""
    if not settings.log_model or network.module is None:
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


def _open_tracker(settings: TuneSettings, fresh_journal: Path | None) -> MLflowTracker:
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


def _end_quietly(tracker: MLflowTracker, run_id: str, status: str) -> None:
    """End the parent run on the way out of an error; the original error is the one to report."""
    try:
        tracker.end_run(run_id, status)
    except Exception as exc:  # the store may be what failed
        warnings.warn(f"could not mark MLflow run {run_id} {status}: {mask_secrets(str(exc))}", RuntimeWarning, stacklevel=2)


def _run_workers(
    spec: WorkerSpec, folds: Folds, study: optuna.Study, settings: TuneSettings, console: Any,
    tracker: MLflowTracker,
) -> None:
    from regtune.tuning.progress import StudyProgress

    with StudyProgress(study, settings.n_trials, enabled=settings.progress, console=console):
        n_procs = max(1, min(settings.n_jobs, runnable_trials(study, settings.n_trials)))
        specs = [replace(spec, device=device) for device in assign_devices(settings.device, n_procs, _n_gpus())]
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
            # A worker booting up is not killed mid-import by Ctrl-C (it inherits SIG_IGN), and
            # its torch loads with sleeping OpenMP threads.
            # ... and a spawned one (no fork server) never imports from the working folder.
            with _sigint_ignored(), passive_openmp(), safe_path_environment():
                for p in procs:
                    p.start()
            for pipe in pipes:
                if pipe is not None and not isinstance(pipe, str):
                    pipe.close()  # the worker holds its own copy; its end closing is how we hear it stop
            try:
                run_worker(specs[0], folds, 0, study, inline)
                for p in procs:
                    p.join()
                if relay is not None:
                    relay.join(timeout=30)
            except KeyboardInterrupt:
                _stop_workers(procs)
                raise
            finally:
                # A worker that died mid-trial left its trial RUNNING and its MLflow run open.
                close_reaped_runs(tracker, spec.parent_run_id, reap_dead_trials(study))
        bad = [p.exitcode for p in procs if p.exitcode not in (0, None)]
        if bad:
            raise StudyError(f"{len(bad)} of {len(procs)} worker processes failed (exit codes {bad}); see the log above")


def _n_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
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


def _finish(
    study: optuna.Study, space: SearchSpace, metric: Metric, folds: Folds, X_test: np.ndarray | None,
    y_test: np.ndarray | None, prep: TabularPreprocessor | None, tracker: MLflowTracker, parent: str,
    settings: TuneSettings, meta: dict[str, Any], example: pd.DataFrame | None = None,
    deadline: float | None = None,
) -> TuneResult:
    """Refit the best trial (and, as far as the time to ``deadline`` holds, the ensemble's
    other members and the baseline), test them once, and write the study's summary."""
    snapshot = study.get_trials(deepcopy=False)
    complete = [t for t in snapshot if t.state == TrialState.COMPLETE]
    if not complete:
        raise StudyError(_no_complete_trial(study))
    best = _best_of(study, snapshot)
    baseline = next((t for t in complete if t.user_attrs.get("baseline")), None)
    best_config = space.to_config(best.params)
    base_config = space.to_config(baseline.params) if baseline else no_regularization(best_config)
    budget = FinalBudget(deadline, folds.splits, len(folds.y))
    rows, models, notes = {}, {}, []

    def scored(label: str, config: RegConfig, trial: optuna.trial.FrozenTrial | None, est: Any) -> None:
        models[label] = est
        val = trial.value if trial else float("nan")
        if est is None:  # skipped for time: the search's validation score only
            rows[label] = {"model": label, "trial": trial.number if trial else None, "train": float("nan"),
                           "val": val, "test": float("nan"), "gap": float("nan"), "epochs": float("nan"),
                           "regularizers": ", ".join(config.active_regularizers()) or "none"}
            return
        rows_ = folds.refit_rows()
        train = metric.final_fn(est, folds.X[rows_], folds.y[rows_])
        test = metric.final_fn(est, X_test, y_test) if X_test is not None else float("nan")
        rows[label] = {"model": label, "trial": trial.number if trial else None, "train": train, "val": val,
                       "test": test, "gap": train - test, "epochs": est.n_iter_,
                       "regularizers": ", ".join(config.active_regularizers()) or "none"}

    stop = StopBy(budget.ends) if budget.ends is not None else None
    scored("best", best_config, best, refit(best_config, best, folds, settings, stop=stop))
    if stop is not None and stop.stopped_at is not None:
        budget.skipped.append(f"the best trial's refit after epoch {stop.stopped_at + 1} of "
                              f"{models['best'].max_epochs} (its trial's best epoch was "
                              f"{round(best.user_attrs.get('best_epoch', -1)) + 1})")
    ensemble = None
    if settings.ensemble > 1:
        ensemble, row = _ensemble(study, space, metric, folds, X_test, y_test, settings, models["best"], best, budget)
        if row is not None:
            rows["ensemble"] = row
        elif any(s.startswith("ensemble member") for s in budget.skipped):
            notes.append("no ensemble: its other members' refits did not fit in the time left; the best trial "
                         "alone is the model")
        else:
            notes.append(_no_ensemble(study, settings.ensemble))
    if baseline is not None and baseline.number == best.number:  # the baseline won: one refit serves both
        scored("baseline", base_config, baseline, models["best"])
    else:
        fits = budget.fits(baseline, "the baseline's refit (its row shows the search's validation score only)")
        scored("baseline", base_config, baseline, refit(base_config, baseline, folds, settings) if fits else None)
    written = next((t for t in complete if t.user_attrs.get(AS_WRITTEN_ATTR)), None)
    if written is not None:  # the user's network as written: did the search beat it?
        written_config = space.to_config(written.params)
        if written.number == best.number:
            scored("as_written", written_config, written, models["best"])
        else:
            fits = budget.fits(written, "the as-written network's refit (its row shows the search's validation score only)")
            scored("as_written", written_config, written, refit(written_config, written, folds, settings) if fits else None)
    if budget.skipped:
        notes.append(f"skipped for time (timeout {settings.timeout:g} s): " + "; ".join(budget.skipped))
    rows = [rows[label] for label in ("baseline", "as_written", "best", "ensemble") if label in rows]
    scores = pd.DataFrame(rows).set_index("model")
    # Another run of this study (a second command on the same storage) may have finished
    # trials while this one refit: the summary is written from the study as it is now.
    now = study.get_trials(deepcopy=False)
    counts = _counts(now)
    current = _best_of(study, now)
    final = {f"{label}_{col}": float(scores.loc[label, col]) for label in scores.index
             for col in ("train", "val", "test", "gap")}
    selection = selection_summary(study, test_score=final["best_test"] if X_test is not None else None, trials=now)
    model_uri = None
    if current is not None and current.number != best.number:
        notes.append(f"another run of study {study.study_name!r} found a better trial meanwhile: trial "
                     f"{current.number} ({current.value:.4g}) beats this run's refit trial {best.number} "
                     f"({best.value:.4g}); the study's MLflow summary and model are left to the run that refits "
                     f"trial {current.number} (regtune best --study {study.study_name})")
        selection = selection_summary(study, trials=now)
    else:
        tracker.log_metrics(parent, {"best_value": best.value, **final,
                                     **{f"n_{k.lower()}": v for k, v in counts.items()},
                                     **selection_metrics(selection)})
        tracker.set_tags(parent, {"best_trial": str(best.number),
                                  "best_run_id": best.user_attrs.get("mlflow_run_id", ""),
                                  "regtune.folds": folds.plan,
                                  "regtune.ensemble": str(scores.loc["ensemble", "regularizers"])
                                  if ensemble is not None else "none"})
        model_uri = _log_final_model(tracker, parent, best, ensemble, models["best"], prep, metric, final, folds,
                                     X_test, settings, meta, example)
    version = (tracker.register_model(model_uri, settings.register_model, parent)
               if settings.register_model and model_uri else None)
    tracker.end_run(parent, "FINISHED")
    return TuneResult(
        study=study, study_name=study.study_name, metric=metric, best_params=dict(best.params), best_config=best_config,
        best_value=float(best.value), best_estimator=models["best"], baseline_estimator=models["baseline"],
        preprocessor=prep, scores=scores, parent_run_id=parent, tracking_uri=tracker.tracking_uri,
        experiment_id=tracker.experiment_id, model_uri=model_uri, counts=counts, ensemble_estimator=ensemble,
        selection=selection, notes=notes, registered_model=settings.register_model if version else None,
        registered_version=version,
    )


def _no_ensemble(study: optuna.Study, k: int) -> str:
    """Why the final model is the best trial alone although an ensemble was asked for."""
    from regtune.tuning.ensemble import held_predictions

    held = len(held_predictions(study))
    if held < 2:
        return (f"no ensemble: {held} trial(s) kept validation predictions (ensemble={k} needs two complete "
                "trials); the best trial alone is the model")
    return (f"no ensemble: greedy selection among the {min(held, k)} best trials kept the best alone (adding "
            "another did not improve the validation score); the best trial alone is the model")


def _counts(trials: list[optuna.trial.FrozenTrial]) -> dict[str, int]:
    counts = {s.name: 0 for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    for t in trials:
        if t.state.name in counts:
            counts[t.state.name] += 1
    return counts


def _best_of(study: optuna.Study, trials: list[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial | None:
    """The study's best among ``trials`` as Optuna picks it (the first of equal values)."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not complete:
        return None
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    return pick(complete, key=lambda t: t.value)


def _log_final_model(tracker: MLflowTracker, parent: str, best: optuna.trial.FrozenTrial, ensemble: Any,
                     best_estimator: Any, prep: TabularPreprocessor | None, metric: Metric, final: dict[str, float],
                     folds: Folds, X_test: np.ndarray | None, settings: TuneSettings,
                     meta: dict[str, Any], example: pd.DataFrame | None = None) -> str | None:
    """Log the final model on the study's parent run (once per best trial, data and split)."""
    if not (settings.log_model and tracker.enabled):
        return None
    key = _model_key(best.number, folds, X_test, settings)
    if ensemble is not None:
        key += ", ensemble of trials " + "+".join(map(str, ensemble.trials))
    if tracker.run_tag(parent, "regtune.model_key") == key:  # a re-run that changed nothing keeps it
        model_uri = tracker.run_tag(parent, "regtune.model_uri")
        if model_uri:
            return model_uri
    from regtune.estimators.persistence import log_model

    logged = "best" if ensemble is None else "ensemble"
    model_uri = log_model(tracker, parent, ensemble or best_estimator, prep, metric=metric.name,
                          test_score=final[f"{logged}_test"], input_example=example, **meta)
    tracker.set_tags(parent, {"regtune.model_uri": model_uri, "regtune.model_key": key})
    return model_uri


def _ensemble(
    study: optuna.Study, space: SearchSpace, metric: Metric, folds: Folds, X_test: np.ndarray | None,
    y_test: np.ndarray | None, settings: TuneSettings, best_estimator: Any, best: optuna.trial.FrozenTrial,
    budget: FinalBudget,
) -> tuple[Any, dict[str, Any] | None]:
    """Greedy selection among the top ``settings.ensemble`` trials; the ensemble and its scores
    row. A member whose refit does not fit in the time left is left out (``budget.skipped``)."""
    from regtune.tuning.ensemble import drop_outside_top, ensemble_from_study

    drop_outside_top(study, settings.ensemble)  # those of trials pushed out while others finished
    def refit_trial(trial: optuna.trial.FrozenTrial) -> Any:  # the best is refit already
        if trial.number == best.number:
            return best_estimator
        if not budget.fits(trial, f"ensemble member trial {trial.number}"):
            return None
        return refit(space.to_config(trial.params), trial, folds, settings)

    classes = np.unique(folds.y) if folds.task == "classification" else None
    found = ensemble_from_study(study, settings.ensemble, folds.y, metric, refit_trial, classes=classes)
    if found is None:
        return None, None
    ensemble, val = found
    train = metric.final_fn(ensemble, folds.X[folds.refit_rows()], folds.y[folds.refit_rows()])
    test = metric.final_fn(ensemble, X_test, y_test) if X_test is not None else float("nan")
    members = ", ".join(f"#{t} x{w:.2f}" for t, w in zip(ensemble.trials, ensemble.weights, strict=True))
    return ensemble, {"model": "ensemble", "trial": None, "train": train, "val": val, "test": test,
                      "gap": train - test, "epochs": ensemble.n_iter_, "regularizers": f"trials {members}"}


def _model_key(number: int, folds: Folds, X_test: np.ndarray | None, settings: TuneSettings) -> str:
    digest = hashlib.sha1()
    for array in (folds.X, folds.y, X_test):
        if array is not None:
            array = np.asarray(array)
            digest.update(np.ascontiguousarray(array.astype(str) if array.dtype == object else array).tobytes())
    return f"trial {number}, seed {settings.seed}, device {settings.device}, data {digest.hexdigest()[:16]}"


def _no_complete_trial(study: optuna.Study) -> str:
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    failed = [t for t in trials if t.state == TrialState.FAIL and "fail_reason" in t.user_attrs]
    text = (f"study {study.study_name!r}: none of its {len(trials)} trials completed "
            f"({states.count(TrialState.FAIL)} failed, {states.count(TrialState.PRUNED)} pruned, "
            f"{states.count(TrialState.WAITING)} waiting)")
    if failed:
        text += (f"; first failure, trial {failed[0].number}: {failed[0].user_attrs['fail_reason']}; "
                 "check the search space (e.g. lr) and the data")
    return text


def refit(config: RegConfig, trial: optuna.trial.FrozenTrial | None, folds: Folds, settings: TuneSettings,
          stop: StopBy | None = None) -> Any:
    """Train ``config`` on the whole train part, seeded like its trial (``stop``: ends it in time).

    With early stopping, the folds already chose how many epochs to train: the refit trains
    that long on all rows instead of holding some back again.
    """
    number = trial.number if trial is not None else 0
    network = Network(settings.module, dict(settings.module_params), fixed=dict(settings.estimator_params))
    est = make_estimator(config, folds.task, image_shape=folds.image_shape, device=settings.device,
                         random_state=trial_seed(settings.seed, number),
                         module=network.estimator_params(trial.params if trial is not None else None))
    if config.early_stopping and trial is not None and "best_epoch" in trial.user_attrs:
        epochs = max(1, round(trial.user_attrs["best_epoch"]) + 1)
        if config.lr_schedule == "constant" and config.warmup_epochs == 0:
            est.set_params(early_stopping=False, max_epochs=epochs)
        else:  # a schedule spans max_epochs: keep its horizon and stop where the folds did
            est.set_params(early_stopping=False, callbacks=[StopAfter(epochs)])
    rows = folds.refit_rows()
    if stop is not None:
        est.set_params(callbacks=[*(est.get_params()["callbacks"] or []), stop])
    with torch_threads(threads_for(config, folds.X.shape[1], n_jobs=1)):  # as its trial trained
        return est.fit(folds.X[rows], folds.y[rows], sample_weight=folds.weights(rows))
