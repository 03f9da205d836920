"""The estimators beyond sklearn's own checks: accuracy, labels, pandas, model selection, pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, make_regression
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from regtune import RegularizedNetClassifier, RegularizedNetRegressor

IMAGE = (1, 8, 8)
FAST = dict(hidden_layer_sizes=(32,), lr=1e-2, max_epochs=8, early_stopping=False, random_state=0, device="cpu")


def _digits(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:n], y[:n]


def test_dropout_and_weight_decay_reach_97_percent_on_held_out_digits() -> None:
    X, y = load_digits(return_X_y=True)
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, test_size=0.4, stratify=y, random_state=0)
    X_val, X_test, y_val, y_test = train_test_split(X_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=0)
    net = RegularizedNetClassifier((128,), dropout=0.2, weight_decay=1e-2, lr=3e-3, patience=5, random_state=0,
                                   device="cpu")
    for _ in net.fit_iter(X_train, y_train, validation_data=(X_val, y_val)):
        pass
    assert net.n_iter_ < net.max_epochs  # early stopping ended it
    assert net.score(X_test, y_test) >= 0.97


def test_string_labels_train_exactly_like_their_integer_codes() -> None:
    X, y = _digits()
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    by_code = RegularizedNetClassifier(**FAST).fit(X, y)
    by_name = RegularizedNetClassifier(**FAST).fit(X, names[y])
    assert list(by_name.classes_) == sorted(names)
    assert by_name.predict(X).dtype.kind == "U"
    # Sorted names permute the codes; the same network learns the same function up to that order.
    assert by_name.score(X, names[y]) == pytest.approx(by_code.score(X, y), abs=0.05)
    assert by_name.score(X, names[y]) > 0.9
    proba = by_name.predict_proba(X)
    assert (by_name.classes_[proba.argmax(1)] == by_name.predict(X)).all()


def test_pandas_input_gives_the_same_model_as_numpy() -> None:
    X, y = _digits()
    frame = pd.DataFrame(X, columns=[f"px{i}" for i in range(64)])
    from_frame = RegularizedNetClassifier(**FAST).fit(frame, pd.Series(y))
    from_array = RegularizedNetClassifier(**FAST).fit(X, y)
    assert list(from_frame.feature_names_in_) == list(frame.columns)
    np.testing.assert_array_equal(from_frame.predict_proba(frame), from_array.predict_proba(X))
    with pytest.warns(UserWarning, match="feature names"):
        from_frame.predict(X)  # sklearn's usual warning when names go missing


def test_grid_search_over_l2_and_dropout() -> None:
    X, y = _digits(200)
    search = GridSearchCV(RegularizedNetClassifier(**{**FAST, "max_epochs": 4}),
                          {"l2": [0.0, 1e-3], "dropout": [0.0, 0.3]}, cv=2)
    search.fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_params_["l2"] in (0.0, 1e-3) and search.best_params_["dropout"] in (0.0, 0.3)
    assert search.best_estimator_.l2 == search.best_params_["l2"]
    assert search.best_estimator_.config_.dropout == search.best_params_["dropout"]
    assert search.score(X, y) > 0.8


def test_pipeline_and_cross_val_score() -> None:
    X, y = _digits()
    scores = cross_val_score(make_pipeline(StandardScaler(), RegularizedNetClassifier(**FAST)), X, y, cv=3)
    assert scores.shape == (3,)
    assert scores.min() > 0.8


def test_clone_copies_parameters_and_no_fitted_state() -> None:
    X, y = _digits()
    net = RegularizedNetClassifier(**FAST, l1=1e-4, dropout_variant="gaussian", dropout=0.1).fit(X, y)
    copy = clone(net)
    assert copy.get_params() == net.get_params()
    assert not hasattr(copy, "module_") and not hasattr(copy, "history_")


@pytest.mark.parametrize(
    "params",
    [{}, {"spectral_norm": True}, {"batch_norm": "before_activation", "dropout": 0.3},
     {"architecture": "cnn", "image_shape": IMAGE, "conv_channels": (4,), "spectral_norm": True}],
    ids=["plain", "spectral_norm", "batch_norm+dropout", "cnn+spectral_norm"],
)
def test_pickle_round_trip_predicts_identically(params: dict) -> None:
    X, y = _digits()
    net = RegularizedNetClassifier(**{**FAST, "max_epochs": 3, **params}).fit(X, y)
    before = net.predict_proba(X)
    restored = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(restored.predict_proba(X), before)
    np.testing.assert_array_equal(net.predict_proba(X), before)  # pickling left the original intact
    assert restored.history_ == net.history_ and restored.best_epoch_ == net.best_epoch_


def test_regressor_predicts_the_target_shape_it_was_given() -> None:
    X, y = make_regression(n_samples=200, n_features=8, n_targets=2, noise=1.0, random_state=0)
    single = RegularizedNetRegressor(**{**FAST, "max_epochs": 30}, weight_decay=1e-3).fit(X, y[:, 0])
    multi = RegularizedNetRegressor(**{**FAST, "max_epochs": 30}).fit(X, y)
    assert single.predict(X).shape == (200,)
    assert multi.predict(X).shape == (200, 2)
    assert single.score(X, y[:, 0]) > 0.9
    with pytest.raises(ValueError, match="label_smoothing=0.1 applies to classification only"):
        RegularizedNetRegressor(label_smoothing=0.1).fit(X, y)


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_a_missing_or_infinite_regression_target_is_refused(bad: float) -> None:
    X, y = _digits(40)
    target = y.astype(float)
    target[3] = bad
    with pytest.raises(ValueError, match="Input y contains"):
        RegularizedNetRegressor(**FAST).fit(X, target)


def test_a_missing_class_label_is_refused() -> None:
    X, y = _digits(40)
    labels = np.array([f"digit {v}" for v in y], dtype=object)
    labels[3] = np.nan
    with pytest.raises(ValueError, match="contains NaN"):
        RegularizedNetClassifier(**FAST).fit(X, labels)


def _with(X: np.ndarray, row: int, value: float) -> np.ndarray:
    X = X.astype(float).copy()
    X[row, 0] = value
    return X


_X, _Y = _digits(40)


@pytest.mark.parametrize(
    ("params", "X", "y", "message"),
    [
        ({}, _with(_X, 3, np.nan), _Y, "Input X contains NaN"),
        ({}, _with(_X, 3, np.inf), _Y, "Input X contains infinity"),
        ({}, _X, _Y[:-1], r"inconsistent numbers of samples: \[40, 39\]"),
        ({}, _X, np.zeros(40, dtype=int), "needs at least 2 classes in y; got 1 class"),
        ({"dropout_variant": "spatial"}, _X, _Y, "'dropout_variant' parameter.*Got 'spatial'"),
        ({"batch_norm": "sometimes"}, _X, _Y, "'batch_norm' parameter.*Got 'sometimes'"),
        ({"dropout": 1.0}, _X, _Y, r"'dropout' parameter.*range \[0.0, 1.0\). Got 1.0"),
        ({"l2": -0.1}, _X, _Y, r"'l2' parameter.*Got -0.1"),
    ],
    ids=["nan", "inf", "lengths", "one-class", "dropout_variant", "batch_norm", "dropout", "l2"],
)
def test_bad_input_raises_value_error_naming_what_and_which_value(
    params: dict, X: np.ndarray, y: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        RegularizedNetClassifier(**{**FAST, **params}).fit(X, y)


def _one_hot_in_one_row(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Issue 11's repro: a regression table with a column that is 1 in a single row, 0 elsewhere."""
    X, y = make_regression(n_samples=n, n_features=5, noise=5.0, random_state=0)
    X = np.column_stack([X, np.zeros(n)])
    X[7, -1] = 1.0
    return X, y


