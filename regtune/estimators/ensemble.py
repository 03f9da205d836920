"""A weighted average of fitted networks: the model greedy ensemble selection hands back.

Averaging the probabilities (or predictions) of a few good, different configurations cancels
part of each one's variance, which is why ensembles of MLPs rival gradient boosting on tables
(TabM, Gorishniy et al. 2025). The members are ordinary fitted estimators, so the ensemble
saves and loads the way a single network does (JSON + ``weights_only`` state dicts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from regtune.estimators.net import RegularizedNetClassifier, RegularizedNetRegressor
from regtune.exceptions import DataError

__all__ = ["WeightedEnsemble"]

_Net = RegularizedNetClassifier | RegularizedNetRegressor


class WeightedEnsemble:
    """Fitted networks and their weights (non-negative, summing to 1).

    Parameters
    ----------
    members : sequence of fitted RegularizedNetClassifier or RegularizedNetRegressor
        All of one class, fitted on the same features (and classes).
    weights : sequence of float
        One per member; normalized to sum to 1.
    trials : sequence of int, optional
        The study trial each member was refit from, for reports.
    """

    def __init__(self, members: Sequence[_Net], weights: Sequence[float], trials: Sequence[int] = ()) -> None:
        if not members or len(members) != len(weights):
            raise DataError(f"an ensemble needs one weight per member; got {len(members)} members and "
                            f"{len(weights)} weights")
        w = np.asarray(weights, dtype=np.float64)
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise DataError(f"ensemble weights {w.tolist()} must be finite, >= 0 and not all 0")
        kinds = {type(m) for m in members}
        if len(kinds) != 1:
            raise DataError(f"ensemble members must be of one class; got {sorted(k.__name__ for k in kinds)}")
        self.members = list(members)
        self.weights = (w / w.sum()).tolist()
        self.trials = list(trials)
        first = self.members[0]
        self.is_classifier = isinstance(first, RegularizedNetClassifier)
        if self.is_classifier:
            self.classes_ = first.classes_
            for member in self.members[1:]:
                if not np.array_equal(member.classes_, self.classes_):
                    raise DataError("ensemble members were fitted on different classes")
        self.n_features_in_ = first.n_features_in_

    def predict_proba(self, X: Any) -> np.ndarray:
        """The weighted mean of the members' class probabilities."""
        if not self.is_classifier:
            raise AttributeError("predict_proba is for classifier ensembles")
        return sum(w * m.predict_proba(X) for m, w in zip(self.members, self.weights, strict=True))

    def predict(self, X: Any) -> np.ndarray:
        """Classes of the mean probabilities, or the weighted mean prediction."""
        if self.is_classifier:
            return self.classes_[self.predict_proba(X).argmax(1)]
        return sum(w * m.predict(X) for m, w in zip(self.members, self.weights, strict=True))

    def score(self, X: Any, y: Any) -> float:
        """Accuracy or R^2, as the members' ``score``."""
        from sklearn.metrics import accuracy_score, r2_score

        pred = self.predict(X)
        return float(accuracy_score(y, pred) if self.is_classifier else r2_score(y, pred))

    @property
    def n_iter_(self) -> int:
        """The longest member's epochs (the scores table's ``epochs`` column)."""
        return max(m.n_iter_ for m in self.members)

    def __repr__(self) -> str:
        parts = ", ".join(f"trial {t}: {w:.2f}" for t, w in zip(self.trials, self.weights, strict=False))
        return f"WeightedEnsemble({len(self.members)} members{'; ' + parts if parts else ''})"
