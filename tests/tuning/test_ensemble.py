"""Ensembles: greedy selection on out-of-fold predictions, the refit members, one logged model."""

from __future__ import annotations

import base64
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
from sklearn.datasets import load_breast_cancer

from regtune import RegConfig, RegTuneClassifier
from regtune.analysis.report import report
from regtune.data.loading import load_dataset
from regtune.estimators.ensemble import WeightedEnsemble
from regtune.exceptions import TuneError
from regtune.metrics import get_metric
from regtune.tracking.tracker import MLflowTracker
from regtune.tuning.ensemble import (
    PREDICTIONS_ATTR,
    PREDICTIONS_PREFIX,
    decode_predictions,
    encode_predictions,
    greedy_weights,
    held_predictions,
    in_top,
    keep_predictions,
)
from regtune.tuning.settings import TuneSettings
from regtune.tuning.storage import make_storage
from regtune.tuning.trial import Folds, make_estimator, out_of_fold_predictions
from regtune.tuning.tuner import tune

RNG = np.random.default_rng(0)


def test_greedy_selection_mixes_complementary_candidates_and_drops_useless_ones() -> None:
    y = np.array([0, 1] * 50)
    truth = np.eye(2)[y]
    # a and b are each right on a different half of the rows; c is always wrong
    a, b = truth.copy(), truth.copy()
    a[:50] = 0.45 + 0.1 * (1 - truth[:50])
    b[50:] = 0.45 + 0.1 * (1 - truth[50:])
    c = 1 - truth
    weights, score = greedy_weights([a, b, c], y, get_metric("accuracy", "classification"), rounds=6,
                                    classes=np.array([0, 1]))
    assert weights[2] == 0 and weights[0] > 0 and weights[1] > 0
    assert score == 1.0  # the average is right everywhere, each alone on half the rows
    only, _ = greedy_weights([truth, c], y, get_metric("accuracy", "classification"), rounds=4,
                             classes=np.array([0, 1]))
    assert only == [1.0, 0.0]  # nothing beats the perfect one


def test_greedy_selection_minimizes_a_minimized_metric_and_skips_unpredicted_rows() -> None:
    y = RNG.normal(size=60)
    noisy = [y + RNG.normal(scale=0.5, size=60) for _ in range(3)]
    noisy[0][:10] = np.nan  # one validation split: rows outside it were never predicted
    weights, score = greedy_weights(noisy, y, get_metric("rmse", "regression"), rounds=9)
    single = float(np.sqrt(np.mean((noisy[0][10:] - y[10:]) ** 2)))
    assert sum(w > 0 for w in weights) >= 2 and score < single


def test_predictions_survive_their_user_attr_round_trip() -> None:
    p = RNG.dirichlet([1, 1, 1], size=20)
    p[3] = np.nan
    back = decode_predictions(encode_predictions(p, "classification"))
    assert np.isnan(back[3]).all() and back[~np.isnan(back[:, 0])] == pytest.approx(p[~np.isnan(p[:, 0])], abs=1e-3)
    r = RNG.normal(size=7) * 1e5  # prices: float32, not float16
    assert decode_predictions(encode_predictions(r, "regression")) == pytest.approx(r, rel=1e-6)


def test_in_top_counts_the_complete_trials_that_beat_a_value() -> None:
    study = optuna.create_study(direction="maximize")
    for v in (0.5, 0.7, 0.9):
        study.add_trial(optuna.trial.create_trial(value=v))
    assert in_top(study, 0.8, 2) and not in_top(study, 0.6, 2) and in_top(study, 0.1, 4)


def test_out_of_fold_predictions_put_each_row_where_it_was_validated() -> None:
    X, y = RNG.normal(size=(40, 3)), np.array(["a", "b", "c", "d"] * 10)
    splits = [(np.arange(20, 40), np.arange(20)), (np.arange(20), np.arange(20, 40))]
    folds = Folds(X, y, "classification", splits)
    config = RegConfig(hidden_layer_sizes=(4,), max_epochs=1)
    ests = [make_estimator(config, "classification", image_shape=None, device="cpu", random_state=k).fit(X[tr], y[tr])
            for k, (tr, _) in enumerate(splits)]
    oof = out_of_fold_predictions(ests, folds)
    assert oof.shape == (40, 4) and np.allclose(oof.sum(1), 1)
    assert oof[:20] == pytest.approx(ests[0].predict_proba(X[:20]))


def test_ensemble_setting_is_checked() -> None:
    for bad in (-1, 2.5, True):
        with pytest.raises(TuneError, match="ensemble="):
            TuneSettings(ensemble=bad)


@pytest.fixture(scope="module")
def ensemble_study(tmp_path_factory: pytest.TempPathFactory, tiny_space: Path) -> tuple:
    root = tmp_path_factory.mktemp("ensemble")
    MLflowTracker(f"sqlite:///{root}/mlflow.db", experiment=None)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        result = tune("breast_cancer", n_trials=8, ensemble=4, cv=2, pruner="none", seed=0, space=str(tiny_space),
                      storage=str(root / "regtune.journal"), tracking_uri=f"sqlite:///{root}/mlflow.db", progress=False)
    return result, root


