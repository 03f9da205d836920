"""RegTuneClassifier / RegTuneRegressor: sklearn's contract, the fitted attributes, persistence,
MLflow logging and early parameter errors, all on a tiny search space."""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from locations import TINY_SPACE
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from regtune import (
    RegTuneClassifier,
    RegTuneRegressor,
    RegularizedNetClassifier,
    RegularizedNetRegressor,
)
from regtune.data.preprocess import TabularPreprocessor
from regtune.search.estimators import EXPECTED_FAILED_CHECKS
from regtune.tuning.storage import make_storage

TINY = str(TINY_SPACE)
FAST = dict(space=TINY, n_trials=2, cv=2, tracking_uri="off", device="cpu")


@parametrize_with_checks([RegTuneClassifier(**FAST), RegTuneRegressor(**FAST)],
                         expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS)
def test_sklearn_compatible(estimator, check) -> None:
    check(estimator)


@pytest.fixture(scope="module")
def iris() -> tuple[pd.DataFrame, pd.Series]:
    return load_iris(return_X_y=True, as_frame=True)


@pytest.fixture(scope="module")
def fitted_iris(iris: tuple[pd.DataFrame, pd.Series]) -> RegTuneClassifier:
    X, y = iris
    return RegTuneClassifier(**{**FAST, "n_trials": 4}, random_state=0).fit(X, y)


def test_classifier_exposes_the_study_and_the_refit_best(fitted_iris: RegTuneClassifier, iris) -> None:
    X, y = iris
    est = fitted_iris
    assert est.best_params_ == est.study_.best_params
    assert set(est.best_params_) == set(est.study_.best_trial.params)
    assert est.best_score_ == pytest.approx(est.study_.best_value)
    assert isinstance(est.best_estimator_, RegularizedNetClassifier)
    assert est.best_estimator_.lr == pytest.approx(est.best_params_["lr"])
    trials = est.trials_
    assert len(trials) == 4 and trials["number"].tolist() == [0, 1, 2, 3]
    assert trials["baseline"].tolist() == [True, False, False, False]
    assert est.baseline_score_ == pytest.approx(trials.loc[0, "value"])
    np.testing.assert_array_equal(est.classes_, [0, 1, 2])
    assert est.n_features_in_ == 4 and list(est.feature_names_in_) == list(X.columns)


def test_classifier_predicts_from_frames_and_arrays_alike(fitted_iris: RegTuneClassifier, iris) -> None:
    X, y = iris
    pred = fitted_iris.predict(X)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        np.testing.assert_array_equal(pred, fitted_iris.predict(X.to_numpy()))
    assert fitted_iris.score(X, y) == pytest.approx(accuracy_score(y, pred))
    assert fitted_iris.score(X, y) > 0.8
    proba = fitted_iris.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(fitted_iris.classes_[proba.argmax(1)], pred)


def test_predict_applies_the_preprocessor_the_net_was_trained_behind(fitted_iris, iris) -> None:
    X, _ = iris
    model = fitted_iris.best_estimator_ if fitted_iris.ensemble_ is None else fitted_iris.ensemble_
    inner = model.predict(fitted_iris.preprocessor_.transform(X.to_numpy()))
    np.testing.assert_array_equal(fitted_iris.predict(X), inner)


def test_binary_classification_with_string_labels() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    labels = np.where(y == 1, "benign", "malignant")
    est = RegTuneClassifier(**{**FAST, "n_trials": 4}, random_state=0).fit(X, labels)
    np.testing.assert_array_equal(est.classes_, ["benign", "malignant"])
    assert len(est.trials_) == 4
    assert est.score(X, labels) > 0.9


def test_regressor_on_diabetes_minimizes_rmse() -> None:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    est = RegTuneRegressor(**{**FAST, "n_trials": 4}, metric="rmse", random_state=0).fit(X, y)
    assert isinstance(est.best_estimator_, RegularizedNetRegressor)
    complete = est.trials_[est.trials_["state"] == "COMPLETE"]
    assert est.best_score_ == pytest.approx(complete["value"].min())  # rmse: lower is better
    pred = est.predict(X)
    assert pred.shape == (len(y),)
    assert est.score(X, y) == pytest.approx(r2_score(y, pred))
    assert est.score(X, y) > 0.3