def test_a_column_constant_in_a_cv_fold_does_not_explode_the_scores() -> None:
    """As the tuner does: the preprocessor scales all rows once (float32 out), then the folds.
    In the folds without row 7 that column is constant, but its float32 std is ~1e-8 (round-off),
    and dividing by it turned R^2 0.98 into -1.7e13."""
    from regtune import make_preprocessor

    X, y = _one_hot_in_one_row()
    X32 = make_preprocessor().fit_transform(X)
    net = RegularizedNetRegressor(hidden_layer_sizes=(32,), lr=1e-2, max_epochs=30, random_state=0, device="cpu")
    scores = cross_val_score(net, X32, y, cv=KFold(5))
    assert scores.min() > 0.9, scores


def test_a_column_constant_in_fit_is_ignored_whatever_it_holds_later() -> None:
    X, y = _one_hot_in_one_row()
    rows = np.arange(len(y)) != 7
    X32 = StandardScaler().fit_transform(X).astype(np.float32)  # the column: -0.0709 in float32, 14.1 in row 7
    net = RegularizedNetRegressor(**{**FAST, "max_epochs": 20}).fit(X32[rows], y[rows])
    assert net._x_scale_[-1] == np.inf  # constant within float32 round-off, not a std of 7e-9
    other = X32[7:8].copy()
    other[0, -1] = X32[0, -1]
    np.testing.assert_allclose(net.predict(X32[7:8]), net.predict(other), rtol=1e-6)


def test_a_target_constant_up_to_float32_round_off_is_not_scaled_up() -> None:
    """A CV fold whose training targets are one value (in float32, one step apart) must not
    divide the validation targets by a std of 1.5e-8."""
    X = np.random.default_rng(0).normal(size=(60, 3))
    y = np.full(60, 0.3, dtype=np.float32)
    y[:40:2] = np.nextafter(np.float32(0.3), np.float32(1.0))
    y[40:] += np.float32(1.0)  # the validation rows: one unit away
    net = RegularizedNetRegressor(**FAST)
    history = list(net.fit_iter(X[:40], y[:40], validation_data=(X[40:], y[40:])))
    assert net._y_scale_[0] == 1.0
    assert max(h["val_loss"] for h in history) < 10, history[-1]
