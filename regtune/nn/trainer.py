"""The one training loop. Estimators and the tuner both train through :class:`Trainer`."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from regtune.config import RegConfig
from regtune.data.torch_data import DatasetSource
from regtune.exceptions import DivergenceError, RegConfigError
from regtune.metrics import get_metric
from regtune.nn.callbacks import Callback
from regtune.nn.losses import Loss, make_criterion
from regtune.nn.regularizers import Regularizer, decay_parameters, overrides
from regtune.nn.schedules import LRSchedule

__all__ = ["DivergenceError", "RngScope", "Trainer", "autocast_dtype", "make_optimizer", "predict_batches", "predict_exact",
           "resolve_device"]

ScoreFn = Callable[[Tensor, Tensor], float]
_GATHER_BYTES = 64 * 2**20  # per-chunk copy of shuffled training rows
_CHUNKS_IN_BUDGET = 4  # a streamed chunk takes a quarter of the budget: room for the next one in flight


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; a device this machine lacks raises
    :class:`RegConfigError` (the one check the estimators and the tuner share)."""
    if str(device) != "auto":
        try:
            resolved = torch.device(device)
        except RuntimeError as exc:
            raise RegConfigError(f"device={device!r} is not a torch device ('auto', 'cpu', 'cuda', 'cuda:1', 'mps')") from exc
        if resolved.type == "cuda" and not torch.cuda.is_available():
            raise RegConfigError(f"device={device!r}: CUDA is not available here; use 'auto' or 'cpu'")
        if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise RegConfigError(f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                                 f"cuda:0 to cuda:{torch.cuda.device_count() - 1}; use one of them or 'auto'")
        if resolved.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise RegConfigError(f"device={device!r}: Apple MPS is not available here; use 'auto' or 'cpu'")
        return resolved
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype ``torch.autocast`` runs the forward pass and the loss in (``None``: float32),
    for Lightning's precision names; refuses what ``device`` cannot do."""
    if precision == "32":
        return None
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    if dtype is None:
        raise RegConfigError(f"precision={precision!r} is not one of '32', 'bf16-mixed', '16-mixed'")
    if device.type == "cpu" and dtype == torch.float16:
        raise RegConfigError("precision='16-mixed' needs a CUDA device (float16 with gradient scaling); "
                             "on CPU use precision='bf16-mixed' or '32'")
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise RegConfigError(f"precision='bf16-mixed': {torch.cuda.get_device_name(device)} has no bfloat16; "
                             "use precision='16-mixed' or '32'")
    if device.type not in ("cpu", "cuda") and not torch.amp.is_autocast_available(device.type):
        raise RegConfigError(f"precision={precision!r}: torch has no autocast on {device.type}; use precision='32'")
    return dtype


