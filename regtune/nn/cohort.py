"""Cohorts: K trials of one structure trained as one batched network (prototype, issue 13).

Small networks leave a CPU core or a GPU mostly idle between tiny kernels; K of them in one
batched network do K times the work per kernel launch and per Python step. Members share the
structure (widths, depth, activation, batch size, epochs, optimizer) and differ in continuous
hyperparameters (``lr``, ``weight_decay``, ``l2``, ``label_smoothing``). Their parameters are
stacked (:func:`torch.func.stack_module_state`) and one ``vmap``-ed forward and backward
trains all K. Each member keeps what makes it the same trial as when trained alone by
:class:`~regtune.nn.trainer.Trainer`: its initial weights and batch order (its own seed and
RNG stream), its own Adam state and hyperparameters, its own history.

Prototype limits: deterministic regularizers only (dropout and noise draw from one RNG under
``vmap``, so they cannot replay a solo trial's stream), no batch norm (running statistics are
buffers updated in place), Adam/AdamW, every member runs every epoch (no pruning, no early
stopping). See the design note in the issue 13 report for what the tuner side needs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from regtune.config import RegConfig
from regtune.nn.regularizers import decay_parameters

__all__ = ["SHARED_FIELDS", "CohortTrainer"]

# What members must share: it shapes the network or the batches.
SHARED_FIELDS = ("architecture", "hidden_layer_sizes", "activation", "batch_size", "max_epochs", "optimizer",
                 "batch_norm")
_VARYING = ("lr", "weight_decay", "l2", "label_smoothing")
_BETAS, _EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, which the Trainer uses


class CohortTrainer:
    """Train ``len(configs)`` members of one structure in lockstep; ``step()`` runs an epoch of all.

    ``history[k]`` is member k's list of ``{epoch, train_loss, val_loss, val_score}`` records.
    """

    def __init__(self, build: Callable[[RegConfig], nn.Module], configs: Sequence[RegConfig], X: Tensor, y: Tensor,
                 X_val: Tensor, y_val: Tensor, *, seeds: Sequence[int]) -> None:
        _check_cohort(configs)
        self.configs, self.X, self.y, self.X_val, self.y_val = list(configs), X, y, X_val, y_val
        self.device = X.device
        self.history: list[list[dict[str, Any]]] = [[] for _ in configs]
        self.epoch = 0
        self._rng: list[torch.Tensor] = []
        models = []
        for config, seed in zip(configs, seeds, strict=True):
            with torch.random.fork_rng(devices=[]):  # the member's stream, as the Trainer seeds it
                torch.manual_seed(seed)
                models.append(build(config).to(self.device))
                self._rng.append(torch.get_rng_state())
        decay = {name for name, p in models[0].named_parameters()
                 if any(p is q for q in decay_parameters(models[0]))}
        self._decay = decay
        self.params, self.buffers = stack_module_state(models)
        self._base = copy.deepcopy(models[0]).to("meta")
        K = len(configs)

        def per_member(name: str) -> Callable[[str], Tensor]:
            return lambda field: torch.tensor([float(getattr(c, field)) for c in configs],
                                              device=self.device).view(K, *([1] * (self.params[name].dim() - 1)))

        self._lr = {name: per_member(name)("lr") for name in self.params}
        # AdamW decays weights, never biases; Adam plus a decay hook does the same (DecoupledWeightDecay).
        self._wd = {name: per_member(name)("weight_decay") if name in decay else None for name in self.params}
        self._l2 = torch.tensor([c.l2 for c in configs], device=self.device)
        self._smoothing = torch.tensor([c.label_smoothing for c in configs], device=self.device).view(-1, 1)
        self._m = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self._v = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self._t = 0
        n, bs = X.shape[0], min(configs[0].batch_size, X.shape[0])
        self._bounds = [(a, min(a + bs, n)) for a in range(0, n, bs)]

        def forward(params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(self._base, (params, buffers), (x,))

        self._forward = vmap(forward)

    @property
    def done(self) -> bool:
        return self.epoch >= self.configs[0].max_epochs

    def _orders(self) -> Tensor:
        """Each member's permutation of the rows, drawn from its own stream."""
        orders = []
        for k, state in enumerate(self._rng):
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(state)
                orders.append(torch.randperm(self.X.shape[0], device=self.device))
                self._rng[k] = torch.get_rng_state()
        return torch.stack(orders)

    def step(self) -> list[dict[str, Any]]:
        orders, K, n = self._orders(), len(self.configs), self.X.shape[0]
        totals = torch.zeros(K, device=self.device)
        for start, stop in self._bounds:
            rows = orders[:, start:stop]
            xb, yb = self.X[rows], self.y[rows]  # (K, B, features), (K, B)
            logp = self._forward(self.params, self.buffers, xb).log_softmax(-1)
            # F.cross_entropy with each member's label smoothing, for all members at once.
            nll = -logp.gather(-1, yb.unsqueeze(-1)).squeeze(-1)
            losses = ((1 - self._smoothing) * nll + self._smoothing * -logp.mean(-1)).mean(1)
            totals += losses.detach() * (stop - start)
            penalty = sum((self._l2 / 2 * self.params[name].pow(2).flatten(1).sum(1)) for name in self._decay)
            for p in self.params.values():
                p.grad = None
            (losses.sum() + penalty.sum()).backward()
            self._adam_step()
        records = []
        val = self._evaluate()
        for k in range(K):
            record = {"epoch": self.epoch, "train_loss": float(totals[k] / n), **val[k]}
            self.history[k].append(record)
            records.append(record)
        self.epoch += 1
        return records

    @torch.no_grad()
    def _adam_step(self) -> None:
        """torch.optim.Adam's update (AdamW's decoupled decay first), with each member's lr."""
        self._t += 1
        b1, b2 = _BETAS
        c1, c2 = 1 - b1**self._t, math.sqrt(1 - b2**self._t)
        for name, p in self.params.items():
            g, m, v, lr = p.grad, self._m[name], self._v[name], self._lr[name]
            if self._wd[name] is not None:
                p.mul_(1 - lr * self._wd[name])
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.sub_(lr / c1 * m / (v.sqrt() / c2 + _EPS))

    @torch.no_grad()
    def _evaluate(self) -> list[dict[str, float]]:
        K = len(self.configs)
        out = self._forward(self.params, self.buffers, self.X_val.expand(K, *self.X_val.shape))
        return [{"val_loss": float(F.cross_entropy(out[k], self.y_val)),
                 "val_score": float((out[k].argmax(1) == self.y_val).float().mean())} for k in range(K)]

    def member(self, k: int, build: Callable[[RegConfig], nn.Module]) -> nn.Module:
        """Member ``k`` as an ordinary module (eval mode), e.g. to log or refit it."""
        model = build(self.configs[k]).to(self.device)
        model.load_state_dict({name: t[k] for name, t in {**self.params, **self.buffers}.items()})
        return model.eval()


def _check_cohort(configs: Sequence[RegConfig]) -> None:
    first = configs[0]
    for config in configs[1:]:
        differ = [f for f in SHARED_FIELDS if getattr(config, f) != getattr(first, f)]
        if differ:
            raise ValueError(f"cohort members must share {', '.join(differ)}; they differ")
    for config in configs:
        if (config.optimizer not in ("adam", "adamw") or config.batch_norm != "none"
                or getattr(config, "lr_schedule", "constant") != "constant"):
            raise ValueError("the cohort prototype trains Adam/AdamW networks at a constant lr without batch norm")
        varying = {f for f in RegConfig.__dataclass_fields__ if getattr(config, f) != getattr(first, f)}
        if not varying <= set(_VARYING):
            raise ValueError(f"the cohort prototype varies only {', '.join(_VARYING)}; got {sorted(varying)}")
        # early_stopping is a callback of the estimators, not of the loop: every member runs every epoch.
        if not set(config.active_regularizers()) <= {"l2", "weight_decay", "label_smoothing", "early_stopping"}:
            raise ValueError(f"the cohort prototype takes deterministic regularizers only; got "
                             f"{config.active_regularizers()}")
