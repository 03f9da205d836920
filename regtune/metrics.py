"""Objective metrics: one name, its direction, a per-epoch tensor form and a final numpy form.

Also the one way every table prints a score (:func:`format_score`) and a difference of scores
(:func:`format_gap`). torch and scikit-learn load on first use, so the command line's tables
can format numbers without them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from regtune.exceptions import TuneError

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["METRICS", "Metric", "format_gap", "format_score", "get_metric"]


@dataclass(frozen=True)
class Metric:
    """A validation metric. ``epoch_fn(output, y, weight=None)`` works on raw network outputs
    during training (``weight``: one per row, for a weighted score);
    ``final_fn(estimator, X, y)`` scores a fitted estimator in the data's own units. ``label`` is
    how help texts, summaries and MLflow name it (``"f1 (macro)"``); ``name`` is what to pass."""

    name: str
    task: str
    direction: str  # "maximize" | "minimize"
    epoch_fn: Callable[[Tensor, Tensor], float]
    final_fn: Callable[[object, np.ndarray, np.ndarray], float]
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)


def _mean(values: Tensor, weight: Tensor | None) -> Tensor:
    """Mean over rows (dim 0), weighted by ``weight`` when given."""
    if weight is None:
        return values.mean(0)
    w = weight.to(values.dtype).reshape(-1, *([1] * (values.ndim - 1)))
    return (values * w).sum(0) / w.sum()


def _acc(out: Tensor, y: Tensor, weight: Tensor | None = None) -> float:
    return float(_mean((out.argmax(1) == y).float(), weight))


def _balanced_acc(out: Tensor, y: Tensor, weight: Tensor | None = None) -> float:
    import torch

    pred = out.argmax(1)
    recalls = [_mean((pred[y == c] == c).float(), None if weight is None else weight[y == c]) for c in torch.unique(y)]
    return float(torch.stack(recalls).mean())


def _f1(out: Tensor, y: Tensor, weight: Tensor | None = None) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y.cpu().numpy(), out.argmax(1).cpu().numpy(), average="macro", zero_division=0,
                          sample_weight=None if weight is None else weight.cpu().numpy()))


def _log_loss(out: Tensor, y: Tensor, weight: Tensor | None = None) -> float:
    import torch.nn.functional as F

    return float(_mean(F.cross_entropy(out, y, reduction="none"), weight))


def _rmse(out: Tensor, y: Tensor, weight: Tensor | None = None) -> float:
    # Targets are standardized inside the estimator: this is RMSE in units of the target's std.
    return float(_mean(((out - y) ** 2).reshape(len(y), -1).mean(1), weight).sqrt())


def _r2(out: Tensor, y: Tensor, weight: Tensor | None = None) -> float:
    if weight is None:
        ss_res = ((y - out) ** 2).sum(0)
        ss_tot = ((y - y.mean(0)) ** 2).sum(0).clamp_min(1e-12)
    else:
        w = weight.to(y.dtype).reshape(-1, *([1] * (y.ndim - 1)))
        ss_res = (w * (y - out) ** 2).sum(0)
        ss_tot = (w * (y - _mean(y, weight)) ** 2).sum(0).clamp_min(1e-12)
    return float((1 - ss_res / ss_tot).mean())


def _sk(name: str, proba: bool = False, **options: Any) -> Callable[[object, np.ndarray, np.ndarray], float]:
    """``sklearn.metrics.<name>`` on an estimator's predictions (probabilities with ``proba``)."""

    def score(est: object, X: np.ndarray, y: np.ndarray) -> float:
        from sklearn import metrics

        fn = getattr(metrics, name)
        if proba:
            return float(fn(y, est.predict_proba(X), labels=est.classes_, **options))  # type: ignore[attr-defined]
        return float(fn(y, est.predict(X), **options))  # type: ignore[attr-defined]

    return score


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", "classification", "maximize", _acc, _sk("accuracy_score")),
        Metric("balanced_accuracy", "classification", "maximize", _balanced_acc, _sk("balanced_accuracy_score")),
        Metric("f1", "classification", "maximize", _f1, _sk("f1_score", average="macro", zero_division=0),
               label="f1 (macro)"),
        Metric("log_loss", "classification", "minimize", _log_loss, _sk("log_loss", proba=True)),
        Metric("rmse", "regression", "minimize", _rmse, _sk("root_mean_squared_error")),
        Metric("r2", "regression", "maximize", _r2, _sk("r2_score")),
    )
}


def get_metric(name: str | None, task: str) -> Metric:
    """The named metric, or the task's default (accuracy / r2); rejects a metric of the other task."""
    if name is None:
        name = "accuracy" if task == "classification" else "r2"
    if name not in METRICS:
        raise TuneError(f"metric={name!r} is unknown; choose one of {', '.join(METRICS)}")
    metric = METRICS[name]
    if metric.task != task:
        allowed = [m for m, v in METRICS.items() if v.task == task]
        raise TuneError(f"metric={name!r} is for {metric.task}, but this is {task}; choose one of {', '.join(allowed)}")
    return metric


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def format_score(value: Any, missing: str = "-") -> str:
    """A score as every table prints it: 4 decimals, so ``1`` and ``0.9722`` line up as
    ``1.0000`` and ``0.9722`` (scientific from 1e6 on, where decimals stop meaning much)."""
    if _missing(value):
        return missing
    value = float(value)
    return f"{value:.4e}" if abs(value) >= 1e6 else f"{value:.4f}"


def format_gap(value: Any, missing: str = "-") -> str:
    """A difference of two scores (train - test): signed, with :func:`format_score`'s decimals."""
    if _missing(value):
        return missing
    value = float(value)
    return f"{value:+.4e}" if abs(value) >= 1e6 else f"{value:+.4f}"
