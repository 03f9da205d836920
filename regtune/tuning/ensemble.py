"""Greedy ensemble selection (Caruana et al. 2004) over a study's top trials.

Each trial of a study asked for an ensemble keeps its out-of-fold predictions (each row
predicted by the fold network that did not train on it) while it ranks among the top ``k``:
a trial outside them when it completes never stores them (it can never enter them later), and
a trial that another pushes out of the top ``k`` has them dropped. They live in the study's
user attrs (``regtune.oof.<trial number>``; a trial's own attrs cannot change once it has
finished), only for the rows that were validated (one validation split: its rows alone,
and which rows they are), as float16 probabilities or float32 regression predictions.

The bound: at most ``k`` trials hold predictions once the study ends (``k + n_jobs`` while
trials finish at once), each ``n_val x n_classes`` float16 values (``n_val`` float32 for
regression) plus ``n_val`` int32 row numbers, base64 in JSON (x 4/3); ``n_val`` is every row
of the search part with K folds, the validation share with one split. A journal file is a
log: a value once written stays in the file even after it is dropped, so its growth is one
such block per trial that entered the top ``k`` when it completed (about ``k (1 + ln(N/k))``
of ``N`` trials in random order), never one per trial. At the end, starting from the best trial, the
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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from regtune.estimators.ensemble import WeightedEnsemble
from regtune.metrics import Metric, get_metric

__all__ = ["PREDICTIONS_ATTR", "PREDICTIONS_PREFIX", "EnsembleSelection", "build_ensemble", "decode_predictions",
           "drop_outside_top", "encode_predictions", "greedy_weights", "held_predictions",
           "in_top", "keep_predictions", "select_ensemble"]

PREDICTIONS_ATTR = "oof_predictions"  # where studies made before the study-level store kept them (read only)
PREDICTIONS_PREFIX = "regtune.oof."  # + trial number: a study user attr


def encode_predictions(predictions: np.ndarray, task: str) -> dict[str, Any]:
    """A user-attr value (JSON) holding the predicted rows of ``predictions`` (rows that are
    NaN, never validated, are left out and their numbers not stored): probabilities as
    float16, regression as float32, and the row numbers as int32 when not every row is there."""
    predictions = np.asarray(predictions)
    dtype = np.float16 if task == "classification" else np.float32
    rows = np.flatnonzero(np.isfinite(predictions).reshape(len(predictions), -1).all(1))
    array = np.ascontiguousarray(predictions[rows], dtype=dtype)
    value = {"dtype": array.dtype.str, "shape": list(predictions.shape), "data": base64.b64encode(array.tobytes()).decode()}
    if len(rows) < len(predictions):
        value["rows"] = base64.b64encode(rows.astype("<i4").tobytes()).decode()
    return value


def decode_predictions(value: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_predictions`, as float64 of the full shape (rows never predicted are NaN)."""
    shape = tuple(value["shape"])
    data = np.frombuffer(base64.b64decode(value["data"]), dtype=np.dtype(value["dtype"])).astype(np.float64)
    if "rows" not in value:
        return data.reshape(shape)
    rows = np.frombuffer(base64.b64decode(value["rows"]), dtype="<i4")
    out = np.full(shape, np.nan)
    out[rows] = data.reshape((len(rows), *shape[1:]))
    return out


def held_predictions(study: optuna.Study) -> dict[int, dict[str, Any]]:
    """The encoded predictions the study holds, by trial number (a legacy trial attr too)."""
    held = {int(key.removeprefix(PREDICTIONS_PREFIX)): value for key, value in study.user_attrs.items()
            if key.startswith(PREDICTIONS_PREFIX) and value is not None}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if PREDICTIONS_ATTR in t.user_attrs and t.number not in held:
            held[t.number] = t.user_attrs[PREDICTIONS_ATTR]
    return held


def keep_predictions(study: optuna.Study, number: int, value: float, predictions: np.ndarray, task: str,
                     k: int) -> bool:
    """Store trial ``number``'s predictions if its ``value`` ranks among the top ``k``, and
    drop those of trials it pushes out; whether they were stored."""
    if not in_top(study, value, k):
        return False
    study.set_user_attr(f"{PREDICTIONS_PREFIX}{number}", encode_predictions(predictions, task))
    drop_outside_top(study, k, running=(number, value))
    return True


