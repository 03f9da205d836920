"""One trial: train a sampled configuration on every fold in lockstep, report, prune, log."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import torch

from regtune.config import RegConfig
from regtune.estimators.net import RegularizedNetClassifier, RegularizedNetRegressor
from regtune.metrics import Metric
from regtune.nn.regularizers import decay_parameters, weight_layers

__all__ = ["Folds", "TrialPruned", "make_estimator", "run_objective", "trial_seed", "weight_stats"]


class TrialPruned(optuna.TrialPruned):
    """Pruned at ``epoch``; the MLflow run records the epoch."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"pruned at epoch {epoch}")
        self.epoch = epoch


@dataclass(frozen=True)
class Folds:
    """The search's data: the train part and the (train, validation) index pairs over it."""

    X: np.ndarray
    y: np.ndarray
    task: str
    splits: Sequence[tuple[np.ndarray, np.ndarray]]
    image_shape: tuple[int, int, int] | None = None


def trial_seed(study_seed: int, number: int) -> int:
    """Each trial's own seed, so a trial is reproducible from its logged parameters."""
    return (study_seed * 1_000_003 + number * 7919) % (2**31 - 1)


def make_estimator(
    config: RegConfig, task: str, *, image_shape: tuple[int, int, int] | None, device: str, random_state: int
) -> RegularizedNetClassifier | RegularizedNetRegressor:
    """The estimator a configuration describes: trial params map onto its parameters one to one."""
    cls = RegularizedNetClassifier if task == "classification" else RegularizedNetRegressor
    params = config.to_dict()
    if task == "regression":
        params["label_smoothing"] = 0.0
    return cls(**params, image_shape=image_shape, device=device, random_state=random_state)


def weight_stats(model: torch.nn.Module) -> dict[str, float]:
    """Sparsity (share of |w| < 1e-3), L2 norm, parameter counts and the largest hidden-layer
    singular value: the figures reports tie to each regularizer."""
    weights = [p.detach() for p in decay_parameters(model)]
    flat = torch.cat([w.reshape(-1) for w in weights])
    sigmas = []
    for layer in weight_layers(model, include_head=False):
        w = layer.weight.detach()
        sigmas.append(float(torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2)))
    n_params = sum(p.numel() for p in model.parameters())
    n_zero = int((flat.abs() < 1e-3).sum())
    return {
        "sparsity": n_zero / flat.numel(),
        "weight_norm": float(flat.norm()),
        "top_singular_value": max(sigmas) if sigmas else float("nan"),
        "n_params": float(n_params),
        "n_effective_params": float(n_params - n_zero),
    }


def _epoch_score_fn(metric: Metric, y_train: np.ndarray, task: str):  # noqa: ANN202
    if metric.name != "rmse":
        return metric.epoch_fn
    scale = float(np.std(np.asarray(y_train, dtype=float))) or 1.0
    return lambda out, y: metric.epoch_fn(out, y) * scale  # back to the target's units


def run_objective(
    trial: optuna.Trial,
    config: RegConfig,
    folds: Folds,
    metric: Metric,
    *,
    seed: int,
    device: str,
    warmup: int,
    on_epoch: Any = None,
) -> tuple[float, dict[str, float]]:
    """Train ``config`` on every fold in lockstep; report the fold-mean score each epoch.

    A fold that stopped early keeps contributing the score of its best epoch. Returns the mean
    best-epoch validation score and the summary metrics logged for the trial. Raises
    :class:`TrialPruned` when the pruner says so (never for the baseline, never before
    ``warmup`` epochs).
    """
    can_prune = not trial.user_attrs.get("baseline", False)
    start = time.perf_counter()
    estimators, runs = [], []
    for k, (tr, va) in enumerate(folds.splits):
        est = make_estimator(config, folds.task, image_shape=folds.image_shape, device=device, random_state=seed + k)
        score_fn = _epoch_score_fn(metric, folds.y[tr], folds.task)
        estimators.append(est)
        runs.append(est.fit_iter(folds.X[tr], folds.y[tr], validation_data=(folds.X[va], folds.y[va]), score_fn=score_fn))
    latest: list[dict[str, Any] | None] = [None] * len(runs)
    active = set(range(len(runs)))
    epoch = 0
    while active:
        for i in sorted(active):
            try:
                latest[i] = next(runs[i])
            except StopIteration:
                active.discard(i)
                latest[i] = estimators[i].history_[estimators[i].best_epoch_]
        if not active:
            break
        record = {key: float(np.mean([r[key] for r in latest])) for key in ("train_loss", "val_loss", "val_score")}
        if on_epoch is not None:
            on_epoch(epoch, record)
        if math.isfinite(record["val_score"]):
            trial.report(record["val_score"], epoch)
        if can_prune and epoch + 1 >= warmup and trial.should_prune():
            raise TrialPruned(epoch)
        epoch += 1
    value = float(np.mean([est.history_[est.best_epoch_]["val_score"] for est in estimators]))
    if not math.isfinite(value):  # Optuna would fail the trial without saying why
        raise FloatingPointError(f"validation {metric.name} is {value} (the network's outputs are not finite)")
    train_scores = [metric.final_fn(est, folds.X[tr], folds.y[tr]) for est, (tr, _) in zip(estimators, folds.splits, strict=True)]
    stats = [weight_stats(est.module_) for est in estimators]
    summary = {key: float(np.mean([s[key] for s in stats])) for key in stats[0]}
    summary.update(
        value=value,
        train_score=float(np.mean(train_scores)),
        epochs=float(np.mean([est.n_iter_ for est in estimators])),
        best_epoch=float(np.mean([est.best_epoch_ for est in estimators])),
        seconds=time.perf_counter() - start,
    )
    return value, summary

