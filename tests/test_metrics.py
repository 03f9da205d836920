"""Tests for regtune.metrics: the epoch metrics on raw network outputs agree with scikit-learn's,
weighted and not, and a metric of the other task is refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from regtune.exceptions import TuneError
from regtune.metrics import METRICS, format_gap, format_score, get_metric

RNG = np.random.default_rng(0)


def _classification(n: int = 40, k: int = 3) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    logits = torch.tensor(RNG.normal(size=(n, k)), dtype=torch.float64)
    y = torch.tensor(RNG.integers(0, k, size=n))
    return logits, y, RNG.uniform(0.2, 3.0, size=n)


@pytest.mark.parametrize("weighted", [False, True])
def test_classification_epoch_metrics_match_sklearn(weighted: bool) -> None:
    logits, y, w = _classification()
    weight = torch.tensor(w) if weighted else None
    sw = w if weighted else None
    pred, proba = logits.argmax(1).numpy(), torch.softmax(logits, 1).numpy()
    expected = {
        "accuracy": sk.accuracy_score(y, pred, sample_weight=sw),
        "balanced_accuracy": sk.balanced_accuracy_score(y, pred, sample_weight=sw),
        "f1": sk.f1_score(y, pred, average="macro", zero_division=0, sample_weight=sw),
        "log_loss": sk.log_loss(y, proba, labels=[0, 1, 2], sample_weight=sw),
    }
    for name, value in expected.items():
        assert METRICS[name].epoch_fn(logits, y, weight) == pytest.approx(value, rel=1e-6), name


@pytest.mark.parametrize("weighted", [False, True])
def test_regression_epoch_metrics_match_sklearn(weighted: bool) -> None:
    y = RNG.normal(size=50)
    out = y + RNG.normal(scale=0.4, size=50)
    w = RNG.uniform(0.2, 3.0, size=50)
    weight, sw = (torch.tensor(w), w) if weighted else (None, None)
    t_out, t_y = torch.tensor(out), torch.tensor(y)
    assert METRICS["r2"].epoch_fn(t_out, t_y, weight) == pytest.approx(sk.r2_score(y, out, sample_weight=sw), rel=1e-6)
    assert METRICS["rmse"].epoch_fn(t_out, t_y, weight) == pytest.approx(
        sk.root_mean_squared_error(y, out, sample_weight=sw), rel=1e-6)


def test_default_metric_per_task_and_direction() -> None:
    assert get_metric(None, "classification").name == "accuracy"
    assert get_metric(None, "regression").name == "r2"
    assert get_metric("log_loss", "classification").direction == "minimize"
    assert get_metric("f1", "classification").label == "f1 (macro)"


def test_a_metric_of_the_other_task_or_an_unknown_one_is_refused_naming_the_choices() -> None:
    with pytest.raises(TuneError, match=r"metric='rmse' is for regression, but this is classification; "
                                        r"choose one of accuracy, balanced_accuracy, f1, log_loss"):
        get_metric("rmse", "classification")
    with pytest.raises(TuneError, match=r"metric='auc' is unknown; choose one of accuracy, .*r2"):
        get_metric("auc", "classification")


def test_scores_and_gaps_print_with_four_decimals_and_a_missing_mark() -> None:
    assert format_score(1) == "1.0000" and format_score(0.97224) == "0.9722"
    assert format_score(2.5e6) == "2.5000e+06"
    assert format_score(None) == "-" and format_score(math.nan, missing="") == ""
    assert format_gap(0.02228) == "+0.0223" and format_gap(-0.0125) == "-0.0125"
    assert format_gap(np.float64(math.nan)) == "-"
