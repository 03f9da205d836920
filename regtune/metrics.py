"""Objective metrics: one name, its direction, a per-epoch tensor form and a final numpy form."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn import metrics as skm
from torch import Tensor

__all__ = ["METRICS", "Metric", "get_metric"]


@dataclass(frozen=True)
class Metric:
    """A validation metric. ``epoch_fn(output, y)`` works on raw network outputs during training;
    ``final_fn(estimator, X, y)`` scores a fitted estimator in the data's own units."""

    name: str
    task: str
    direction: str  # "maximize" | "minimize"
    epoch_fn: Callable[[Tensor, Tensor], float]
    final_fn: Callable[[object, np.ndarray, np.ndarray], float]


def _acc(out: Tensor, y: Tensor) -> float:
    return float((out.argmax(1) == y).float().mean())


def _balanced_acc(out: Tensor, y: Tensor) -> float:
    pred = out.argmax(1)
    recalls = [(pred[y == c] == c).float().mean() for c in torch.unique(y)]
    return float(torch.stack(recalls).mean())


def _f1(out: Tensor, y: Tensor) -> float:
    return float(skm.f1_score(y.cpu().numpy(), out.argmax(1).cpu().numpy(), average="macro", zero_division=0))


def _log_loss(out: Tensor, y: Tensor) -> float:
    return float(F.cross_entropy(out, y))


def _rmse(out: Tensor, y: Tensor) -> float:
    # Targets are standardized inside the estimator: this is RMSE in units of the target's std.
    return float(((out - y) ** 2).mean().sqrt())


def _r2(out: Tensor, y: Tensor) -> float:
    ss_res = ((y - out) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0).clamp_min(1e-12)
    return float((1 - ss_res / ss_tot).mean())


def _sk(fn: Callable[..., float], proba: bool = False) -> Callable[[object, np.ndarray, np.ndarray], float]:
    def score(est: object, X: np.ndarray, y: np.ndarray) -> float:
        pred = est.predict_proba(X) if proba else est.predict(X)  # type: ignore[attr-defined]
        if proba:
            return float(fn(y, pred, labels=est.classes_))  # type: ignore[attr-defined]
        return float(fn(y, pred))

    return score


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", "classification", "maximize", _acc, _sk(skm.accuracy_score)),
        Metric("balanced_accuracy", "classification", "maximize", _balanced_acc, _sk(skm.balanced_accuracy_score)),
        Metric("f1", "classification", "maximize", _f1,
               _sk(lambda y, p: skm.f1_score(y, p, average="macro", zero_division=0))),
        Metric("log_loss", "classification", "minimize", _log_loss, _sk(skm.log_loss, proba=True)),
        Metric("rmse", "regression", "minimize", _rmse, _sk(skm.root_mean_squared_error)),
        Metric("r2", "regression", "maximize", _r2, _sk(skm.r2_score)),
    )
}


def get_metric(name: str | None, task: str) -> Metric:
    """The named metric, or the task's default (accuracy / r2); rejects a metric of the other task."""
    if name is None:
        name = "accuracy" if task == "classification" else "r2"
    if name not in METRICS:
        raise ValueError(f"metric={name!r} is unknown; choose one of {', '.join(METRICS)}")
    metric = METRICS[name]
    if metric.task != task:
        allowed = [m for m, v in METRICS.items() if v.task == task]
        raise ValueError(f"metric={name!r} is for {metric.task}, but this is {task}; choose one of {', '.join(allowed)}")
    return metric