def test_missing_values_are_filled_not_rejected(iris) -> None:
    X, y = iris
    X = X.copy()
    X.iloc[::7, 1] = np.nan
    est = RegTuneClassifier(**FAST, random_state=0).fit(X, y)
    assert np.isfinite(est.predict_proba(X)).all()


def test_pickle_round_trip_keeps_predictions_and_the_study(fitted_iris: RegTuneClassifier, iris) -> None:
    X, _ = iris
    loaded = pickle.loads(pickle.dumps(fitted_iris))
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted_iris.predict_proba(X))
    # an in-memory study travels whole: same trials, same best
    assert [t.value for t in loaded.study_.trials] == [t.value for t in fitted_iris.study_.trials]
    assert loaded.study_.best_params == fitted_iris.best_params_
    pd.testing.assert_frame_equal(loaded.trials_, fitted_iris.trials_)


def test_clone_refits_to_identical_predictions(fitted_iris: RegTuneClassifier, iris) -> None:
    X, y = iris
    fresh = clone(fitted_iris)
    with pytest.raises(NotFittedError):
        fresh.predict(X)
    fresh.fit(X, y)
    assert fresh.study_ is not fitted_iris.study_  # a new study, not a resumed one
    assert len(fresh.study_.trials) == len(fitted_iris.study_.trials)
    # Named after the seed, so Hyperband (which hashes the study name) brackets trials alike.
    assert fresh.study_.study_name == fitted_iris.study_.study_name
    np.testing.assert_array_equal(fresh.predict_proba(X), fitted_iris.predict_proba(X))


def test_refitting_starts_a_new_study_every_time(iris) -> None:
    X, y = iris
    est = RegTuneClassifier(**FAST, random_state=0)
    first = est.fit(X, y).study_
    assert est.fit(X, y).study_ is not first
    assert len(est.trials_) == 2


def test_a_named_study_in_a_file_resumes_and_stays_live(tmp_path: Path, iris) -> None:
    X, y = iris
    storage = str(tmp_path / "study.journal")
    est = RegTuneClassifier(**FAST, storage=storage, study_name="iris", random_state=0).fit(X, y)
    est.set_params(n_trials=3).fit(X, y)  # tops the study up to 3 trials instead of starting over
    assert est.trials_["number"].tolist() == [0, 1, 2]
    assert len(optuna.load_study(study_name="iris", storage=make_storage(storage)).trials) == 3


def test_verbose_draws_a_progress_bar(capfd, iris) -> None:
    X, y = iris
    RegTuneClassifier(**FAST, random_state=0, verbose=1).fit(X, y)
    out, err = capfd.readouterr()
    assert "trials" in out + err and "2/2" in out + err


def test_cross_val_score(iris) -> None:
    X, y = iris
    scores = cross_val_score(RegTuneClassifier(**FAST, random_state=0), X, y, cv=2)
    assert scores.shape == (2,) and (scores > 0.6).all()


def test_categorical_tables_go_through_the_preprocessor_in_a_pipeline(iris) -> None:
    X, y = iris
    X = X.assign(size=np.where(X["petal length (cm)"] > 3, "big", "small"))
    with pytest.raises(ValueError, match="could not convert string to float"):
        RegTuneClassifier(**FAST).fit(X, y)
    pipe = make_pipeline(TabularPreprocessor(), RegTuneClassifier(**FAST, random_state=0)).fit(X, y)
    assert pipe.score(X, y) > 0.8


def test_a_class_with_one_row_cannot_be_cross_validated() -> None:
    X = np.arange(20.0).reshape(10, 2)
    y = np.array([0] * 5 + [1] * 4 + [2])
    with pytest.raises(ValueError, match="class 2 has 1 row"):
        RegTuneClassifier(**FAST).fit(X, y)


