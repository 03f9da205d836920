"""Observers of the per-epoch history: early stopping here, pruning and MLflow elsewhere.

Callbacks see the trainer only through :class:`TrainerState`, so this module does not import
the trainer that imports it.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Callback", "EarlyStopping", "LambdaCallback", "StopAfter", "TrainerState"]


class TrainerState(Protocol):
    """What a callback may read (``history``, ``model``, ``epoch``) and write (``should_stop``,
    ``best_epoch``) of :class:`~regtune.nn.trainer.Trainer`."""

    history: list[dict[str, Any]]
    model: nn.Module
    epoch: int
    best_epoch: int | None
    should_stop: bool


class Callback:
    """Hooks called by :class:`~regtune.nn.trainer.Trainer`; each is a no-op by default.

    ``on_epoch_end`` reads ``trainer.history[-1]`` and may set ``trainer.should_stop``.
    """

    def on_train_begin(self, trainer: TrainerState) -> None:
        """Called once, after the model and optimizer exist."""

    def on_epoch_end(self, trainer: TrainerState) -> None:
        """Called after every epoch's record is appended to ``trainer.history``."""

    def on_train_end(self, trainer: TrainerState) -> None:
        """Called once when training stops for any reason but an exception."""


class LambdaCallback(Callback):
    """Wrap a function ``f(trainer)`` as an ``on_epoch_end`` callback."""

    def __init__(self, on_epoch_end: Any) -> None:
        self._fn = on_epoch_end

    def on_epoch_end(self, trainer: TrainerState) -> None:
        self._fn(trainer)


class StopAfter(Callback):
    """Stop after ``epochs`` epochs without shortening ``max_epochs``.

    A refit that should train as long as its trial's best epoch uses it instead of a lower
    ``max_epochs``, so a learning-rate schedule keeps the horizon the trial trained with.
    """

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, trainer: TrainerState) -> None:
        if trainer.epoch >= self.epochs:
            trainer.should_stop = True


class EarlyStopping(Callback):
    """Stop after ``patience`` epochs without a lower validation loss; restore the best weights.

    Writes ``trainer.best_epoch``. Validation loss is smoother than accuracy, so it ranks
    epochs more reliably on small validation splits.
    """

    def __init__(self, patience: int = 10, monitor: str = "val_loss", min_delta: float = 0.0) -> None:
        self.patience = patience
        self.monitor = monitor
        self.min_delta = min_delta

    def on_train_begin(self, trainer: TrainerState) -> None:
        self._best = math.inf
        self._best_state: dict[str, Any] | None = None
        self._wait = 0

    def on_epoch_end(self, trainer: TrainerState) -> None:
        record = trainer.history[-1]
        value = record.get(self.monitor)
        if value is None or not math.isfinite(value):
            return
        if value < self._best - self.min_delta:
            self._best = value
            self._best_state = copy.deepcopy(trainer.model.state_dict())
            self._wait = 0
            trainer.best_epoch = record["epoch"]
            return
        self._wait += 1
        if self._wait >= self.patience:
            trainer.should_stop = True

    def on_train_end(self, trainer: TrainerState) -> None:
        if self._best_state is not None:
            trainer.model.load_state_dict(self._best_state)
