"""Cohorts: K trials of one structure trained as one batched network (``--cohort K``).

Small networks leave a CPU core or a GPU mostly idle between tiny kernels; K of them in one
batched network do K times the work per kernel launch and per Python step. Members share the
structure (every :class:`~regtune.config.RegConfig` field but :func:`member_fields`, which the
regularizer table derives) and differ in the rest: learning rate, penalties, decay, noise,
mixing, augmentation, max-norm, label smoothing, patience. Their parameters are stacked
(:func:`torch.func.stack_module_state`) and one ``vmap``-ed forward and backward trains all K.

Each member is the same trial as when trained alone by :class:`~regtune.nn.trainer.Trainer`:
its initial weights and batch order (its own seed and RNG stream), its own optimizer state,
learning-rate schedule, history and callbacks. Its regularizers run as the Trainer runs them,
hook by hook and in the same order, on the member's slice of the batch: random ones
(augmentation, mixing, input / weight / gradient noise, dropout masks) draw from the member's
own stream, outside the ``vmap``, the numbers its solo run draws; weight hooks (L1's
orthant-wise step, max-norm, spectral norm) act on a module whose tensors are views of the
member's slice of the stacked ones. Only L2, decoupled decay and the optimizers (Adam, AdamW,
SGD with Nesterov momentum, RMSprop: torch.optim's update rules) are vectorized over members.
Batch norm keeps running statistics per member (stacked buffers). A member that stops,
diverges or is pruned leaves the batch (:meth:`CohortTrainer.drop`); the others train on.

What a cohort cannot replay it refuses (:func:`cohort_problem`); such a trial trains alone. The
tuner trains a user's module (``--model``) alone.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from regtune.config import RegConfig
from regtune.exceptions import DivergenceError
from regtune.metrics import get_metric
from regtune.nn.regularizers import (
    DecoupledWeightDecay,
    ElasticNetPenalty,
    GaussianDropout,
    Regularizer,
    decay_parameters,
    overrides,
)
from regtune.nn.schedules import LRSchedule
from regtune.nn.trainer import RngScope
from regtune.regularizer_table import REGULARIZERS

__all__ = ["CohortMember", "CohortTrainer", "cohort_problem", "member_fields", "member_regularizers", "shared_fields"]

_MEMBER_SETTINGS = ("lr",)  # per-member numbers outside the regularizer table
_OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")  # update rules CohortTrainer._optimizer_step has
_BETAS, _EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, which the Trainer uses
_MOMENTUM, _RMS_ALPHA = 0.9, 0.99  # make_optimizer's SGD momentum; torch.optim.RMSprop's default
# The Trainer arguments a cohort replays; any other one (set) makes it refuse the members.
_REPLAYED_ARGUMENTS = frozenset({"build", "config", "X", "y", "X_val", "y_val", "task", "regularizers", "callbacks",
                                 "score_fn", "seed"})

# Trainer arguments whose default a cohort trains exactly as alone: float32, no channels_last.
_AS_ALONE = {"precision": "32", "channels_last": False}


def member_regularizers() -> tuple[str, ...]:
    """The regularizers whose settings may differ between members (``cohort="member"`` in
    :data:`~regtune.regularizer_table.REGULARIZERS`)."""
    return tuple(spec.name for spec in REGULARIZERS if spec.cohort == "member")


def member_fields() -> tuple[str, ...]:
    """The RegConfig fields members may differ in: the learning rate and the fields of
    :func:`member_regularizers`."""
    return _MEMBER_SETTINGS + tuple(f for spec in REGULARIZERS if spec.cohort == "member" for f in spec.fields)


def shared_fields() -> tuple[str, ...]:
    """The RegConfig fields every member of a cohort must share: they shape the network, the
    batches or the schedule's clock."""
    varying = member_fields()
    return tuple(f.name for f in dataclasses.fields(RegConfig) if f.compare and f.name not in varying)