def test_mlflow_gets_one_parent_run_and_a_child_per_trial(tmp_path: Path, monkeypatch, iris) -> None:
    import mlflow

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    X, y = iris
    est = RegTuneClassifier(**{**FAST, "n_trials": 3, "tracking_uri": uri}, experiment="search-test").fit(X, y)
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("search-test")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == est.mlflow_run_id_]
    assert [r.info.run_id for r in parents] == [est.mlflow_run_id_]
    assert parents[0].info.run_name == est.study_.study_name
    assert len(children) == 3 and len(runs) == 4
    assert sorted(est.trials_["mlflow_run_id"]) == sorted(r.info.run_id for r in children)
    assert not (tmp_path / "regtune.journal").exists()  # the study itself stayed in memory


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_trials": 0}, "'n_trials' parameter"),
        ({"sampler": "grid"}, "'sampler' parameter"),
        ({"pruner": "patient"}, "'pruner' parameter"),
        ({"n_jobs": 0}, "'n_jobs' parameter"),
        ({"cv": 0}, "'cv' parameter"),
        ({"metric": "r2"}, "'metric' parameter"),
        ({"space": "no-such-space"}, "no space named 'no-such-space'"),
        ({"storage": ":memory:", "n_jobs": 2}, "storage=':memory:' lives in one process"),
    ],
)
def test_bad_parameters_fail_before_anything_is_created(params, match, tmp_path, monkeypatch, iris) -> None:
    monkeypatch.chdir(tmp_path)
    X, y = iris
    est = RegTuneClassifier(**{**FAST, "tracking_uri": None, **params})  # MLflow would write ./mlflow.db
    with pytest.raises(ValueError, match=match):
        est.fit(X, y)
    assert list(tmp_path.iterdir()) == []


def test_optuna_stays_quiet_and_its_verbosity_is_restored(capfd, iris) -> None:
    X, y = iris
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        RegTuneClassifier(**FAST, random_state=0).fit(X, y)
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        optuna.logging.set_verbosity(before)
    out, err = capfd.readouterr()
    assert "Trial" not in out + err and "A new study" not in out + err


def test_report_hands_the_study_to_regtune_report(fitted_iris, monkeypatch) -> None:
    calls = []
    fake = types.ModuleType("regtune.analysis.report")
    fake.report = lambda study, **kwargs: calls.append((study, kwargs)) or "the report"
    monkeypatch.setitem(sys.modules, "regtune.analysis.report", fake)
    assert fitted_iris.report(top=3) == "the report"
    [(study, kwargs)] = calls
    assert study is fitted_iris.study_ and kwargs["top"] == 3
    assert kwargs["data"].X.shape == (150, 4), "the rows fit saw go along, for the refits"
    with pytest.raises(NotFittedError):
        RegTuneClassifier().report()


@pytest.mark.slow
def test_parallel_workers_share_a_temporary_journal(tmp_path, monkeypatch, iris) -> None:
    monkeypatch.chdir(tmp_path)
    X, y = iris
    est = RegTuneClassifier(**{**FAST, "n_trials": 4}, n_jobs=2, random_state=0).fit(X, y)
    assert len(est.trials_) == 4
    assert list(tmp_path.iterdir()) == []  # the shared journal was temporary ...
    assert len(pickle.loads(pickle.dumps(est)).study_.trials) == 4  # ... and the study outlives it


# ---------------------------------------------------------------- issue 11


def test_regressor_search_survives_a_column_constant_in_its_folds() -> None:
    """A column that is 1 in one row: after the preprocessor (float32) it is constant up to round-off
    in every fold without that row, and the folds' R^2 was -1e13, so the search picked on noise."""
    from sklearn.datasets import make_regression

    X, y = make_regression(n_samples=200, n_features=5, noise=5.0, random_state=0)
    X = np.column_stack([X, np.zeros(200)])
    X[7, -1] = 1.0
    est = RegTuneRegressor(**{**FAST, "cv": 5}, random_state=0).fit(X, y)
    complete = est.trials_[est.trials_["state"] == "COMPLETE"]
    assert len(complete) == 2 and complete["value"].min() > 0.5, complete["value"].tolist()


def test_regressor_refuses_an_absurd_target_value_naming_it() -> None:
    from regtune import RegtuneError

    X = np.random.default_rng(0).normal(size=(60, 2))
    y = X[:, 0] * 3
    y[5] = 1e20
    with pytest.raises(RegtuneError, match=r"1e\+20 at row 5.*spread.*transform the target"):
        RegTuneRegressor(**FAST).fit(X, y)