def make_optimizer(model: nn.Module, config: RegConfig) -> torch.optim.Optimizer:
    """The optimizer ``config.optimizer`` names, at ``config.lr``.

    ``adamw`` is torch's AdamW with two parameter groups: the Linear and convolution weights
    decay by ``config.weight_decay``, biases and normalization parameters never do (0 = no
    decay, so the no-regularization baseline stays unregularized). The DecoupledWeightDecay
    hook then steps aside, so decay is applied once. ``adam`` with ``weight_decay`` gets the
    same update from that hook, which works with every optimizer; ``adamw`` does it inside
    the fused kernel, without the hook's per-batch copy of the weights.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        decay = decay_parameters(model)
        decay_ids = {id(p) for p in decay}
        groups = [{"params": decay, "weight_decay": config.weight_decay},
                  {"params": [p for p in params if id(p) not in decay_ids], "weight_decay": 0.0}]
        return _fused(torch.optim.AdamW, [g for g in groups if g["params"]], lr=config.lr)
    if config.optimizer == "adam":
        return _fused(torch.optim.Adam, params, lr=config.lr)
    if config.optimizer == "sgd":
        return _fused(torch.optim.SGD, params, lr=config.lr, momentum=0.9, nesterov=True)
    return torch.optim.RMSprop(params, lr=config.lr)


def _fused(cls: type[torch.optim.Optimizer], params: list[Any], **kwargs: Any) -> torch.optim.Optimizer:
    """The fused kernel updates every tensor in one call (on CPU too): the step is the largest
    per-batch cost of small networks. Same update rule; falls back where no kernel exists."""
    try:
        return cls(params, fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):
        return cls(params, **kwargs)


class RngScope:
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

    Batches are index slices of a per-epoch permutation, gathered a chunk of rows at a time.
    Each epoch appends ``{epoch, train_loss, val_loss, val_score, seconds}`` to ``history``
    and calls the callbacks, which may set ``should_stop``. ``val_score`` is ``score_fn``, by
    default the epoch form of the task's default metric (accuracy, R^2).

    ``criterion`` replaces the task's loss (:class:`~regtune.nn.losses.Loss`); ``sample_weight``
    and ``sample_weight_val`` weigh the rows of the training loss and of the validation loss
    and score. ``precision`` ``"bf16-mixed"`` or ``"16-mixed"`` runs the forward pass and the
    loss under ``torch.autocast`` (float16 with a gradient scaler); ``channels_last`` stores
    4-D inputs and convolution weights channels-last on CUDA.

    The model trains on ``device`` (default: where ``X`` is). Data that fit in
    ``memory_budget`` bytes (on CUDA, by default, half the free device memory; elsewhere no
    limit) move there once; larger data stay in host memory and stream: each chunk of
    shuffled rows is gathered on the host, pinned, and copied to the device while the previous
    chunk trains. Same batches, same order, same numbers as in memory.

    ``X`` (and ``X_val``) may also be a :class:`~regtune.data.torch_data.DatasetSource`: the
    rows of a torch Dataset, read one batch of indices at a time through a DataLoader, while
    ``y`` and the weights stay tensors (one per row, indexed by position). Same permutation,
    same batch bounds; each batch is then its own chunk.
    """

    def __init__(
        self,
        build: Callable[[], nn.Module],
        config: RegConfig,
        X: Tensor | DatasetSource,
        y: Tensor,
        X_val: Tensor | DatasetSource | None = None,
        y_val: Tensor | None = None,
        *,
        task: str,
        regularizers: Sequence[Regularizer] = (),
        callbacks: Iterable[Callback] = (),
        score_fn: ScoreFn | None = None,
        seed: int = 0,
        device: torch.device | str | None = None,
        memory_budget: int | None = None,
        sample_weight: Tensor | None = None,
        sample_weight_val: Tensor | None = None,
        criterion: Any = None,
        precision: str = "32",
        channels_last: bool = False,
    ) -> None:
        self.config = config
        self.task = task
        self.device = torch.device(device) if device is not None else X.device
        budget = memory_budget if memory_budget is not None else _default_budget(self.device)
        self.from_dataset = isinstance(X, DatasetSource)
        self.streaming = not self.from_dataset and budget is not None and _nbytes(X, y, X_val, y_val) > budget
        self._chunk_bytes = max(1, budget // _CHUNKS_IN_BUDGET) if self.streaming else _GATHER_BYTES
        place = _to_host if self.streaming else (lambda t: t if isinstance(t, DatasetSource) else t.to(self.device))
        self.X, self.y = place(X), place(y)
        self.X_val, self.y_val = (place(X_val), place(y_val)) if X_val is not None else (X_val, y_val)
        self.w = place(_normalized(sample_weight)) if sample_weight is not None else None
        self.w_val = place(sample_weight_val) if sample_weight_val is not None and X_val is not None else None
        criterion = make_criterion(criterion)
        self.loss = Loss(criterion, config, task)
        self._val_loss = Loss(criterion, config, task, training=False)
        dtype = autocast_dtype(precision, self.device)
        self._autocast = (lambda: torch.autocast(self.device.type, dtype)) if dtype else contextlib.nullcontext
        self._scaler = torch.amp.GradScaler(self.device.type) if dtype == torch.float16 else None
        self._channels_last = channels_last and self.device.type == "cuda" and self.X.dim() == 4
        self.score_fn = score_fn or get_metric(None, task).epoch_fn
        self.callbacks = list(callbacks)
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self.best_epoch: int | None = None
        self.should_stop = False
        self._rng = RngScope(seed, self.device)
        regs = list(regularizers)
        with self._rng:
            self.model = build().to(self.device)
        if self._channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer(self.model, config)
        self._params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self._on_batch = overrides(regs, "on_batch")
        self._before_forward = overrides(regs, "before_forward")
        self._penalty = overrides(regs, "penalty")
        self._after_backward = overrides(regs, "after_backward")
        self._after_step = overrides(regs, "after_step")
        self._plan = self._batch_plan()
        sizes = [b.stop - b.start for _, _, batches in self._plan for b in batches]
        self._batch_sizes = torch.tensor(sizes, dtype=torch.float32, device=self.device)
        schedule = LRSchedule(config.lr_schedule, config.lr, total_steps=len(sizes) * config.max_epochs,
                              warmup_steps=len(sizes) * config.warmup_epochs)
        self._schedule = None if schedule.is_constant else schedule
        self._step = 0  # optimizer steps so far: the schedule's clock
        for cb in self.callbacks:
            cb.on_train_begin(self)

    @property
    def done(self) -> bool:
        return self.should_stop or self.epoch >= self.config.max_epochs

    def step(self) -> dict[str, Any]:
        """Train one epoch, evaluate on the validation split, notify callbacks."""
        start = time.perf_counter()
        with self._rng:
            train_loss = self._train_epoch()
        record: dict[str, Any] = {"epoch": self.epoch, "train_loss": train_loss}
        if self.X_val is not None and len(self.X_val):
            record.update(self.evaluate(self.X_val, self.y_val, self.w_val))
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
        model, opt, X, params, scaler = self.model, self.optimizer, self.X, self._params, self._scaler
        loss_fn, autocast, channels_last = self.loss, self._autocast, self._channels_last
        on_batch, before_forward, penalty = self._on_batch, self._before_forward, self._penalty
        after_backward, after_step = self._after_backward, self._after_step
        model.train()
        lr, schedule, groups = opt.param_groups[0]["lr"], self._schedule, opt.param_groups
        order = torch.randperm(len(X), device=self.device)  # drawn where the model is: same RNG stream
        losses: list[Tensor] = []
        for (X_chunk, y_chunk, w_chunk), batches in self._chunks(order):
            for batch in batches:
                xb, yb, wb = X_chunk[batch], y_chunk[batch], None if w_chunk is None else w_chunk[batch]
                for reg in on_batch:
                    xb, yb = reg.on_batch(xb, yb)
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                for reg in before_forward:
                    reg.before_forward(model)
                with autocast():
                    loss = loss_fn(model(xb), yb, wb)
                losses.append(loss.detach())
                for reg in penalty:
                    loss = loss + reg.penalty(model)
                for p in params:  # zero_grad(set_to_none=True) without its ~10 us of profiler wrapping
                    p.grad = None
                if scaler is None:
                    loss.backward()
                else:  # float16: scaled so small gradients survive, unscaled before any hook reads them
                    scaler.scale(loss).backward()
                    scaler.unscale_(opt)
                for reg in after_backward:
                    reg.after_backward(model)
                if schedule is not None:
                    lr = schedule(self._step)
                    for group in groups:
                        group["lr"] = lr
                    self._step += 1
                if scaler is None:
                    opt.step()
                else:
                    scaler.step(opt)
                    scaler.update()
                for reg in after_step:
                    reg.after_step(model, lr)
        # One device sync per epoch: the batch losses are summed only here.
        return float(torch.stack(losses).float() @ self._batch_sizes / len(X))  # a loss may be half precision

    def _chunks(self, order: Tensor) -> Iterable[tuple[tuple[Tensor, Tensor, Tensor | None], list[slice]]]:
        """Each chunk of shuffled rows with its batches; one gather per chunk, each batch is then
        a free view of it. Streamed chunks are fetched one ahead, so the host gathers the next
        while the device trains on this one. A dataset's batches come one per chunk."""
        if self.from_dataset:
            inputs = self.X.batches(order, [(start, stop) for start, stop, _ in self._plan])
            for (start, stop, batches), xb in zip(self._plan, inputs, strict=True):
                rows = order[start:stop]
                yield (xb, self.y[rows], None if self.w is None else self.w[rows]), batches
            return
        if not self.streaming:
            for start, stop, batches in self._plan:
                rows = order[start:stop]
                yield (self.X[rows], self.y[rows], None if self.w is None else self.w[rows]), batches
            return
        order = order.cpu()
        plan = iter(self._plan)
        start, stop, batches = next(plan)
        ahead = self._fetch(order[start:stop])
        for start, stop, next_batches in plan:
            current, ahead = ahead, self._fetch(order[start:stop])
            yield current, batches
            batches = next_batches
        yield ahead, batches

    def _fetch(self, rows: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        X, y, w = self.X[rows], self.y[rows], None if self.w is None else self.w[rows]
        if self.device.type != "cuda":
            return X.to(self.device), y.to(self.device), None if w is None else w.to(self.device)
        # Pinned (page-locked) copies go to the GPU asynchronously; torch's caching host
        # allocator keeps a pinned block until its copy is done.
        pinned = [None if t is None else t.pin_memory().to(self.device, non_blocking=True) for t in (X, y, w)]
        return pinned[0], pinned[1], pinned[2]

    def _batch_plan(self) -> list[tuple[int, int, list[slice]]]:
        """Batch bounds, fixed for the whole run, grouped into gather chunks of bounded size."""
        n = len(self.X)
        bs = min(self.config.batch_size, n)
        # A last batch of one sample breaks batch norm; fold it into the previous batch.
        stops = list(range(bs, n, bs))
        if stops and n - stops[-1] == 1 and self.config.batch_norm != "none":
            stops[-1] = n
        else:
            stops.append(n)
        if self.from_dataset:
            starts = [0, *stops[:-1]]
            return [(start, stop, [slice(0, stop - start)]) for start, stop in zip(starts, stops, strict=True)]
        row_bytes = max(1, self.X[:1].nelement() * self.X.element_size())
        chunk_rows = max(bs, self._chunk_bytes // row_bytes)
        plan: list[tuple[int, int, list[slice]]] = []
        chunk_start, batches, begin = 0, [], 0
        for end in stops:
            if batches and end - chunk_start > chunk_rows:
                plan.append((chunk_start, begin, batches))
                chunk_start, batches = begin, []
            batches.append(slice(begin - chunk_start, end - chunk_start))
            begin = end
        plan.append((chunk_start, n, batches))
        return plan

    @torch.no_grad()
    def evaluate(self, X: Tensor, y: Tensor, weight: Tensor | None = None) -> dict[str, float]:
        """Validation loss and score in float32; weighted by ``weight`` (one per row) if given."""
        output = predict_batches(self.model, X, device=self.device)
        y = y.to(output.device)
        if weight is None:
            return {"val_loss": float(self._val_loss(output, y)), "val_score": float(self.score_fn(output, y))}
        weight = weight.to(output.device)
        loss = self._val_loss(output, y, _normalized(weight))
        return {"val_loss": float(loss), "val_score": float(self.score_fn(output, y, weight))}


def _normalized(weight: Tensor) -> Tensor:
    """Weights scaled to mean 1, so a loss keeps its scale (and the learning rate its meaning)
    whatever units the weights come in."""
    weight = weight.to(torch.float32)
    return weight / weight.mean()


def _nbytes(*tensors: Tensor | None) -> int:
    return sum(t.nelement() * t.element_size() for t in tensors if t is not None)


def _default_budget(device: torch.device) -> int | None:
    """Half the free memory of a CUDA device (the rest: model, gradients, activations)."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return free // 2


def _to_host(tensor: Tensor) -> Tensor:
    return tensor.cpu()


@torch.no_grad()
def predict_batches(
    model: nn.Module, X: Tensor | DatasetSource, batch_size: int = 4096, device: torch.device | None = None
) -> Tensor:
    """Eval-mode forward pass in chunks (deterministic: dropout and noise are off); with
    ``device``, each chunk of ``X`` moves there first (data streamed from host memory). A
    dataset source is read a batch at a time; only the outputs are gathered."""
    model.eval()
    if isinstance(X, DatasetSource):
        return torch.cat([model(xb) for xb in X.inputs()])
    move = (lambda t: t) if device is None or X.device == device else (lambda t: t.to(device, non_blocking=True))
    if X.shape[0] <= batch_size:
        return model(move(X))
    return torch.cat([model(move(X[i : i + batch_size])) for i in range(0, X.shape[0], batch_size)])


def predict_exact(model: nn.Module, X: Tensor | DatasetSource) -> Tensor:
    """Eval-mode forward pass in float64: each row's output is independent of the batch it is in.

    float32 matrix products are summed in an order that depends on the batch size on some CPUs
    (seen on AMD EPYC: 1.8e-7 apart), so predicting a subset would not give the same numbers.
    In float64 the difference falls far below any tolerance; the round trip float32 -> float64
    -> float32 of the weights is exact. MPS has no float64 and keeps float32.
    """
    if X.device.type == "mps":
        return predict_batches(model, X)
    model.double()
    try:
        return predict_batches(model, X.as_dtype(torch.float64) if isinstance(X, DatasetSource) else X.double())
    finally:
        model.float()
