"""scikit-learn's own estimator contract, run in full over both estimators."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from regtune import RegularizedNetClassifier, RegularizedNetRegressor

# Small nets and few epochs keep the ~50 checks per estimator fast; nothing is marked xfail.
_FAST = dict(hidden_layer_sizes=(32,), max_epochs=40, patience=5, lr=1e-2, device="cpu")


@parametrize_with_checks(
    [RegularizedNetClassifier(**_FAST), RegularizedNetRegressor(**_FAST)],
)
def test_sklearn_compatible(estimator, check) -> None:
    check(estimator)
