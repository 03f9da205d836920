"""``regtune predict``: the best model a study logged, applied to new rows."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from regtune.data.loading import BUILTIN_DATASETS, load_dataset, read_table
from regtune.estimators.persistence import load_model
from regtune.exceptions import DataError
from regtune.tracking.tracker import MLflowTracker, TrackingError, resolve_tracking_uri

__all__ = ["predict_frame"]


def _features(data: str) -> pd.DataFrame:
    if data in BUILTIN_DATASETS:
        return load_dataset(data).X
    path = Path(data)
    if not path.exists():
        raise DataError(f"'{data}' is neither a built-in dataset nor an existing file")
    return read_table(path)


def _check_store_exists(tracking_uri: str | None) -> None:
    """A missing local SQLite store is a wrong path or directory, not a store to create."""
    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise TrackingError(f"no MLflow store at {uri!r}; run `regtune tune` here first, or pass "
                                "the store with --tracking-uri")


def predict_frame(data: str, run_id: str, *, tracking_uri: str | None = None, proba: bool = False) -> pd.DataFrame:
    """Predictions for ``data`` from the model logged under the parent run ``run_id``.

    The model loads from JSON and a ``weights_only`` state dict: nothing is unpickled.
    """
    import mlflow

    _check_store_exists(tracking_uri)
    tracker = MLflowTracker(tracking_uri, experiment=None)
    model_uri = tracker.run_tag(run_id, "regtune.model_uri")
    if not model_uri:
        raise ValueError(f"run {run_id!r} has no regtune model; pass a study's parent run id from `regtune tune`")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
        model = load_model(Path(local) / "artifacts" / "regtune_model")
    X = _features(data)
    target = model.meta.get("target")
    if target in X.columns:
        X = X.drop(columns=[target])
    if proba:
        p = model.predict_proba(X)
        return pd.DataFrame(p, columns=[f"proba_{c}" for c in model.estimator.classes_])
    return pd.DataFrame({"prediction": model.predict(X)})
