"""The training loop: history, callbacks, hooks, early stopping, divergence, device choice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from byo_modules import ResidualMLP
from sklearn.metrics import log_loss
from torch import nn

from regtune import RegConfig, RegularizedNetClassifier
from regtune.exceptions import RegtuneError
from regtune.metrics import get_metric
from regtune.nn.callbacks import Callback, EarlyStopping, LambdaCallback
from regtune.nn.models import build_model
from regtune.nn.regularizers import Regularizer, build_regularizers
from regtune.nn.trainer import DivergenceError, Trainer, predict_batches, resolve_device

RECORD_KEYS = {"epoch", "train_loss", "val_loss", "val_score", "seconds"}


def _noisy_problem(n: int, seed: int, noise: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One informative feature of 20, labels flipped often: a big net overfits it fast."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 20, generator=g)
    return X, (X[:, 0] + noise * torch.randn(n, generator=g) > 0).long()


def _builder(config: RegConfig) -> Callable[[], nn.Module]:
    return lambda: build_model(config, 20, 2)


def _config(**changes: object) -> RegConfig:
    return RegConfig(**{"hidden_layer_sizes": (32,), "batch_size": 32, "max_epochs": 5, **changes})


def _train(*args: Any, **kwargs: Any) -> Trainer:
    """Step a :class:`Trainer` to the end and finish it, as the estimators' ``fit`` does."""
    trainer = Trainer(*args, **kwargs)
    while not trainer.done:
        trainer.step()
    trainer.finish()
    return trainer


def test_history_has_one_complete_record_per_epoch_and_the_loss_falls() -> None:
    X, y = _noisy_problem(128, 0, noise=0.1)
    Xv, yv = _noisy_problem(64, 1, noise=0.1)
    trainer = _train(_builder(_config(lr=1e-2)), _config(lr=1e-2), X, y, Xv, yv, task="classification")
    assert [r["epoch"] for r in trainer.history] == [0, 1, 2, 3, 4]
    for record in trainer.history:
        assert set(record) == RECORD_KEYS
        assert record["seconds"] > 0
        assert 0 <= record["val_score"] <= 1
    assert trainer.history[-1]["train_loss"] < 0.6 * trainer.history[0]["train_loss"]
    assert trainer.history[-1]["val_score"] > 0.65  # chance is 0.5
    assert trainer.best_epoch == 4  # no early stopping: the last epoch
    assert not trainer.model.training


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_val_score_defaults_to_the_tasks_default_metric(task: str) -> None:
    X, y = _noisy_problem(64, 0)
    Xv, yv = _noisy_problem(32, 1)
    n_out = 2 if task == "classification" else 1
    if task == "regression":
        y, yv = y.float()[:, None], yv.float()[:, None]
    config = _config(max_epochs=2)
    trainer = _train(lambda: build_model(config, 20, n_out), config, X, y, Xv, yv, task=task)
    expected = get_metric(None, task).epoch_fn(predict_batches(trainer.model, Xv), yv)
    assert trainer.history[-1]["val_score"] == pytest.approx(expected)


def test_without_validation_data_records_hold_training_loss_only() -> None:
    X, y = _noisy_problem(64, 0)
    trainer = _train(_builder(_config()), _config(max_epochs=2), X, y, task="classification")
    assert [set(r) for r in trainer.history] == [{"epoch", "train_loss", "seconds"}] * 2


def test_same_seed_same_history_other_seed_other_history() -> None:
    X, y = _noisy_problem(96, 0)
    config = _config(dropout=0.3, input_noise=0.1)

    def losses(seed: int) -> list[float]:
        regs = build_regularizers(config, n_classes=2, image_shape=None)
        trainer = _train(_builder(config), config, X, y, task="classification", regularizers=regs, seed=seed)
        return [r["train_loss"] for r in trainer.history]

    assert losses(3) == losses(3)
    assert losses(3) != losses(4)


class _Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[tuple[str, int, int]] = []

    def on_train_begin(self, trainer: Trainer) -> None:
        assert trainer.optimizer is not None
        self.events.append(("begin", trainer.epoch, len(trainer.history)))

    def on_epoch_end(self, trainer: Trainer) -> None:
        self.events.append(("epoch", trainer.epoch, len(trainer.history)))

    def on_train_end(self, trainer: Trainer) -> None:
        self.events.append(("end", trainer.epoch, len(trainer.history)))


def test_callbacks_see_every_epoch_once_in_order() -> None:
    X, y = _noisy_problem(64, 0)
    recorder = _Recorder()
    _train(_builder(_config()), _config(max_epochs=3), X, y, task="classification", callbacks=[recorder])
    assert recorder.events == [("begin", 0, 0), ("epoch", 1, 1), ("epoch", 2, 2), ("epoch", 3, 3), ("end", 3, 3)]