def test_only_the_top_k_trials_hold_predictions_once_the_study_ends(ensemble_study: tuple) -> None:
    """Issue 17 item 7: predictions of trials pushed out of the top K are dropped."""
    result, root = ensemble_study
    study = optuna.load_study(study_name=result.study_name, storage=make_storage(str(root / "regtune.journal")))
    complete = sorted((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: -t.value)
    assert len(complete) > 4
    held = held_predictions(study)
    assert 2 <= len(held) <= 4 and set(held) <= {t.number for t in complete[:4]}
    assert not any(PREDICTIONS_ATTR in t.user_attrs for t in study.trials)
    dropped = [k for k, v in study.user_attrs.items() if k.startswith(PREDICTIONS_PREFIX) and v is None]
    assert dropped, "some trial entered the top 4 and left it (8 trials): its predictions were dropped"


def test_one_validation_split_stores_only_its_rows(tmp_path: Path, tiny_space: Path) -> None:
    """Issue 17 item 7: no NaN padding for the rows no split validated (size check)."""
    result = tune("breast_cancer", n_trials=3, ensemble=3, cv=1, pruner="none", seed=0, space=str(tiny_space),
                  storage=":memory:", tracking_uri="off", progress=False, log_model=False)
    held = held_predictions(result.study)
    assert held
    for value in held.values():
        n_rows, n_classes = value["shape"]
        rows = np.frombuffer(base64.b64decode(value["rows"]), dtype="<i4")
        n_val = len(rows)
        assert n_val < 0.5 * n_rows  # the validation share, not every row of the search part
        assert len(base64.b64decode(value["data"])) == n_val * n_classes * 2  # float16, no padding
        assert np.isfinite(decode_predictions(value)[rows]).all()


def test_predictions_of_a_trial_pushed_out_of_the_top_k_are_dropped() -> None:
    study = optuna.create_study(direction="maximize")
    p = RNG.dirichlet([1, 1], size=6)
    for number, value in enumerate((0.5, 0.7, 0.9)):
        assert keep_predictions(study, number, value, p, "classification", 2)
        study.add_trial(optuna.trial.create_trial(value=value))
    assert sorted(held_predictions(study)) == [1, 2]
    assert not keep_predictions(study, 3, 0.6, p, "classification", 2)


def test_the_study_logs_the_ensemble_as_its_model_and_scores_it_beside_the_best(ensemble_study: tuple) -> None:
    result, root = ensemble_study
    ens = result.ensemble_estimator
    assert isinstance(ens, WeightedEnsemble) and len(ens.members) >= 2
    top = sorted((t for t in result.study.trials if t.state.name == "COMPLETE"), key=lambda t: -t.value)[:4]
    assert set(ens.trials) <= {t.number for t in top}
    assert list(result.scores.index) == ["baseline", "best", "ensemble"]
    row = result.scores.loc["ensemble"]
    assert 0.5 < row["test"] <= 1 and row["regularizers"].startswith("trials #")
    metrics = mlflow.MlflowClient(result.tracking_uri).get_run(result.parent_run_id).data.metrics
    assert metrics["ensemble_test"] == pytest.approx(row["test"])
    mlflow.set_tracking_uri(result.tracking_uri)
    try:
        pyfunc = mlflow.pyfunc.load_model(result.model_uri)
    finally:
        mlflow.set_tracking_uri(None)
    X = load_dataset("breast_cancer").X.head(20)
    expected = ens.predict(result.preprocessor.transform(X))
    assert np.array_equal(np.asarray(pyfunc.predict(X)).ravel(), expected)  # the pyfunc averages the members


def test_the_report_shows_the_ensemble_beside_the_best(ensemble_study: tuple, tmp_path: Path) -> None:
    result, root = ensemble_study
    tables = report(result.study_name, storage=str(root / "regtune.journal"), tracking_uri=result.tracking_uri,
                    out_dir=tmp_path / "r", log_artifacts=False)
    summary = tables["summary"].set_index("model")
    assert list(summary.index) == ["baseline", "best", "ensemble"]
    assert summary.loc["ensemble", "test"] == pytest.approx(result.scores.loc["ensemble", "test"])
    assert "ensemble" in (tmp_path / "r" / "report.md").read_text()


def test_regtune_classifier_predicts_with_its_ensemble(tiny_space: Path) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    search = RegTuneClassifier(space=str(tiny_space), n_trials=6, ensemble=3, cv=2, tracking_uri="off",
                               random_state=0).fit(X, y)
    if search.ensemble_ is None:  # selection may keep the best alone; then it predicts
        assert np.array_equal(search.predict(X), search.best_estimator_.predict(search.preprocessor_.transform(X)))
    else:
        assert np.array_equal(search.predict(X), search.ensemble_.predict(search.preprocessor_.transform(X)))
        assert search.predict_proba(X) == pytest.approx(search.ensemble_.predict_proba(search.preprocessor_.transform(X)))
    assert RegTuneClassifier(space=str(tiny_space), n_trials=6, ensemble=1, tracking_uri="off").fit(X, y).ensemble_ is None


def test_estimators_and_the_cli_ensemble_by_default() -> None:
    """Ensembles are the default (measured: benchmarks/final_model_ab.py); 1 turns them off."""
    from regtune import RegTuneRegressor
    from regtune.tuning.settings import TuneSettings

    assert RegTuneClassifier().ensemble == RegTuneRegressor().ensemble == TuneSettings().ensemble == 5