def cohort_problem(config: RegConfig) -> str | None:
    """Why ``config`` cannot train in a cohort, or ``None`` if it can (it then trains as alone)."""
    if config.tabm > 1:
        return f"tabm={config.tabm} (cohorts batch plain MLPs, tabm=1; an ensemble is batched already)"
    if config.optimizer not in _OPTIMIZERS:
        return f"optimizer={config.optimizer!r} (cohorts train {', '.join(_OPTIMIZERS)})"
    replayed = [spec.name for spec in REGULARIZERS if spec.cohort is not None]
    other = [spec.name for spec in REGULARIZERS if spec.cohort is None and spec.is_on(config)]
    if other:
        return f"regularizers {', '.join(other)} (cohorts train {', '.join(replayed)})"
    return None


class CohortMember:
    """One member as the :class:`~regtune.nn.callbacks.TrainerState` its callbacks see, and as
    the finished trainer an estimator adopts (``history``, ``epoch``, ``best_epoch``, ``model``,
    ``finish()``). ``error`` holds a :class:`~regtune.exceptions.DivergenceError` when its loss
    stopped being finite."""

    def __init__(self, cohort: CohortTrainer, config: RegConfig, model: nn.Module, callbacks: Sequence[Any]) -> None:
        self.config = config
        self.callbacks = list(callbacks)
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self.best_epoch: int | None = None
        self.should_stop = False
        self.left = False  # out of the batch: its weights live in its own module from then on
        self.error: DivergenceError | None = None
        self._cohort = cohort
        self._model = model

    @property
    def model(self) -> nn.Module:
        if not self.left:
            self._cohort.sync(self)
        return self._model

    @property
    def done(self) -> bool:
        return self.left or self.should_stop or self.epoch >= self.config.max_epochs

    def finish(self) -> nn.Module:
        """End training as :meth:`Trainer.finish` does (early stopping restores its best weights)."""
        model = self.model
        self._cohort.drop(self)
        for cb in self.callbacks:
            cb.on_train_end(self)
        if self.best_epoch is None and self.history:
            self.best_epoch = self.history[-1]["epoch"]
        return model.eval()


class _Hooks:
    """One member's regularizer hooks, as its Trainer would call them, less what the cohort
    vectorizes: L2 (``l2``, the coefficient of ``sum w^2`` in its loss) and decoupled decay."""

    def __init__(self, regularizers: Sequence[Regularizer]) -> None:
        regs = [r for r in regularizers if not isinstance(r, DecoupledWeightDecay)]
        self.l2 = sum(r.strength * (1 - r.l1_ratio) / 2 for r in regs if isinstance(r, ElasticNetPenalty))
        unknown = [r for r in overrides(regs, "penalty") if not isinstance(r, ElasticNetPenalty)]
        if unknown:
            raise ValueError(f"a cohort cannot add the penalty of {unknown[0]!r}; train this configuration alone")
        regs = [r for r in regs if not (isinstance(r, ElasticNetPenalty) and r.l1_ratio == 0)]  # L2 only
        self.on_batch = overrides(regs, "on_batch")
        self.before_forward = overrides(regs, "before_forward")
        self.after_backward = overrides(regs, "after_backward")
        self.after_step = overrides(regs, "after_step")


class _Noise(nn.Module):
    """Dropout with its draw taken outside the ``vmap``: ``x * scale (+ shift)``, per member."""

    def __init__(self, shift: bool) -> None:
        super().__init__()
        self.register_buffer("scale", torch.empty(0))
        self.register_buffer("shift", torch.empty(0) if shift else None)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale if self.shift is None else x * self.scale + self.shift


_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, GaussianDropout)
_ALPHA = 1.7580993408473766  # ATen's alpha dropout constant (SELU's -scale * alpha)


def _dropout_draw(module: nn.Module, shape: torch.Size, device: torch.device) -> tuple[Tensor, Tensor | None]:
    """The multiplier (and, for alpha dropout, the shift) ``module`` applies to an input of
    ``shape`` in training: the module itself runs on ones, so it draws the numbers, in the
    order and with the kernel, that it draws in the member's own forward pass."""
    out = module(torch.ones(shape, device=device))
    if not isinstance(module, nn.AlphaDropout):
        return out, None
    p = module.p
    a = 1 / math.sqrt((_ALPHA**2 * p + 1) * (1 - p))
    kept = (out > _ALPHA * a * p + (a - _ALPHA * a) / 2).to(out.dtype)  # ones: a + aap kept, aap - aa dropped
    return kept * a, (kept - 1) * _ALPHA * a + _ALPHA * a * p