def test_a_callback_can_stop_training() -> None:
    X, y = _noisy_problem(64, 0)

    def stop_after_two(trainer: Trainer) -> None:
        trainer.should_stop = len(trainer.history) == 2

    trainer = _train(_builder(_config()), _config(max_epochs=50), X, y, task="classification",
                    callbacks=[LambdaCallback(stop_after_two)])
    assert len(trainer.history) == 2 and trainer.done


class _HookLog(Regularizer):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_batch(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls.append("on_batch")
        return X, y

    def before_forward(self, model: nn.Module) -> None:
        self.calls.append("before_forward")

    def penalty(self, model: nn.Module) -> torch.Tensor:
        self.calls.append("penalty")
        return torch.zeros(())

    def after_backward(self, model: nn.Module) -> None:
        assert all(p.grad is not None for p in model.parameters())
        self.calls.append("after_backward")

    def after_step(self, model: nn.Module, lr: float) -> None:
        assert lr == 0.005
        self.calls.append("after_step")


def test_hooks_run_once_per_batch_in_order_and_never_at_evaluation() -> None:
    X, y = _noisy_problem(70, 0)  # batches of 32, 32, 6
    Xv, yv = _noisy_problem(20, 1)
    log = _HookLog()
    config = _config(max_epochs=2, lr=0.005)
    trainer = _train(_builder(config), config, X, y, Xv, yv, task="classification", regularizers=[log])
    one_batch = ["on_batch", "before_forward", "penalty", "after_backward", "after_step"]
    assert log.calls == one_batch * 3 * 2
    trainer.evaluate(Xv, yv)
    assert len(log.calls) == 30


@pytest.mark.parametrize("batch_norm", ["none", "before_activation"])
def test_a_last_batch_of_one_sample_trains(batch_norm: str) -> None:
    X, y = _noisy_problem(65, 0)  # 32 + 32 + 1
    config = _config(batch_norm=batch_norm, max_epochs=1)
    trainer = _train(_builder(config), config, X, y, task="classification")
    assert np.isfinite(trainer.history[0]["train_loss"])


def test_a_huge_learning_rate_raises_divergence_error() -> None:
    X, y = _noisy_problem(64, 0)
    config = _config(optimizer="sgd", lr=1e6, max_epochs=20)
    trainer = Trainer(_builder(config), config, X, y, task="classification")
    with pytest.raises(DivergenceError, match=r"training diverged at epoch \d+: loss=nan") as info:
        while not trainer.done:
            trainer.step()
    assert info.value.epoch == trainer.history[-1]["epoch"] < 20
    assert not np.isfinite(info.value.value)
    assert isinstance(info.value, FloatingPointError)


def test_an_infinite_input_raises_divergence_error_in_the_first_epoch() -> None:
    X, y = _noisy_problem(64, 0)
    X[5, 3] = float("inf")
    with pytest.raises(DivergenceError) as info:
        _train(_builder(_config()), _config(), X, y, task="classification")
    assert info.value.epoch == 0


def test_resolve_device() -> None:
    assert resolve_device("auto") == torch.device("cpu")  # no accelerator on this machine
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(RegtuneError, match="device='gpu0'"):  # one line in the CLI, ValueError too
        resolve_device("gpu0")


# --- early stopping ------------------------------------------------------------------------


class _FakeTrainer:
    def __init__(self) -> None:
        self.model = nn.Linear(2, 1)
        self.history: list[dict] = []
        self.best_epoch = None
        self.should_stop = False


def test_early_stopping_counts_patience_from_the_best_epoch_and_restores_it() -> None:
    trainer, stopper = _FakeTrainer(), EarlyStopping(patience=3)
    stopper.on_train_begin(trainer)
    weights_at = {}
    for epoch, loss in enumerate([3.0, 2.0, 2.5, 1.9, 2.2, 2.1, 2.0, 1.0]):
        with torch.no_grad():
            trainer.model.weight.fill_(epoch)
        weights_at[epoch] = epoch
        trainer.history.append({"epoch": epoch, "val_loss": loss})
        stopper.on_epoch_end(trainer)
        if trainer.should_stop:
            break
    assert epoch == 6  # three epochs without beating 1.9
    assert trainer.best_epoch == 3
    stopper.on_train_end(trainer)
    assert torch.all(trainer.model.weight == 3)


def test_early_stopping_stops_an_overfitting_net_and_restores_its_best_epoch() -> None:
    X, y = _noisy_problem(120, 0)
    Xv, yv = _noisy_problem(200, 1)
    config = RegConfig(hidden_layer_sizes=(128, 128), lr=1e-3, batch_size=32, max_epochs=200)
    trainer = _train(_builder(config), config, X, y, Xv, yv, task="classification",
                    callbacks=[EarlyStopping(patience=5)], seed=0)
    val = [r["val_loss"] for r in trainer.history]
    assert len(val) < 200
    assert trainer.best_epoch == int(np.argmin(val))
    assert len(val) == trainer.best_epoch + 1 + 5
    assert trainer.history[-1]["train_loss"] < trainer.history[trainer.best_epoch]["train_loss"]  # overfitting
    assert trainer.evaluate(Xv, yv)["val_loss"] == pytest.approx(val[trainer.best_epoch], abs=1e-6)


@pytest.mark.parametrize("kind", ["mlp", "custom"])
def test_estimator_early_stopping_restores_the_best_epoch(kind: str) -> None:
    X, y = (t.numpy() for t in _noisy_problem(120, 0))
    Xv, yv = (t.numpy() for t in _noisy_problem(200, 1))
    module = {"hidden_layer_sizes": (128, 128)} if kind == "mlp" else {"module": ResidualMLP, "module__width": 128}
    net = RegularizedNetClassifier(lr=1e-3, batch_size=32, max_epochs=200, patience=5, random_state=0, device="cpu",
                                   **module)
    records = list(net.fit_iter(X, y, validation_data=(Xv, yv)))
    assert records == net.history_  # fit_iter yields each epoch's record as it is made
    assert len(records) == net.n_iter_ < 200
    val = [r["val_loss"] for r in net.history_]
    assert net.best_epoch_ == int(np.argmin(val))
    assert log_loss(yv, net.predict_proba(Xv)) == pytest.approx(val[net.best_epoch_], abs=1e-5)


def test_fit_iter_yields_one_record_per_epoch() -> None:
    X, y = (t.numpy() for t in _noisy_problem(64, 0))
    net = RegularizedNetClassifier((16,), max_epochs=4, early_stopping=False, random_state=0, device="cpu")
    epochs = []
    for record in net.fit_iter(X, y):
        epochs.append(record["epoch"])
        assert not hasattr(net, "module_")  # fitted only once the generator is exhausted
    assert epochs == [0, 1, 2, 3] and net.n_iter_ == 4
    assert net.device_ == torch.device("cpu")


def test_data_over_the_memory_budget_stream_in_chunks_and_train_the_same() -> None:
    """The streamed path (chunks gathered from host memory) trains exactly what the in-memory
    path trains: same batches in the same order, same RNG stream for dropout and noise."""
    X, y = _noisy_problem(600, 0)
    Xv, yv = _noisy_problem(200, 1)
    config = _config(dropout=0.3, input_noise=0.1, batch_size=32, max_epochs=3)

    def train(memory_budget: int | None) -> Trainer:
        regs = build_regularizers(config, n_classes=2, image_shape=None)
        return _train(_builder(config), config, X, y, Xv, yv, task="classification", regularizers=regs,
                      seed=7, memory_budget=memory_budget)

    in_memory = train(None)
    data_bytes = sum(t.nelement() * t.element_size() for t in (X, y, Xv, yv))
    streamed = train(data_bytes // 10)  # chunks of 1/40 of the data: 17 chunks per epoch
    assert not in_memory.streaming and streamed.streaming
    assert len(streamed._plan) > 10 and len(in_memory._plan) == 1
    for a, b in zip(in_memory.history, streamed.history, strict=True):
        for key in ("train_loss", "val_loss", "val_score"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6)
    for p, q in zip(in_memory.model.parameters(), streamed.model.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


def test_streamed_data_carry_their_sample_weights() -> None:
    """Weights travel with their rows through the streamed chunks: same numbers as in memory,
    and other numbers than without weights."""
    X, y = _noisy_problem(600, 0)
    Xv, yv = _noisy_problem(200, 1)
    w, wv = torch.rand(600, generator=torch.Generator().manual_seed(2)), torch.rand(200) + 0.5
    config = _config(batch_size=32, max_epochs=2)

    def train(memory_budget: int | None, weighted: bool = True) -> Trainer:
        return _train(_builder(config), config, X, y, Xv, yv, task="classification", seed=7,
                      memory_budget=memory_budget, sample_weight=w if weighted else None,
                      sample_weight_val=wv if weighted else None)

    in_memory, unweighted = train(None), train(None, weighted=False)
    streamed = train(sum(t.nelement() * t.element_size() for t in (X, y, Xv, yv)) // 10)
    assert streamed.streaming
    for a, b in zip(in_memory.history, streamed.history, strict=True):
        for key in ("train_loss", "val_loss", "val_score"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6)
    assert in_memory.history[0]["train_loss"] != pytest.approx(unweighted.history[0]["train_loss"], rel=1e-4)
