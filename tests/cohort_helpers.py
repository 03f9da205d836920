"""Shared by the cohort tests (tests/nn/test_cohort.py, tests/tuning/test_cohort.py and the
cohort tests of BYO modules and regularizers): data, the cohort-vs-alone comparison, a space."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def _data(n: int, seed: int, task: str = "classification") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 12))
    signal = X[:, :3].sum(1) + 0.5 * rng.normal(size=n)
    if task == "regression":
        return X, signal
    return X, (signal > 0).astype(int) + (X[:, 3] > 1).astype(int)


def _compare(cohort_est: object, solo: object, k: int) -> None:
    assert len(cohort_est.history_) == len(solo.history_), k  # same epochs: early stopping agrees
    for mine, alone in zip(cohort_est.history_, solo.history_, strict=True):
        for key in ("train_loss", "val_loss", "val_score"):
            assert mine[key] == pytest.approx(alone[key], rel=1e-4, abs=1e-5), (k, mine["epoch"], key)
    assert cohort_est.best_epoch_ == solo.best_epoch_
    for (name, p), q in zip(solo.module_.state_dict().items(), cohort_est.module_.state_dict().values(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=f"member {k}: {name}")


# Structure: the activation and dropout; per member: lr, L2, weight decay, label smoothing, input
# noise (drawn from each member's own stream), early stopping.
COHORT_SPACE = """\
fixed: {architecture: mlp, hidden_layer_sizes: [16], batch_size: 32, max_epochs: 6, optimizer: adamw, patience: 2}
params:
  lr: {type: float, low: 1.0e-3, high: 5.0e-2, log: true, default: 1.0e-2}
  activation: {type: categorical, choices: [relu, tanh], default: relu}
regularizers:
  l2:
    l2: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}
  weight_decay:
    weight_decay: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}
  label_smoothing:
    label_smoothing: {type: float, low: 0.01, high: 0.3}
  dropout:
    dropout: {type: float, low: 0.05, high: 0.3}
  input_noise:
    input_noise: {type: float, low: 0.01, high: 0.3}
  early_stopping:
"""