class CohortTrainer:
    """Train the members described by ``members`` (each the keyword arguments of a
    :class:`~regtune.nn.trainer.Trainer`, e.g. ``estimator.trainer_arguments(...)``) in lockstep.

    ``step()`` runs one epoch of every member still in the batch; ``members[k]`` is member k.
    All members train on the same rows (``X``, ``y``, validation) in their own order.
    """

    def __init__(self, members: Sequence[Mapping[str, Any]]) -> None:
        if not members:
            raise ValueError("a cohort needs at least one member")
        configs = [m["config"] for m in members]
        _check_cohort(configs)
        other = {key for m in members for key, value in m.items()
                 if key not in _REPLAYED_ARGUMENTS and value is not None and value != _AS_ALONE.get(key)}
        if other:  # a Trainer argument the cohort does not replay (it would train another network)
            raise ValueError(f"a cohort cannot train with {', '.join(sorted(other))}; train these members alone")
        first = members[0]
        self.X, self.y, self.X_val, self.y_val = first["X"], first["y"], first.get("X_val"), first.get("y_val")
        self.task = first["task"]
        self.device = self.X.device
        self.optimizer = configs[0].optimizer
        self.score_fns = [m.get("score_fn") or get_metric(None, self.task).epoch_fn for m in members]
        self._hooks = [_Hooks(m.get("regularizers", ())) for m in members]
        self._rng = [RngScope(m.get("seed", 0), self.device) for m in members]
        models = []
        for m, rng in zip(members, self._rng, strict=True):
            with rng:  # the member's stream, as the Trainer seeds and builds it
                models.append(m["build"]().to(self.device))
        self.members = [CohortMember(self, c, copy.deepcopy(model).train(), m.get("callbacks", ()))
                        for c, model, m in zip(configs, models, members, strict=True)]
        self._active = list(range(len(members)))  # member index of each row of the stacked tensors
        decay_ids = {id(p) for p in decay_parameters(models[0])}
        self._decay = {name for name, p in models[0].named_parameters() if id(p) in decay_ids}
        self._names = [name for name, p in models[0].named_parameters() if p.requires_grad]
        params, self.buffers = stack_module_state(models)
        self.params = {name: params[name] for name in self._names}
        self._eval_base = copy.deepcopy(models[0]).to("meta").eval()
        self._base = copy.deepcopy(models[0]).to("meta").train()
        self._dropouts = [name for name, m in self._base.named_modules() if isinstance(m, _DROPOUTS)]
        for name in self._dropouts:  # dropout draws per member, outside the vmap
            parent, _, leaf = name.rpartition(".")
            shift = isinstance(self._base.get_submodule(name), nn.AlphaDropout)
            setattr(self._base.get_submodule(parent) if parent else self._base, leaf, _Noise(shift).to("meta"))
        self._views: dict[int, tuple[nn.Module, list[tuple[str, nn.Parameter]]]] = {}
        self._m = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self._v = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self._vec = {field: torch.tensor([float(getattr(c, field)) for c in configs], device=self.device)
                     for field in ("lr", "weight_decay", "label_smoothing")}
        self._vec["l2"] = torch.tensor([h.l2 for h in self._hooks], device=self.device)
        self._lrs = [c.lr for c in configs]  # each member's current rate, as its after-step hooks see it
        self._bounds = _batch_bounds(self.X.shape[0], configs[0])
        self._sizes = torch.tensor([b - a for a, b in self._bounds], dtype=torch.float32, device=self.device)
        self._shapes = self._dropout_shapes(models[0])
        schedules = [LRSchedule(c.lr_schedule, c.lr, total_steps=len(self._bounds) * c.max_epochs,
                                warmup_steps=len(self._bounds) * c.warmup_epochs) for c in configs]
        self._schedules = None if schedules[0].is_constant else schedules
        self._step = 0  # optimizer steps so far: every member's schedule clock
        self._t = 0

        def forward(params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(self._base, (params, buffers), (x,))

        def evaluate(params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(self._eval_base, (params, buffers), (x,))

        self._forward, self._forward_eval = vmap(forward), vmap(evaluate)
        self._mse = vmap(F.mse_loss)
        for member in self.members:
            for cb in member.callbacks:
                cb.on_train_begin(member)

    @property
    def done(self) -> bool:
        return all(m.done for m in self.members)

    def step(self) -> list[dict[str, Any] | None]:
        """One epoch of every member in the batch; its record (``None`` for those out of it).

        A member whose loss is no longer finite gets its record, its ``error`` and leaves."""
        for m in [self.members[k] for k in self._active if self.members[k].done]:
            self.drop(m)
        if not self._active:
            return [None] * len(self.members)
        start = time.perf_counter()
        totals = self._train_epoch()
        val = self._evaluate()
        seconds = (time.perf_counter() - start) / len(self._active)
        records: list[dict[str, Any] | None] = [None] * len(self.members)
        for row, k in enumerate(list(self._active)):
            member = self.members[k]
            record = {"epoch": member.epoch, "train_loss": float(totals[row] / self.X.shape[0]),
                      **(val[row] if val else {}), "seconds": seconds}
            member.history.append(record)
            member.epoch += 1
            records[k] = record
            if not math.isfinite(record["train_loss"]):
                member.error = DivergenceError(record["epoch"], record["train_loss"])
                self.drop(member)
                continue
            for cb in member.callbacks:
                cb.on_epoch_end(member)
        return records

    def _dropout_shapes(self, model: nn.Module) -> dict[int, list[tuple[str, torch.Size]]]:
        """Per batch size: each dropout module the forward pass calls, in call order, with its
        input's shape (an eval-mode pass, which draws nothing)."""
        if not self._dropouts:
            return {}
        probe = copy.deepcopy(model).eval()
        calls: list[tuple[str, torch.Size]] = []
        for name in self._dropouts:
            probe.get_submodule(name).register_forward_pre_hook(
                lambda _, args, name=name: calls.append((name, args[0].shape)))
        shapes = {}
        with torch.no_grad():
            for size in {b - a for a, b in self._bounds}:
                calls.clear()
                probe(self.X[:size])
                shapes[size] = list(calls)
        return shapes

    def _orders(self) -> Tensor:
        """Each member's permutation of the rows, drawn from its own stream."""
        orders = []
        for k in self._active:
            with self._rng[k]:
                orders.append(torch.randperm(self.X.shape[0], device=self.device))
        return torch.stack(orders)

    def _views_of(self, field: str, names: Any) -> dict[str, Tensor]:
        """A per-member value shaped to broadcast over each stacked parameter."""
        return {name: self._vec[field].view(-1, *([1] * (self.params[name].dim() - 1))) for name in names}

    def _view(self, row: int) -> nn.Module:
        """The member in ``row`` as its own module, whose parameters, gradients and buffers are
        views of its slice of the stacked tensors: its hooks act on it as on a solo network."""
        if row not in self._views:
            model = copy.deepcopy(self.members[self._active[row]]._model)
            params = []
            for name, tensor in self.params.items():
                parent, _, leaf = name.rpartition(".")
                param = nn.Parameter(tensor.detach()[row])
                model.get_submodule(parent)._parameters[leaf] = param
                params.append((name, param))
            for name, tensor in self.buffers.items():
                parent, _, leaf = name.rpartition(".")
                model.get_submodule(parent)._buffers[leaf] = tensor[row]
            self._views[row] = (model.train(), params)
        model, params = self._views[row]
        for name, param in params:
            grad = self.params[name].grad
            param.grad = None if grad is None else grad[row]
        return model

    def _draw(self, xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Each member's batch through its data hooks, its weight noise and its dropout masks,
        drawn from its own stream in the order its Trainer draws them."""
        shapes = self._shapes.get(xb.shape[1], [])
        if not shapes and not any(self._hooks[k].on_batch or self._hooks[k].before_forward for k in self._active):
            return xb, yb, {}
        xs, ys, draws = [], [], []
        for row, k in enumerate(self._active):
            hooks, x, y = self._hooks[k], xb[row], yb[row]
            own = self.members[k]._model  # in training mode while in the batch: its dropout draws
            with self._rng[k]:
                for reg in hooks.on_batch:
                    x, y = reg.on_batch(x, y)
                if hooks.before_forward:
                    view = self._view(row)
                    for reg in hooks.before_forward:
                        reg.before_forward(view)
                draws.append([_dropout_draw(own.get_submodule(name), shape, self.device) for name, shape in shapes])
            xs.append(x)
            ys.append(y)
        if self.task == "classification" and any(y.is_floating_point() for y in ys):  # mixed targets
            n_classes = next(y.shape[-1] for y in ys if y.is_floating_point())
            ys = [y if y.is_floating_point() else F.one_hot(y, n_classes).float() for y in ys]
        noise: dict[str, Tensor] = {}
        for i, (name, _) in enumerate(shapes):
            noise[f"{name}.scale"] = torch.stack([d[i][0] for d in draws])
            if draws[0][i][1] is not None:
                noise[f"{name}.shift"] = torch.stack([d[i][1] for d in draws])
        return torch.stack(xs), torch.stack(ys), noise

    def _train_epoch(self) -> Tensor:
        orders = self._orders()
        smoothing = self._vec["label_smoothing"].view(-1, 1)
        lr, wd = self._views_of("lr", self.params), self._views_of("weight_decay", self._decay)
        l2 = bool(self._decay) and any(self._hooks[k].l2 for k in self._active)
        wd = wd if any(self.members[k].config.weight_decay for k in self._active) else {}
        losses = []
        for start, stop in self._bounds:
            rows = orders[:, start:stop]
            xb, yb, noise = self._draw(self.X[rows], self.y[rows])  # (K, B, ...), (K, B, ...)
            out = self._forward(self.params, {**self.buffers, **noise} if noise else self.buffers, xb)
            if self.task == "classification":
                # F.cross_entropy with each member's label smoothing, for all members at once.
                logp = out.log_softmax(-1)
                if yb.is_floating_point():  # class probabilities (mixup, cutmix)
                    target = (1 - smoothing.unsqueeze(-1)) * yb + smoothing.unsqueeze(-1) / logp.shape[-1]
                    loss = -(target * logp).sum(-1).mean(1)
                else:
                    nll = -logp.gather(-1, yb.unsqueeze(-1)).squeeze(-1)
                    loss = ((1 - smoothing) * nll + smoothing * -logp.mean(-1)).mean(1)
            else:
                loss = self._mse(out, yb)
            losses.append(loss.detach())
            total = loss.sum()
            if l2:  # some member has an L2 term
                total = total + sum((self._vec["l2"] * self.params[n].pow(2).flatten(1).sum(1)).sum() for n in self._decay)
            for p in self.params.values():
                p.grad = None
            total.backward()
            self._after_backward()
            if self._schedules is not None:
                self._lrs = [self._schedules[k](self._step) for k in self._active]
                self._vec["lr"] = torch.tensor(self._lrs, device=self.device)
                lr = self._views_of("lr", self.params)
                self._step += 1
            self._optimizer_step(lr, wd)
            self._after_step()
        return self._sizes @ torch.stack(losses)

    def _after_backward(self) -> None:
        for row, k in enumerate(self._active):
            if self._hooks[k].after_backward:
                view = self._view(row)
                with self._rng[k]:
                    for reg in self._hooks[k].after_backward:
                        reg.after_backward(view)

    def _after_step(self) -> None:
        for row, k in enumerate(self._active):
            if self._hooks[k].after_step:
                view = self._view(row)
                for reg in self._hooks[k].after_step:
                    reg.after_step(view, self._lrs[row])

    @torch.no_grad()
    def _optimizer_step(self, lr: dict[str, Tensor], wd: dict[str, Tensor]) -> None:
        """torch.optim's update of the members' optimizer (decoupled decay first), each member
        at its own rate. Members share the step count: those in the batch took every step."""
        self._t += 1
        for name in wd:
            self.params[name].mul_(1 - lr[name] * wd[name])
        names = list(self.params)
        ps, gs = [self.params[n] for n in names], [self.params[n].grad for n in names]
        ms, vs, rates = [self._m[n] for n in names], [self._v[n] for n in names], [lr[n] for n in names]
        # torch.optim's multi-tensor ("foreach") kernels: one call per operation for all tensors.
        if self.optimizer in ("adam", "adamw"):
            b1, b2 = _BETAS
            c1, c2 = 1 - b1**self._t, math.sqrt(1 - b2**self._t)
            torch._foreach_lerp_(ms, gs, 1 - b1)
            torch._foreach_mul_(vs, b2)
            torch._foreach_addcmul_(vs, gs, gs, value=1 - b2)
            denom = torch._foreach_sqrt(vs)
            torch._foreach_div_(denom, c2)
            torch._foreach_add_(denom, _EPS)
            step = torch._foreach_div(ms, denom)
            torch._foreach_mul_(step, [r / c1 for r in rates])
        elif self.optimizer == "sgd":  # momentum 0.9, Nesterov, as make_optimizer builds it
            if self._t == 1:
                torch._foreach_copy_(ms, gs)
            else:
                torch._foreach_mul_(ms, _MOMENTUM)
                torch._foreach_add_(ms, gs)
            step = torch._foreach_add(gs, ms, alpha=_MOMENTUM)
            torch._foreach_mul_(step, rates)
        else:  # RMSprop, torch's defaults
            torch._foreach_mul_(vs, _RMS_ALPHA)
            torch._foreach_addcmul_(vs, gs, gs, value=1 - _RMS_ALPHA)
            denom = torch._foreach_sqrt(vs)
            torch._foreach_add_(denom, _EPS)
            step = torch._foreach_div(gs, denom)
            torch._foreach_mul_(step, rates)
        torch._foreach_sub_(ps, step)

    @torch.no_grad()
    def _evaluate(self) -> list[dict[str, float]] | None:
        if self.X_val is None or not len(self.X_val):
            return None
        K = len(self._active)
        out = self._forward_eval(self.params, self.buffers, self.X_val.expand(K, *self.X_val.shape))
        records = []
        for row, k in enumerate(self._active):
            loss = F.cross_entropy(out[row], self.y_val) if self.task == "classification" else F.mse_loss(out[row],
                                                                                                          self.y_val)
            records.append({"val_loss": float(loss), "val_score": float(self.score_fns[k](out[row], self.y_val))})
        return records

    @torch.no_grad()
    def sync(self, member: CohortMember) -> None:
        """Copy ``member``'s current weights from the batch into its own module."""
        row = self._active.index(self.members.index(member))
        state = {name: t[row] for name, t in {**self.params, **self.buffers}.items()}
        member._model.load_state_dict(state, strict=False)

    def drop(self, member: CohortMember) -> None:
        """Take ``member`` out of the batch (stopped, pruned, diverged): the rest train faster."""
        if member.left:
            return
        self.sync(member)
        member.left = True
        row = self._active.index(self.members.index(member))
        keep = [r for r in range(len(self._active)) if r != row]
        self._active.pop(row)
        self._lrs.pop(row)
        self._views = {}
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        with torch.no_grad():
            self.params = {n: p.detach().index_select(0, index).requires_grad_() for n, p in self.params.items()}
            self.buffers = {n: b.index_select(0, index) for n, b in self.buffers.items()}
            self._m = {n: t.index_select(0, index) for n, t in self._m.items()}
            self._v = {n: t.index_select(0, index) for n, t in self._v.items()}
            self._vec = {f: t.index_select(0, index) for f, t in self._vec.items()}


def _batch_bounds(n: int, config: RegConfig) -> list[tuple[int, int]]:
    """The Trainer's batches: a last batch of one sample folds into the previous with batch norm."""
    bs = min(config.batch_size, n)
    stops = list(range(bs, n, bs))
    if stops and n - stops[-1] == 1 and config.batch_norm != "none":
        stops[-1] = n
    else:
        stops.append(n)
    return list(zip([0, *stops[:-1]], stops, strict=True))


def _check_cohort(configs: Sequence[RegConfig]) -> None:
    first = configs[0]
    for config in configs[1:]:
        differ = [f for f in shared_fields() if getattr(config, f) != getattr(first, f)]
        if differ:
            raise ValueError(f"cohort members must share {', '.join(differ)}; they differ")
    for config in configs:
        problem = cohort_problem(config)
        if problem is not None:
            raise ValueError(f"a cohort cannot train {problem}; train this configuration alone")
