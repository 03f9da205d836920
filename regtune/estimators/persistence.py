"""Saving and loading a tuned model without pickle: JSON for the settings, a torch state dict
loaded with ``weights_only=True`` for the weights. The MLflow model is "models from code", so
``mlflow.pyfunc.load_model`` does not unpickle anything either.

A user's own network (``module=`` / ``--model``) is saved by reference (``package.module:Name``)
with a copy of its source file or package in ``code/`` (and as MLflow ``code_paths``): loading
the model imports, so runs, that code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from regtune.data.preprocess import TabularPreprocessor
from regtune.estimators.ensemble import WeightedEnsemble
from regtune.estimators.net import RegularizedNetClassifier, RegularizedNetRegressor
from regtune.exceptions import DataError
from regtune.nn.models import ModuleFactory, module_source

__all__ = ["TunedModel", "load_model", "log_model", "save_model"]

_META, _WEIGHTS, _CODE = "regtune_model.json", "weights.pt", "code"
_Net = RegularizedNetClassifier | RegularizedNetRegressor


class TunedModel:
    """Preprocessor plus network: takes the raw table (DataFrame) the study was run on."""

    def __init__(self, estimator: _Net | WeightedEnsemble, preprocessor: TabularPreprocessor | None,
                 meta: dict[str, Any] | None = None) -> None:
        self.estimator = estimator
        self.preprocessor = preprocessor
        self.meta = meta or {}

    def _features(self, X: Any) -> np.ndarray:
        if self.preprocessor is not None:
            return self.preprocessor.transform(X)
        columns = self.meta.get("columns")
        if isinstance(X, pd.DataFrame) and columns:
            missing = [c for c in columns if c not in X.columns]
            if missing:
                raise DataError(f"the data lacks column(s) {missing[:5]} the model was trained on")
            X = X[columns]
        return np.asarray(X, dtype=np.float32)

    def predict(self, X: Any) -> np.ndarray:
        return self.estimator.predict(self._features(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.estimator.predict_proba(self._features(X))


def save_model(path: str | Path, estimator: _Net | WeightedEnsemble, preprocessor: TabularPreprocessor | None,
               **meta: Any) -> Path:
    """Write ``regtune_model.json`` and ``weights.pt`` into the directory ``path``.

    An ensemble writes each member's state (``"members"``, with the ensemble ``"weights"``)
    and its weights as ``weights_<i>.pt``.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"format": 1, "preprocessor": preprocessor.to_dict() if preprocessor else None,
                           "meta": meta}
    if isinstance(estimator, WeightedEnsemble):
        doc["ensemble"] = {"weights": estimator.weights, "trials": estimator.trials, "members": []}
        for i, member in enumerate(estimator.members):
            state, weights = member.export_state()
            doc["ensemble"]["members"].append(state)
            (path / f"weights_{i}.pt").write_bytes(weights)
    else:
        state, weights = estimator.export_state()
        doc["estimator"] = state
        (path / _WEIGHTS).write_bytes(weights)
    (path / _META).write_text(json.dumps(doc, indent=1, default=str))
    _copy_code(estimator, path / _CODE)
    return path


def _copy_code(estimator: Any, dest: Path) -> list[Path]:
    """Copy the source of every user module ``estimator`` holds (an ensemble: its members')
    into ``dest``, so the model loads where that code is not installed."""
    copied: list[Path] = []
    for member in getattr(estimator, "members", None) or [estimator]:
        if getattr(member, "module", None) is None:
            continue
        factory = ModuleFactory.of(member.module).factory
        source = module_source(factory)
        if source is None:
            continue
        # under the name it is imported by (a --model file's is private, not its file name)
        top = factory.__module__.split(".")[0]
        target = dest / (top if source.is_dir() else f"{top}.py")
        if target.exists():
            continue
        dest.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, target)
        copied.append(target)
    return copied


