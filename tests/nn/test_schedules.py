"""Learning-rate schedules: their shapes, the warm-up, and the rate the optimizer really steps at."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from regtune import RegConfig, RegularizedNetClassifier
from regtune.config import LR_SCHEDULES
from regtune.nn.callbacks import Callback
from regtune.nn.models import build_model
from regtune.nn.schedules import SCHEDULES, LRSchedule
from regtune.nn.trainer import Trainer


def test_the_config_names_exactly_the_implemented_schedules() -> None:
    assert tuple(SCHEDULES) == LR_SCHEDULES


@pytest.mark.parametrize("name", LR_SCHEDULES)
def test_every_schedule_peaks_at_lr_and_never_goes_negative(name: str) -> None:
    schedule = LRSchedule(name, 0.1, total_steps=200)
    rates = [schedule(step) for step in range(200)]
    assert max(rates) == pytest.approx(0.1, rel=1e-3)
    assert min(rates) >= 0
    if name != "constant":  # annealing schedules end near zero
        assert rates[-1] < 0.01 * 0.1


def test_shapes_at_known_points() -> None:
    cosine = LRSchedule("cosine", 1.0, total_steps=100)
    assert cosine(0) == 1.0 and cosine(50) == pytest.approx(0.5) and cosine(99) < 0.01
    flat = LRSchedule("flat_anneal", 1.0, total_steps=100)
    assert flat(0) == flat(49) == 1.0 and flat(75) == pytest.approx(0.5)
    onecycle = LRSchedule("onecycle", 1.0, total_steps=100)
    assert onecycle(0) == pytest.approx(1 / 25) and onecycle(30) == pytest.approx(1.0)
    assert all(np.diff([onecycle(s) for s in range(31)]) > 0)  # rises, then anneals
    assert all(np.diff([onecycle(s) for s in range(30, 100)]) < 0)


def test_warmup_ramps_linearly_then_the_schedule_runs_over_the_remaining_steps() -> None:
    schedule = LRSchedule("cosine", 1.0, total_steps=110, warmup_steps=10)
    assert [schedule(s) for s in range(10)] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert schedule(10) == 1.0 and schedule(60) == pytest.approx(0.5)
    assert LRSchedule("constant", 1.0, total_steps=5, warmup_steps=50)(4) == 1.0  # capped at the horizon
    assert LRSchedule("constant", 1.0, 10).is_constant and not LRSchedule("constant", 1.0, 10, 1).is_constant


class _RateLog(Callback):
    """The optimizer's rate at the end of every epoch: the last step's rate."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_epoch_end(self, trainer: Trainer) -> None:
        self.rates.append(trainer.optimizer.param_groups[0]["lr"])


@pytest.mark.parametrize("name", LR_SCHEDULES)
def test_the_optimizer_steps_at_the_scheduled_rate_every_epoch(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(64, 5, generator=g), torch.randint(0, 2, (64,), generator=g)
    config = RegConfig(hidden_layer_sizes=(8,), batch_size=16, max_epochs=10, lr=0.01, lr_schedule=name,
                       warmup_epochs=2, optimizer="adamw", weight_decay=1e-3)
    log = _RateLog()
    trainer = Trainer(lambda: build_model(config, 5, 2), config, X, y, task="classification", callbacks=[log])
    while not trainer.done:
        trainer.step()
    expected = LRSchedule(name, 0.01, total_steps=40, warmup_steps=8)
    assert log.rates == pytest.approx([expected(4 * (epoch + 1) - 1) for epoch in range(10)])
    assert log.rates[0] == pytest.approx(0.01 * 4 / 8)  # mid warm-up after the first epoch
    assert len({g["lr"] for g in trainer.optimizer.param_groups}) == 1  # decay group too


def test_the_estimator_takes_the_schedule_and_a_constant_rate_stays_untouched() -> None:
    X, y = np.random.default_rng(0).normal(size=(60, 4)), np.arange(60) % 2
    log = _RateLog()
    RegularizedNetClassifier((8,), max_epochs=4, lr=0.02, lr_schedule="cosine", batch_size=16, early_stopping=False,
                             callbacks=[log], random_state=0).fit(X, y)
    assert log.rates[0] < 0.02 and log.rates == sorted(log.rates, reverse=True)
    log = _RateLog()
    RegularizedNetClassifier((8,), max_epochs=3, lr=0.02, early_stopping=False, callbacks=[log],
                             random_state=0).fit(X, y)
    assert log.rates == [0.02] * 3


def test_a_cosine_schedule_is_reproducible_and_differs_from_constant() -> None:
    X, y = np.random.default_rng(1).normal(size=(80, 4)), np.arange(80) % 2

    def losses(schedule: str) -> list[float]:
        net = RegularizedNetClassifier((16,), max_epochs=6, lr=0.05, lr_schedule=schedule, early_stopping=False,
                                       random_state=3).fit(X, y)
        return [r["train_loss"] for r in net.history_]

    assert losses("cosine") == losses("cosine")
    assert not math.isclose(losses("cosine")[-1], losses("constant")[-1])
