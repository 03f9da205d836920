"""Feature scaling: robust scaling with smooth clipping and the quantile map, in and out of the estimator."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.preprocessing import QuantileTransformer

from regtune import RegularizedNetClassifier, RegularizedNetRegressor
from regtune.config import FEATURE_SCALINGS
from regtune.data.scaling import fit_scaling, scale_features, smooth_clip
from regtune.estimators.persistence import load_model, save_model

RNG = np.random.default_rng(0)


def _with_outliers(n: int = 200) -> np.ndarray:
    X = RNG.normal(size=(n, 3)) * [1.0, 10.0, 0.1] + [0.0, 100.0, -5.0]
    X[0, 0], X[1, 1], X[2, 2] = 1e6, -1e5, 1e4
    return X


def test_smooth_clip_is_near_identity_for_small_values_and_bounded_by_three() -> None:
    z = np.array([-1e9, -10.0, -0.1, 0.0, 0.1, 10.0, 1e9])
    out = smooth_clip(z)
    assert np.all(np.abs(out) <= 3) and np.all(np.diff(out) > 0)
    assert out[2:5] == pytest.approx(z[2:5], abs=1e-3)


@pytest.mark.parametrize("method", ["robust_clip", "quantile"])
def test_outliers_end_bounded_while_the_bulk_keeps_its_spread(method: str) -> None:
    X = _with_outliers()
    state = fit_scaling(X, method)
    Z = scale_features(X, method, *state)
    bound = 3 if method == "robust_clip" else 5.3
    assert np.abs(Z).max() <= bound
    assert np.all(Z[3:].std(0) > 0.4)  # standardizing puts the bulk of column 0 within 1e-3 of 0
    far = scale_features(np.full((1, 3), 1e12), method, *state)
    assert np.all(np.abs(far) <= bound)


def test_robust_clip_is_median_iqr_scaling_then_smooth_clipping() -> None:
    X = _with_outliers()
    center, scale, quantiles = fit_scaling(X, "robust_clip")
    q25, q50, q75 = np.percentile(X, [25, 50, 75], axis=0)
    assert quantiles is None and center == pytest.approx(q50) and scale == pytest.approx(q75 - q25)
    assert scale_features(X, "robust_clip", center, scale) == pytest.approx(smooth_clip((X - q50) / (q75 - q25)))


def test_quantile_matches_scikit_learns_quantile_transformer_on_continuous_columns() -> None:
    X = np.column_stack([RNG.exponential(size=300), RNG.normal(size=300)])
    state = fit_scaling(X, "quantile")
    ref = QuantileTransformer(n_quantiles=300, output_distribution="normal").fit(X)
    X_new = np.column_stack([RNG.exponential(size=50) * 2, RNG.normal(size=50) * 2])
    assert scale_features(X_new, "quantile", *state) == pytest.approx(ref.transform(X_new), abs=1e-6)


def test_quantile_keeps_a_binary_column_two_moderate_values() -> None:
    # QuantileTransformer sends a column's minimum to -5.2 and its maximum to +5.2, so a
    # one-hot column would become +-5.2; tied values here share the middle of their quantiles.
    b = (RNG.random(300) < 0.3).astype(float)
    Z = scale_features(b[:, None], "quantile", *fit_scaling(b[:, None], "quantile"))[:, 0]
    assert len(np.unique(Z)) == 2 and np.abs(Z).max() < 1.5 and Z[b == 1][0] > Z[b == 0][0]


@pytest.mark.parametrize("method", ["robust_clip", "quantile"])
def test_a_constant_column_maps_to_zero_and_a_quartile_tie_uses_half_the_range(method: str) -> None:
    X = np.column_stack([np.full(40, 7.0), np.r_[np.zeros(35), np.ones(5)], RNG.normal(size=40)])
    state = fit_scaling(X, method)
    Z = scale_features(np.vstack([X, [[8.0, 1.0, 0.0]]]), method, *state)
    assert np.all(np.isfinite(Z)) and np.all(Z[:, 0] == 0)
    assert Z[:, 1].max() > 0.5  # the rare 1s are seen, not divided by an IQR of 0
    if method == "robust_clip":
        assert state[1][1] == 0.5  # IQR 0 -> half the range


@pytest.mark.parametrize("method", FEATURE_SCALINGS)
def test_the_estimator_fits_the_scaling_on_its_training_rows_only(method: str) -> None:
    X, y = _with_outliers(120), np.arange(120) % 2
    X_other = X * 3 + 50  # other rows shifted far away: predicting them must not refit anything
    net = RegularizedNetClassifier((8,), feature_scaling=method, max_epochs=2, random_state=0).fit(X, y)
    state = (net._x_mean_.copy(), net._x_scale_.copy())
    net.predict(X_other)
    assert np.array_equal(state[0], net._x_mean_) and np.array_equal(state[1], net._x_scale_)
    if method != "standard":
        center, scale, _ = fit_scaling(X, method)
        assert net._x_mean_ == pytest.approx(center) and net._x_scale_ == pytest.approx(scale)
    assert net._tensor(X_other).abs().max() <= (3 if method == "robust_clip" else 5.3 if method == "quantile" else 1e9)


def test_the_tuner_folds_fit_scaling_on_the_fold_rows() -> None:
    # validation_data (the tuner's folds) is scaled with the train rows' state, never refitted
    X, y = _with_outliers(100), np.arange(100) % 2
    net = RegularizedNetClassifier((8,), feature_scaling="robust_clip", max_epochs=1, random_state=0)
    for _ in net.fit_iter(X[:60], y[:60], validation_data=(X[60:] + 1000, y[60:])):
        pass
    assert net._x_mean_ == pytest.approx(np.median(X[:60], axis=0))


@pytest.mark.parametrize("method", ["robust_clip", "quantile"])
def test_a_saved_model_predicts_the_same_after_loading(method: str, tmp_path) -> None:  # noqa: ANN001
    X, y = _with_outliers(80).astype(np.float32), RNG.normal(size=80)  # the loaded model reads float32
    net = RegularizedNetRegressor((8,), feature_scaling=method, max_epochs=2, random_state=0).fit(X, y)
    save_model(tmp_path / "m", net, None)
    assert load_model(tmp_path / "m").predict(X) == pytest.approx(net.predict(X), rel=1e-5, abs=1e-6)
