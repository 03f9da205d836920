"""The one training loop. Estimators and the tuner both train through :class:`Trainer`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .callbacks import Callback
from .config import RegConfig
from .regularizers import Regularizer, overrides

__all__ = ["DivergenceError", "Trainer", "make_optimizer", "predict_batches", "resolve_device", "train"]

ScoreFn = Callable[[Tensor, Tensor], float]


class DivergenceError(FloatingPointError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, value: float) -> None:
        super().__init__(f"training diverged at epoch {epoch}: loss={value}")
        self.epoch = epoch
        self.value = value


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU."""
    if str(device) != "auto":
        try:
            return torch.device(device)
        except RuntimeError as exc:
            raise ValueError(f"device={device!r} is not a torch device ('auto', 'cpu', 'cuda', 'cuda:1', 'mps')") from exc
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def make_optimizer(model: nn.Module, config: RegConfig) -> torch.optim.Optimizer:
    """Plain optimizers: decay, if any, is a regularizer hook, so every optimizer gets it alike."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer in ("adam", "adamw"):
        # adamw = Adam + decoupled decay; the decay itself is DecoupledWeightDecay's job.
        return torch.optim.Adam(params, lr=config.lr)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True)
    return torch.optim.RMSprop(params, lr=config.lr)


class _RngScope:
    """Own RNG stream for one trainer, so trainers stepped in lockstep stay reproducible."""

    def __init__(self, seed: int, device: torch.device) -> None:
        self._cuda = device.type == "cuda"
        with torch.random.fork_rng(devices=[device] if self._cuda else []):
            torch.manual_seed(seed)
            self._state = torch.get_rng_state()
            self._cuda_state = torch.cuda.get_rng_state(device) if self._cuda else None
        self._device = device

    def __enter__(self) -> None:
        self._fork = torch.random.fork_rng(devices=[self._device] if self._cuda else [])
        self._fork.__enter__()
        torch.set_rng_state(self._state)
        if self._cuda:
            torch.cuda.set_rng_state(self._cuda_state, self._device)

    def __exit__(self, *exc: object) -> None:
        self._state = torch.get_rng_state()
        if self._cuda:
            self._cuda_state = torch.cuda.get_rng_state(self._device)
        self._fork.__exit__(*exc)


class Trainer:
    """Train one network epoch by epoch; ``step()`` runs an epoch, ``finish()`` ends training.

    Data are tensors already on the device; batches are index slices of a per-epoch
    permutation. Each epoch appends ``{epoch, train_loss, val_loss, val_score, seconds}`` to
    ``history`` and calls the callbacks, which may set ``should_stop``.
    """

    def __init__(
        self,
        build: Callable[[], nn.Module],
        config: RegConfig,
        X: Tensor,
        y: Tensor,
        X_val: Tensor | None = None,
        y_val: Tensor | None = None,
        *,
        task: str,
        regularizers: Sequence[Regularizer] = (),
        callbacks: Iterable[Callback] = (),
        score_fn: ScoreFn | None = None,
        seed: int = 0,
    ) -> None:
        self.config = config
        self.task = task
        self.X, self.y, self.X_val, self.y_val = X, y, X_val, y_val
        self.device = X.device
        self.score_fn = score_fn or (_accuracy if task == "classification" else _r2)
        self.callbacks = list(callbacks)
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self.best_epoch: int | None = None
        self.should_stop = False
        self._rng = _RngScope(seed, self.device)
        regs = list(regularizers)
        with self._rng:
            self.model = build().to(self.device)
        self.optimizer = make_optimizer(self.model, config)
        self._on_batch = overrides(regs, "on_batch")
        self._before_forward = overrides(regs, "before_forward")
        self._penalty = overrides(regs, "penalty")
        self._after_backward = overrides(regs, "after_backward")
        self._after_step = overrides(regs, "after_step")
        for cb in self.callbacks:
            cb.on_train_begin(self)

    @property
    def done(self) -> bool:
        return self.should_stop or self.epoch >= self.config.max_epochs

    def loss(self, output: Tensor, target: Tensor, smoothing: float = 0.0) -> Tensor:
        if self.task == "classification":
            return F.cross_entropy(output, target, label_smoothing=smoothing)
        return F.mse_loss(output, target)

    def step(self) -> dict[str, Any]:
        """Train one epoch, evaluate on the validation split, notify callbacks."""
        start = time.perf_counter()
        with self._rng:
            train_loss = self._train_epoch()
        record: dict[str, Any] = {"epoch": self.epoch, "train_loss": train_loss}
        if self.X_val is not None and len(self.X_val):
            record.update(self.evaluate(self.X_val, self.y_val))
        record["seconds"] = time.perf_counter() - start
        self.history.append(record)
        self.epoch += 1
        if not math.isfinite(train_loss):
            raise DivergenceError(record["epoch"], train_loss)
        for cb in self.callbacks:
            cb.on_epoch_end(self)
        return record

    def finish(self) -> nn.Module:
        for cb in self.callbacks:
            cb.on_train_end(self)
        if self.best_epoch is None and self.history:
            self.best_epoch = self.history[-1]["epoch"]
        self.model.eval()
        return self.model

    def _train_epoch(self) -> float:
        model, opt, cfg = self.model, self.optimizer, self.config
        model.train()
        n = self.X.shape[0]
        bs = min(cfg.batch_size, n)
        order = torch.randperm(n, device=self.device)
        total = torch.zeros((), device=self.device)
        lr = opt.param_groups[0]["lr"]
        # A last batch of one sample breaks batch norm; fold it into the previous batch.
        stops = list(range(bs, n, bs))
        if stops and n - stops[-1] == 1 and cfg.batch_norm != "none":
            stops[-1] = n
        else:
            stops.append(n)
        begin = 0
        for end in stops:
            idx = order[begin:end]
            begin = end
            xb, yb = self.X[idx], self.y[idx]
            for reg in self._on_batch:
                xb, yb = reg.on_batch(xb, yb)
            for reg in self._before_forward:
                reg.before_forward(model)
            loss = self.loss(model(xb), yb, cfg.label_smoothing)
            batch_loss = loss.detach()
            for reg in self._penalty:
                loss = loss + reg.penalty(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for reg in self._after_backward:
                reg.after_backward(model)
            opt.step()
            for reg in self._after_step:
                reg.after_step(model, lr)
            total += batch_loss * idx.shape[0]
        return float(total / n)

    @torch.no_grad()
    def evaluate(self, X: Tensor, y: Tensor) -> dict[str, float]:
        output = predict_batches(self.model, X)
        return {"val_loss": float(self.loss(output, y)), "val_score": float(self.score_fn(output, y))}


@torch.no_grad()
def predict_batches(model: nn.Module, X: Tensor, batch_size: int = 4096) -> Tensor:
    """Eval-mode forward pass in chunks (deterministic: dropout and noise are off)."""
    model.eval()
    if X.shape[0] <= batch_size:
        return model(X)
    return torch.cat([model(X[i : i + batch_size]) for i in range(0, X.shape[0], batch_size)])


def train(
    build: Callable[[], nn.Module],
    config: RegConfig,
    X: Tensor,
    y: Tensor,
    X_val: Tensor | None = None,
    y_val: Tensor | None = None,
    **kwargs: Any,
) -> Trainer:
    """Run a :class:`Trainer` to the end; returns it with ``model``, ``history``, ``best_epoch``."""
    trainer = Trainer(build, config, X, y, X_val, y_val, **kwargs)
    while not trainer.done:
        trainer.step()
    trainer.finish()
    return trainer


def _accuracy(output: Tensor, y: Tensor) -> float:
    return float((output.argmax(1) == y).float().mean())


def _r2(output: Tensor, y: Tensor) -> float:
    ss_res = ((y - output) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0).clamp_min(1e-12)
    return float((1 - ss_res / ss_tot).mean())