_WITH_LABEL_SMOOTHING = """\
fixed: {hidden_layer_sizes: [16], batch_size: 64, max_epochs: 4}
params:
  lr: {type: float, low: 1.0e-2, high: 5.0e-2, log: true, default: 2.0e-2}
regularizers:
  label_smoothing:
    label_smoothing: {type: float, low: 0.05, high: 0.3}
  l2:
    l2: {type: float, low: 1.0e-6, high: 1.0e-3, log: true}
"""


def test_a_regression_study_never_samples_label_smoothing_nor_reports_it(tmp_path: Path) -> None:
    """Label smoothing was sampled for regression, silently zeroed, and reported with an on/off effect."""
    space = tmp_path / "with_ls.yaml"
    space.write_text(_WITH_LABEL_SMOOTHING)
    X, y = load_diabetes(return_X_y=True)
    est = RegTuneRegressor(**{**FAST, "space": space, "n_trials": 6, "cv": 1}, sampler="random",
                           random_state=0).fit(X[:150], y[:150])
    params = [t.params for t in est.study_.trials]
    assert any(p.get("use_l2") for p in params), "the other family is searched"
    assert not [p for p in params if "use_label_smoothing" in p or "label_smoothing" in p], params
    tables = est.report(out_dir=tmp_path / "report")
    assert "label_smoothing" not in set(tables["on_off"].get("technique", []))
    assert "label_smoothing" not in (tmp_path / "report" / "report.md").read_text()

    classifier = RegTuneClassifier(**{**FAST, "space": space, "n_trials": 6, "cv": 1}, sampler="random",
                                   random_state=0).fit(*load_iris(return_X_y=True))
    assert any("use_label_smoothing" in t.params for t in classifier.study_.trials), "classification keeps it"


_TINY_CNN = """\
fixed: {architecture: cnn, conv_channels: [4], hidden_layer_sizes: [16], batch_size: 64, max_epochs: 3}
params:
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true, default: 3.0e-3}
regularizers:
  augment:
  dropout:
    dropout: {type: float, low: 0.05, high: 0.3}
"""


def test_a_cnn_space_runs_from_python_with_image_shape(tmp_path: Path) -> None:
    """``RegTuneClassifier(space="image")`` could never run: ``image_shape=None`` was hard-coded."""
    from sklearn.datasets import load_digits

    from regtune import RegtuneError

    space = tmp_path / "cnn.yaml"
    space.write_text(_TINY_CNN)
    X, y = load_digits(return_X_y=True)
    X, y = X[:200], y[:200]
    with pytest.raises(RegtuneError, match=r"CNN and image augmentation.*image_shape=\(C, H, W\)"):
        RegTuneClassifier(**{**FAST, "space": space}).fit(X, y)
    with pytest.raises(RegtuneError, match="image_shape=.*64 values"):
        RegTuneClassifier(**{**FAST, "space": space}, image_shape=(1, 8, 7)).fit(X, y)
    est = RegTuneClassifier(**{**FAST, "space": space, "n_trials": 3}, sampler="random", pruner="none",
                            image_shape=(1, 8, 8), random_state=0).fit(X, y)
    assert (est.trials_["state"] == "COMPLETE").all(), est.trials_["fail_reason"].tolist()
    assert est.best_estimator_.image_shape == (1, 8, 8) and est.preprocessor_ is None
    assert est.score(X, y) > 0.2  # 10 classes; 3 epochs of a 4-channel CNN only have to learn something


def test_report_from_python_on_arrays_writes_the_report(tmp_path: Path, iris) -> None:
    """``.report()`` on an estimator fitted on arrays failed ("pass --data PATH") and left an
    empty folder: the report refits on the rows fit saw, which the estimator hands over."""
    X, y = (part.to_numpy() for part in iris)
    est = RegTuneClassifier(**FAST, random_state=0).fit(X, y)
    tables = est.report(out_dir=tmp_path / "report")
    assert (tmp_path / "report" / "report.md").is_file()
    summary = tables["summary"].set_index("model")
    assert summary.loc["best", "source"] == "refit by the report"
    assert 0.5 < summary.loc["best", "train"] <= 1 and np.isnan(summary.loc["best", "test"])

    restored = pickle.loads(pickle.dumps(est))
    assert not hasattr(restored, "_fitted_data"), "training rows stay out of pickles"
    with pytest.raises(ValueError, match=r"report\(X, y\)"):
        restored.report(out_dir=tmp_path / "again")
    assert not (tmp_path / "again").exists()
    again = restored.report(X, y, out_dir=tmp_path / "again")
    assert again["summary"]["train"].tolist() == tables["summary"]["train"].tolist()
    with pytest.raises(ValueError, match="not the ones study"):
        restored.report(X[::-1], y[::-1], out_dir=tmp_path / "other")
    assert not (tmp_path / "other").exists()