def drop_outside_top(study: optuna.Study, k: int, running: tuple[int, float] | None = None) -> list[int]:
    """Drop the stored predictions of finished trials outside the top ``k`` (``running``: a
    trial that is storing its own and ranks as if complete); the trial numbers dropped."""
    trials = study.get_trials(deepcopy=False)
    ranked = [(t.number, t.value) for t in trials
              if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]
    if running is not None:
        ranked.append(running)
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    top = {n for n, _ in sorted(ranked, key=lambda nv: -nv[1] if maximize else nv[1])[:k]}
    finished = {t.number for t in trials if t.state.is_finished()}
    dropped = [n for key, v in study.user_attrs.items() if key.startswith(PREDICTIONS_PREFIX) and v is not None
               for n in [int(key.removeprefix(PREDICTIONS_PREFIX))] if n in finished and n not in top]
    for n in dropped:
        study.set_user_attr(f"{PREDICTIONS_PREFIX}{n}", None)
    return dropped


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


@dataclass(frozen=True)
class EnsembleSelection:
    """The greedy selection's outcome, before any refit: the top trials that kept predictions,
    their predictions, and the chosen ones as ``(index into top, weight)``, heaviest first."""

    top: list[FrozenTrial]
    predictions: list[np.ndarray]
    chosen: list[tuple[int, float]]

    @property
    def members(self) -> list[FrozenTrial]:
        """The trials to refit, heaviest first: where time runs out, the lightest go."""
        return [self.top[i] for i, _ in self.chosen]


def select_ensemble(
    study: optuna.Study, k: int, y: np.ndarray, metric: Metric, classes: np.ndarray | None = None,
) -> EnsembleSelection | None:
    """Select among the top ``k`` trials that kept predictions; ``None`` when fewer than two
    trials take part (the best single model is the answer then). Nothing is refit here, so
    the members' refits can all be planned (and run side by side) before any starts."""
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    held = held_predictions(study)
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.number in held and t.value is not None and math.isfinite(t.value)]
    top = sorted(complete, key=lambda t: -t.value if maximize else t.value)[:k]
    if len(top) < 2:
        return None
    predictions = [decode_predictions(held[t.number]) for t in top]
    if classes is not None:  # stored as float16: rows sum to 1 within 1e-3 only
        predictions = [p / p.sum(1, keepdims=True) for p in predictions]
    criterion = get_metric("log_loss", "classification") if classes is not None else metric
    weights, _ = greedy_weights(predictions, y, criterion, rounds=2 * k, classes=classes)
    chosen = sorted(((i, w) for i, w in enumerate(weights) if w > 0), key=lambda iw: -iw[1])
    if len(chosen) < 2:
        return None
    return EnsembleSelection(top, predictions, chosen)


def build_ensemble(
    selection: EnsembleSelection, fitted: dict[int, Any], y: np.ndarray, metric: Metric,
    classes: np.ndarray | None = None,
) -> tuple[WeightedEnsemble, float] | None:
    """The ensemble of the selected members refit in ``fitted`` (trial number -> model; a
    member missing or ``None``, e.g. skipped for time, is left out) and its out-of-fold
    score; ``None`` when fewer than two members are left."""
    top, predictions = selection.top, selection.predictions
    kept = [(i, w, fitted.get(top[i].number)) for i, w in selection.chosen]
    kept = [(i, w, m) for i, w, m in kept if m is not None]
    if len(kept) < 2:
        return None
    kept.sort(key=lambda iwm: iwm[0])  # back in rank order, the best first
    covered = _covered(predictions)
    total = sum(w for _, w, _ in kept)
    mixed = sum(w / total * predictions[i][covered] for i, w, _ in kept)
    score = _score(metric, mixed, np.asarray(y)[covered], classes)
    return WeightedEnsemble([m for _, _, m in kept], [w for _, w, _ in kept],
                            trials=[top[i].number for i, _, _ in kept]), score
