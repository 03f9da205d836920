"""Tests for regtune.estimators.ensemble: the weighted ensemble of fitted members."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from regtune import RegularizedNetClassifier, RegularizedNetRegressor
from regtune.estimators.ensemble import WeightedEnsemble
from regtune.estimators.persistence import load_model, save_model
from regtune.exceptions import DataError

RNG = np.random.default_rng(0)


def test_a_weighted_ensemble_averages_and_refuses_mismatched_members() -> None:
    X, y = RNG.normal(size=(60, 3)), np.arange(60) % 3
    nets = [RegularizedNetClassifier((8,), max_epochs=2, random_state=s).fit(X, y) for s in (0, 1)]
    ens = WeightedEnsemble(nets, [3, 1], trials=[4, 9])
    assert ens.weights == [0.75, 0.25]
    assert ens.predict_proba(X) == pytest.approx(0.75 * nets[0].predict_proba(X) + 0.25 * nets[1].predict_proba(X))
    assert set(ens.predict(X)) <= set(y) and "trial 4: 0.75" in repr(ens)
    with pytest.raises(DataError, match="one weight per member"):
        WeightedEnsemble(nets, [1.0])
    with pytest.raises(DataError, match="of one class"):
        WeightedEnsemble([nets[0], RegularizedNetRegressor((8,), max_epochs=1).fit(X, y * 1.0)], [1, 1])


def test_an_ensemble_saves_and_loads_without_pickle(tmp_path: Path) -> None:
    X, y = RNG.normal(size=(50, 3)), RNG.normal(size=50)
    nets = [RegularizedNetRegressor((8,), max_epochs=2, random_state=s).fit(X, y) for s in (0, 1, 2)]
    ens = WeightedEnsemble(nets, [0.5, 0.25, 0.25], trials=[1, 2, 3])
    save_model(tmp_path / "m", ens, None)
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded.estimator, WeightedEnsemble) and loaded.estimator.trials == [1, 2, 3]
    assert loaded.predict(X.astype(np.float32)) == pytest.approx(ens.predict(X.astype(np.float32)), rel=1e-5, abs=1e-6)
