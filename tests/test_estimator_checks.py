"""scikit-learn's own estimator contract, run in full over both estimators, built-in (plain and
TabM) and custom."""

from __future__ import annotations

from byo_modules import ResidualMLP
from sklearn.utils.estimator_checks import parametrize_with_checks

from regtune import RegularizedNetClassifier, RegularizedNetRegressor
from regtune.estimators.net import EXPECTED_FAILED_CHECKS

# Small nets and few epochs keep the ~50 checks per estimator fast; the one expected failure
# (weights equal to repeated rows, which stochastic training cannot give exactly) says why.
_FAST = dict(max_epochs=40, patience=5, lr=1e-2, device="cpu")
_CUSTOM = dict(module=ResidualMLP, module__width=16, module__depth=1, **_FAST)


@parametrize_with_checks(
    [
        RegularizedNetClassifier(hidden_layer_sizes=(32,), **_FAST),
        RegularizedNetRegressor(hidden_layer_sizes=(32,), **_FAST),
        RegularizedNetClassifier(**_CUSTOM),
        RegularizedNetRegressor(**_CUSTOM),
        RegularizedNetClassifier(hidden_layer_sizes=(32,), tabm=4, **_FAST),  # a TabM-mini ensemble
        RegularizedNetRegressor(hidden_layer_sizes=(32,), tabm=4, **_FAST),
    ],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible(estimator, check) -> None:
    check(estimator)
