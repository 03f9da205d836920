"""Models saved by regtune 0.1 (flat module layout) still load with today's package layout."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd

LEGACY = Path(__file__).parent / "data" / "legacy_v0_1"


def test_pickles_from_the_flat_layout_load_and_predict_the_same() -> None:
    X = np.load(LEGACY / "X.npy")
    clf = pickle.loads((LEGACY / "classifier.pkl").read_bytes())
    reg = pickle.loads((LEGACY / "regressor.pkl").read_bytes())
    assert type(clf).__module__ == "regtune.estimators.net"
    np.testing.assert_allclose(clf.predict_proba(X), np.load(LEGACY / "clf_proba.npy"), atol=1e-5)
    np.testing.assert_allclose(reg.predict(X[:, :3]), np.load(LEGACY / "reg_pred.npy"), atol=1e-5)


def test_pickled_make_preprocessor_pipeline_from_the_flat_layout_loads() -> None:
    """0.1 pickled the preprocessor as ``regtune.data.TabularPreprocessor``."""
    rows = pd.read_csv(LEGACY / "pipeline_rows.csv")
    pipe = pickle.loads((LEGACY / "pipeline.pkl").read_bytes())
    assert type(pipe.steps[0][1]).__module__ == "regtune.data.preprocess"
    assert rows["age"].isna().any() and not pd.api.types.is_numeric_dtype(rows["city"])
    np.testing.assert_allclose(pipe.predict_proba(rows), np.load(LEGACY / "pipeline_proba.npy"), atol=1e-5)


def test_mlflow_model_logged_by_the_flat_layout_serves() -> None:
    import mlflow

    X = np.load(LEGACY / "X.npy")
    model = mlflow.pyfunc.load_model(str(LEGACY / "pyfunc_model"))
    proba = np.load(LEGACY / "clf_proba.npy")
    assert (model.predict(pd.DataFrame(X)) == proba.argmax(1)).all()


def test_old_module_paths_are_the_new_modules() -> None:
    import regtune.estimator
    import regtune.serving
    import regtune.tuner

    import regtune.estimators.net
    from regtune.data import TabularPreprocessor
    from regtune.space import SearchSpace

    assert regtune.estimator is regtune.estimators.net
    assert regtune.serving.load_model.__module__ == "regtune.estimators.persistence"
    assert regtune.tuner.tune.__module__ == "regtune.tuning.tuner"
    assert TabularPreprocessor.__module__.startswith("regtune.data")
    assert SearchSpace.__module__ == "regtune.space.space"
