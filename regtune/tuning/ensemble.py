"""Greedy ensemble selection (Caruana et al. 2004) over a study's top trials.

Each trial of a study asked for an ensemble keeps its out-of-fold predictions (each row
predicted by the fold network that did not train on it), but only while it ranks among the
top ``k`` at the moment it completes: a trial outside them then can never enter them, so at
most a few dozen trials store predictions. At the end, starting from the best trial, the
trial whose addition (with replacement) most improves the study's metric of the averaged
predictions is added, ``2k`` times; the best prefix gives the weights. The selected trials are
refit on the whole train part like the best one, and their weighted average is the model.

For classifiers the selection minimizes log-loss whatever the study's metric: accuracy moves in
steps of one row and ties everywhere on a few hundred validation rows, while a proper scoring
rule tells which average of probabilities is better (and accuracy follows it).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from regtune.estimators.ensemble import WeightedEnsemble
from regtune.metrics import Metric, get_metric

__all__ = ["PREDICTIONS_ATTR", "decode_predictions", "encode_predictions", "ensemble_from_study",
           "greedy_weights", "in_top"]

PREDICTIONS_ATTR = "oof_predictions"


def encode_predictions(predictions: np.ndarray, task: str) -> dict[str, Any]:
    """A user-attr value (JSON) holding ``predictions``: probabilities as float16, regression as float32."""
    dtype = np.float16 if task == "classification" else np.float32
    array = np.ascontiguousarray(predictions, dtype=dtype)
    return {"dtype": array.dtype.str, "shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode()}


def decode_predictions(value: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_predictions`, as float64 (rows never predicted are NaN)."""
    raw = base64.b64decode(value["data"])
    return np.frombuffer(raw, dtype=np.dtype(value["dtype"])).reshape(value["shape"]).astype(np.float64)


def in_top(study: optuna.Study, value: float, k: int) -> bool:
    """Whether ``value`` would rank among the best ``k`` complete trials of ``study``."""
    values = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if t.value is not None and math.isfinite(t.value)]
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    better = sum(sign * v < sign * value for v in values)
    return better < k


class _Fixed:
    """Predictions standing in for an estimator, so the study's metric scores them as it scores models."""

    def __init__(self, predictions: np.ndarray, classes: np.ndarray | None) -> None:
        self._p, self.classes_ = predictions, classes

    def predict_proba(self, X: Any) -> np.ndarray:
        return self._p

    def predict(self, X: Any) -> np.ndarray:
        if self.classes_ is not None:
            return self.classes_[self._p.argmax(1)]
        return self._p


def _covered(predictions: Sequence[np.ndarray]) -> np.ndarray:
    """Rows every candidate predicted (one validation split leaves the others NaN)."""
    return np.all([np.isfinite(p).reshape(len(p), -1).all(1) for p in predictions], axis=0)


def _score(metric: Metric, predictions: np.ndarray, y: np.ndarray, classes: np.ndarray | None) -> float:
    return float(metric.final_fn(_Fixed(predictions, classes), None, y))


def greedy_weights(
    predictions: Sequence[np.ndarray], y: np.ndarray, metric: Metric, rounds: int,
    classes: np.ndarray | None = None,
) -> tuple[list[float], float]:
    """Caruana's selection with replacement: weights per candidate and the ensemble's score.

    ``predictions[0]`` should be the best single candidate (selection starts from it); rows that
    any candidate did not predict (NaN) are left out. Ties go to the candidate listed first.
    """
    covered = _covered(predictions)
    preds = [p[covered] for p in predictions]
    y = np.asarray(y)[covered]
    sign = 1.0 if metric.direction == "maximize" else -1.0

    def score(p: np.ndarray) -> float:
        return _score(metric, p, y, classes)

    counts = np.zeros(len(preds))
    counts[0] = 1
    total = preds[0].copy()
    best_counts, best_score = counts.copy(), score(total)
    for _ in range(rounds - 1):
        n = counts.sum()
        trial_scores = [score((total + p) / (n + 1)) for p in preds]
        pick = int(np.argmax([sign * s for s in trial_scores]))
        counts[pick] += 1
        total = total + preds[pick]
        if sign * trial_scores[pick] >= sign * best_score:
            best_counts, best_score = counts.copy(), trial_scores[pick]
    return (best_counts / best_counts.sum()).tolist(), best_score


def ensemble_from_study(
    study: optuna.Study, k: int, y: np.ndarray, metric: Metric, refit: Callable[[FrozenTrial], Any],
    classes: np.ndarray | None = None,
) -> tuple[WeightedEnsemble, float] | None:
    """Select among the top ``k`` trials that kept predictions, refit the chosen ones with
    ``refit(trial)`` and return the ensemble and its out-of-fold score; ``None`` when fewer
    than two trials can take part (the best single model is the answer then)."""
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if PREDICTIONS_ATTR in t.user_attrs and t.value is not None and math.isfinite(t.value)]
    top = sorted(complete, key=lambda t: -t.value if maximize else t.value)[:k]
    if len(top) < 2:
        return None
    predictions = [decode_predictions(t.user_attrs[PREDICTIONS_ATTR]) for t in top]
    if classes is not None:  # stored as float16: rows sum to 1 within 1e-3 only
        predictions = [p / p.sum(1, keepdims=True) for p in predictions]
    criterion = get_metric("log_loss", "classification") if classes is not None else metric
    weights, _ = greedy_weights(predictions, y, criterion, rounds=2 * k, classes=classes)
    chosen = [(t, w) for t, w in zip(top, weights, strict=True) if w > 0]
    if len(chosen) < 2:
        return None
    covered = _covered(predictions)
    mixed = sum(w * p[covered] for w, p in zip(weights, predictions, strict=True))
    score = _score(metric, mixed, np.asarray(y)[covered], classes)
    members = [refit(t) for t, _ in chosen]
    return WeightedEnsemble(members, [w for _, w in chosen], trials=[t.number for t, _ in chosen]), score