def load_model(path: str | Path) -> TunedModel:
    """Load what :func:`save_model` wrote; never unpickles (JSON + ``weights_only=True``)."""
    path = Path(path)
    meta_file = path / _META
    if not meta_file.is_file():
        raise FileNotFoundError(f"{path} holds no regtune model ({_META} is missing)")
    doc = json.loads(meta_file.read_text())
    code = (path / _CODE).resolve()
    if code.is_dir() and str(code) not in sys.path:  # the user's module, shipped with the model
        sys.path.insert(0, str(code))
    # from_state builds whichever of the two classes the saved state names
    if "ensemble" in doc:
        ens = doc["ensemble"]
        members = [RegularizedNetClassifier.from_state(state, (path / f"weights_{i}.pt").read_bytes())
                   for i, state in enumerate(ens["members"])]
        estimator: _Net | WeightedEnsemble = WeightedEnsemble(members, ens["weights"], ens.get("trials", ()))
    else:
        estimator = RegularizedNetClassifier.from_state(doc["estimator"], (path / _WEIGHTS).read_bytes())
    prep = TabularPreprocessor.from_dict(doc["preprocessor"]) if doc.get("preprocessor") else None
    return TunedModel(estimator, prep, doc.get("meta", {}))


def log_model(tracker: Any, run_id: str, estimator: _Net, preprocessor: TabularPreprocessor | None,
              input_example: pd.DataFrame | None = None, **meta: Any) -> str:
    """Log the model under ``run_id`` as an MLflow pyfunc model at artifact path ``model``.

    ``input_example``: a few rows of the raw table the model was trained on; they become the
    model's input example and, with the model's predictions for them, its signature (the
    schema the MLflow UI shows and ``mlflow.pyfunc`` checks inputs against). Images are
    described by their shape: the pyfunc model takes arrays ``(N, C, H, W)``.

    MLflow's global tracking URI and active run are left as they were: a notebook user's own
    MLflow setup is not ours to change.
    """
    import os

    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    code = Path(__file__).resolve().parent.parent / "tracking" / "pyfunc_model.py"  # executed by MLflow, not imported here

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), _tracking_uri(tracker.tracking_uri):
        # MLflow asks for type hints to infer a signature; the signature is given instead.
        warnings.simplefilter("ignore", UserWarning)
        saved = save_model(Path(tmp) / "regtune_model", estimator, preprocessor, **meta)
        # MLflow puts code_paths on sys.path before it loads the model: the user's module imports.
        code_paths = sorted(str(p) for p in (saved / _CODE).iterdir()) if (saved / _CODE).is_dir() else None
        example, signature = _signature(TunedModel(estimator, preprocessor, meta), input_example)
        pyfunc_log = logging.getLogger("mlflow.pyfunc")
        level = pyfunc_log.level
        pyfunc_log.setLevel(logging.ERROR)
        try:
            with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=str(code),
                    artifacts={"regtune_model": str(Path(tmp) / "regtune_model")},
                    pip_requirements=["regtune"],
                    code_paths=code_paths,
                    signature=signature,
                    input_example=example,
                )
        finally:
            pyfunc_log.setLevel(level)
    return info.model_uri


def _signature(model: TunedModel, rows: pd.DataFrame | None) -> tuple[Any, Any]:
    """The input example and signature of ``model`` from a few raw ``rows`` (their column types
    are the whole training table's); ``(None, None)`` without rows."""
    if rows is None or len(rows) == 0:
        return None, None
    from mlflow.models import infer_signature

    nets = getattr(model.estimator, "members", None) or [model.estimator]
    shape = getattr(nets[0], "image_shape_", None)
    # One image carries the shape; more would only bloat the artifact.
    example = rows.head(1).to_numpy(np.float32).reshape(-1, *shape) if shape is not None else rows
    return example, infer_signature(example, model.predict(example))


@contextlib.contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    import mlflow

    try:  # MLflow's own scoped setter (private, but stable since 1.x)
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri
    except ImportError:
        _use_tracking_uri = None
    if _use_tracking_uri is not None:
        with _use_tracking_uri(uri):
            yield
        return
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
