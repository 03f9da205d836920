"""``regtune predict``: the best model a study logged, applied to new rows."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd
from typer import BadParameter

from regtune.data.images import image_files, read_images, read_npz_features
from regtune.data.loading import BUILTIN_DATASETS, FILE_SUFFIXES, load_dataset, read_table
from regtune.estimators.persistence import TunedModel, load_model
from regtune.exceptions import DataError, TrackingError
from regtune.tracking.masking import mask_secrets
from regtune.tracking.tracker import (
    PARENT_TAG,
    ROLE_TAG,
    STUDY_TAG,
    TRIAL_TAG,
    MLflowTracker,
    resolve_tracking_uri,
)

__all__ = ["check_output", "predict_frame"]

MODEL_TAG = "regtune.model_uri"


def _features(data: str) -> tuple[pd.DataFrame, list[str] | None]:
    """The rows to predict, and the image files they come from (an image folder)."""
    if data in BUILTIN_DATASETS:
        return load_dataset(data).X, None
    path = Path(data)
    if not path.exists():
        raise DataError(f"'{data}' is neither a built-in dataset nor an existing file")
    if path.suffix.lower() == ".npz":
        return read_npz_features(path)[0], None
    if path.is_dir() and path.suffix.lower() not in FILE_SUFFIXES:
        files = image_files(path)
        rows, _ = read_images(files)
        frame = pd.DataFrame(rows, columns=[f"px{i}" for i in range(rows.shape[1])])
        return frame, [str(f.relative_to(path)) for f in files]
    return read_table(path), None


def _check_store_exists(tracking_uri: str | None) -> None:
    """A missing local SQLite store is a wrong path or directory, not a store to create."""
    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise TrackingError(f"no MLflow store at {uri!r}; run `regtune tune` here first, or pass "
                                "the store with --tracking-uri")


def check_output(output: Path | None) -> None:
    """Refuse an output file that cannot be written before any model is loaded."""
    if output is None:
        return
    parent = output.parent
    if not parent.is_dir():
        raise BadParameter(f"the directory '{parent}' of '{output}' does not exist; create it or write somewhere "
                           "else", param_hint="'--output'")
    if output.is_dir():
        raise BadParameter(f"'{output}' is a directory; give a file name such as "
                           f"'{output / 'predictions.csv'}'", param_hint="'--output'")
    if not os.access(parent, os.W_OK) or (output.exists() and not os.access(output, os.W_OK)):
        raise BadParameter(f"'{output}' cannot be written (permission denied); write somewhere else",
                           param_hint="'--output'")


def predict_frame(data: str, run_id: str, *, tracking_uri: str | None = None, proba: bool = False) -> pd.DataFrame:
    """Predictions for ``data`` from the model logged under the parent run ``run_id``.

    The model loads from JSON and a ``weights_only`` state dict: nothing is unpickled. Every
    MLflow call goes to ``tracking_uri``: MLflow's global default would be another store (and
    would create an empty ``./mlflow.db``).
    """
    _check_store_exists(tracking_uri)
    tracker = MLflowTracker(tracking_uri, experiment=None)
    model_uri = _model_uri(tracker, run_id)
    model = _download(model_uri, run_id, tracker.tracking_uri)
    if proba and not hasattr(model.estimator, "predict_proba"):
        raise BadParameter(f"run {run_id} holds a regression model (metric {model.meta.get('metric', '?')}), "
                           "which predicts numbers, not class probabilities; drop --proba", param_hint="'--proba'")
    X, files = _features(data)
    target = model.meta.get("target")
    if target in X.columns:
        X = X.drop(columns=[target])
    if proba:
        p = model.predict_proba(X)
        out = pd.DataFrame(p, columns=[f"proba_{c}" for c in model.estimator.classes_])
    else:
        out = pd.DataFrame({"prediction": model.predict(X)})
    return out if files is None else out.assign(file=files)[["file", *out.columns]]


def _model_uri(tracker: MLflowTracker, run_id: str) -> str:
    """The model of a study's parent run; a trial's run id is answered with its parent's."""
    if tracker.run_tag(run_id, ROLE_TAG) == "trial":
        parent = tracker.run_tag(run_id, PARENT_TAG)
        raise TrackingError(
            f"run {run_id} is trial {tracker.run_tag(run_id, TRIAL_TAG)} of study "
            f"{tracker.run_tag(run_id, STUDY_TAG)!r}; trials log no model, the study's model (the best trial "
            f"refit) is under its parent run: regtune predict DATA --run {parent}"
        )
    model_uri = tracker.run_tag(run_id, MODEL_TAG)
    if not model_uri:
        raise TrackingError(f"run {run_id} has no regtune model; pass a study's parent run id (`regtune tune` "
                            "and `regtune best` print it)")
    return model_uri


def _download(model_uri: str, run_id: str, tracking_uri: str) -> TunedModel:
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    where = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            where = _artifact_location(model_uri, tracking_uri)
            local = mlflow.artifacts.download_artifacts(artifact_uri=where, dst_path=tmp, tracking_uri=tracking_uri)
            return load_model(Path(local) / "artifacts" / "regtune_model")
        except Exception as err:  # mlflow, os and our loader each word a missing model their own way
            reason = " ".join(str(err).replace(tmp, "").split()) or type(err).__name__
            raise TrackingError(
                f"the model of run {run_id} ({model_uri}) cannot be loaded: {mask_secrets(reason)}; its files"
                f"{f' under {mask_secrets(where)}' if where else ''} were deleted or moved. Restore them, or tune a "
                "new study (--study NEW_NAME) to log a new model"
            ) from None


def _artifact_location(model_uri: str, tracking_uri: str) -> str:
    """Where the files of a logged model (``models:/m-...``) are, asked of ``tracking_uri``'s store.

    Why not hand ``models:/`` to MLflow: it resolves such a URI against its global default store
    whatever ``tracking_uri`` says, so the model is "not found" (and ``./mlflow.db`` created).
    """
    from mlflow import MlflowClient

    if not model_uri.startswith("models:/m-"):
        return model_uri  # runs:/... and plain artifact URIs resolve by themselves
    return MlflowClient(tracking_uri).get_logged_model(model_uri.removeprefix("models:/")).artifact_location