_LINEAR_SPACE = """\
description: n_layers reaches 0, a linear model; its prior comes first.
fixed: {batch_size: 64, max_epochs: 6, patience: 3}
params:
  n_layers: {type: int, low: 0, high: 1, default: 1}
  width: {type: int, low: 8, high: 16, default: 8}
  lr: {type: float, low: 1.0e-2, high: 5.0e-2, log: true, default: 2.0e-2}
regularizers:
  l2:
    l2: {type: float, low: 1.0e-6, high: 1.0e-3, log: true}
  dropout:
    dropout: {type: float, low: 0.05, high: 0.3}
  max_norm:
    max_norm: {type: float, low: 1.0, high: 3.0}
  early_stopping:
priors:
  - {n_layers: 0, lr: 3.0e-2, use_l2: true, l2: 1.0e-4, use_dropout: true, dropout: 0.1, use_max_norm: true,
     max_norm: 2.0, use_early_stopping: true}
"""


def test_a_study_reaching_n_layers_0_runs_and_refits_the_linear_model(tmp_path: Path, iris) -> None:
    X, y = iris
    space = tmp_path / "linear.yaml"
    space.write_text(_LINEAR_SPACE)
    est = RegTuneClassifier(**{**FAST, "space": space, "n_trials": 4}, sampler="random", pruner="none",
                            random_state=0).fit(X, y)
    assert (est.trials_["state"] == "COMPLETE").all(), est.trials_["fail_reason"].tolist()
    prior = est.study_.trials[1]  # after the baseline
    assert "prior" in prior.user_attrs and prior.params["n_layers"] == 0
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in est.best_estimator_.module_.modules())
    assert n_linear == est.best_params_["n_layers"] + 1
    # Only linear models: the refit best is one too.
    space.write_text(_LINEAR_SPACE.replace("low: 0, high: 1, default: 1", "low: 0, high: 0, default: 0"))
    est = RegTuneClassifier(**{**FAST, "space": space, "n_trials": 3}, random_state=0).fit(X, y)
    assert [n for n, _ in est.best_estimator_.module_.named_parameters()] == ["head.weight", "head.bias"]
    assert est.best_estimator_.hidden_layer_sizes == () and est.score(X, y) > 0.6  # 6 epochs


def test_mlflow_logs_the_users_seed_and_each_trials_own(tmp_path: Path, monkeypatch, iris) -> None:
    """Issue 17 item 11: random_state=0 was logged as seed 209652396."""
    import mlflow

    from regtune.tuning.trial import trial_seed

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    X, y = iris
    est = RegTuneClassifier(**{**FAST, "tracking_uri": uri}, random_state=0).fit(X, y)
    client = mlflow.MlflowClient(uri)
    assert client.get_run(est.mlflow_run_id_).data.params["seed"] == "0"
    for number, run_id in zip(est.trials_["number"], est.trials_["mlflow_run_id"], strict=True):
        params = client.get_run(run_id).data.params
        assert params["seed"] == "0" and params["trial_seed"] == str(trial_seed(0, int(number)))


def test_trials_leave_out_trials_queued_but_never_run(fitted_iris: RegTuneClassifier) -> None:
    """Issue 17 item 11: a leftover WAITING row in trials_."""
    from regtune.tuning.final import trials_frame

    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(value=0.5))
    study.enqueue_trial({})
    assert trials_frame(study)["state"].tolist() == ["COMPLETE"]
    assert "WAITING" not in set(fitted_iris.trials_["state"])


def test_no_ensemble_is_said_with_its_reason(iris) -> None:
    """Issue 17 item 11: ensemble_ None after a 2-trial fit, with nothing saying why."""
    X, y = iris
    est = RegTuneClassifier(**FAST, random_state=0).fit(X, y)
    said = [n for n in est.notes_ if n.startswith("no ensemble")]
    assert (est.ensemble_ is None) == bool(said), est.notes_
