"""Data preparation for a study: the test part held out, the rest preprocessed, the folds.

Data flow: dataset -> test part held out -> preprocessor fitted on the rest -> folds (or the
user's validation set as one split); with ``cv="auto"`` and a timeout, one short timed fit of
the baseline decides how many folds the time holds.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from regtune.config import RegConfig
from regtune.data.images import as_rows, to_numpy
from regtune.data.loading import Dataset, dataset_from_frame, load_dataset
from regtune.data.preprocess import TabularPreprocessor
from regtune.data.split import auto_plan, cv_splits, parse_cv, resolve_plan, split_dataset
from regtune.exceptions import DataError
from regtune.tuning.budget import PROBE_EPOCHS, fits_left
from regtune.tuning.resources import threads_for, torch_threads
from regtune.tuning.settings import TuneSettings
from regtune.tuning.trial import Folds, Network, make_estimator

__all__ = ["as_dataset", "given_validation", "prepare"]


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

    def fit(epochs: int) -> None:
        est = make_estimator(config.replace(max_epochs=epochs), data.task, image_shape=data.image_shape,
                             device=settings.device, random_state=settings.seed,
                             module=(network or Network()).estimator_params())
        est.fit(X, y)

    try:
        with torch_threads(threads_for(config, X.shape[1], n_jobs=settings.n_jobs)), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # The first fit of a process pays one-time costs (lazy imports, the first graph and
            # kernels: ~1 s, 100x an epoch of a small table): an untimed one-epoch fit pays them,
            # so that the timed fit measures training alone. The probe runs on search parts of
            # under 1,000 rows only (more rows: one split whatever the time), so it costs little.
            fit(1)
            start = time.perf_counter()
            fit(PROBE_EPOCHS)
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
