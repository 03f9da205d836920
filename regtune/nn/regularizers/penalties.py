"""Weight penalties: L1, L2 (coupled, in the loss), elastic net, decoupled weight decay."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .base import Regularizer, decay_parameters, require_layers

if TYPE_CHECKING:
    from regtune.config import RegConfig

__all__ = ["DecoupledWeightDecay", "ElasticNetPenalty", "L1Penalty", "L2Penalty"]


class ElasticNetPenalty(Regularizer):
    """``strength * (l1_ratio * sum|w| + (1 - l1_ratio) / 2 * sum w^2)`` over weight tensors.

    The same mixing as scikit-learn's ``ElasticNet``; L1 and L2 are its two ends. The L2 part
    is an ordinary loss term. The L1 part only adds its value to the loss: its gradient
    ``sign(w)`` would make Adam hop weights across zero forever, never onto it. It follows
    orthant-wise descent instead (Andrew & Gao 2007): the step gets the L1 pseudo-gradient, a
    weight at zero stays there while its loss gradient is weaker than the L1 strength, and a
    weight the step would carry across zero lands on exactly zero.
    """

    setting = "elastic_net"

    def __init__(self, strength: float, l1_ratio: float = 0.5) -> None:
        self.strength = float(strength)
        self.l1_ratio = float(l1_ratio)
        self._orthants: list[tuple[Tensor, Tensor]] = []

    def build(self, model: nn.Module) -> nn.Module:
        require_layers(model, self.setting)
        return model

    @classmethod
    def from_config(cls, config: RegConfig, *, n_classes: int | None, image_shape: tuple[int, int, int] | None) -> ElasticNetPenalty:
        return cls(config.elastic_net, config.l1_ratio)

    def penalty(self, model: nn.Module) -> Tensor:
        params = decay_parameters(model)
        total = torch.zeros((), device=params[0].device)
        if self.l1_ratio > 0:
            with torch.no_grad():
                total = total + self.l1_ratio * sum(p.abs().sum() for p in params)
        if self.l1_ratio < 1:
            total = total + (1 - self.l1_ratio) / 2 * sum(p.pow(2).sum() for p in params)
        return self.strength * total

    @torch.no_grad()
    def after_backward(self, model: nn.Module) -> None:
        self._orthants = []
        if self.l1_ratio == 0:
            return
        lam = self.strength * self.l1_ratio
        for p in decay_parameters(model):
            if p.grad is None:
                continue
            sign = torch.sign(p)
            at_zero = sign == 0
            grad = p.grad.add_(lam * sign)
            shrunk = torch.sign(grad) * (grad.abs() - lam).clamp_min(0)
            grad.copy_(torch.where(at_zero, shrunk, grad))
            self._orthants.append((p, torch.where(at_zero, -torch.sign(grad), sign)))

    @torch.no_grad()
    def after_step(self, model: nn.Module, lr: float) -> None:
        for p, orthant in self._orthants:
            p.masked_fill_(p * orthant <= 0, 0.0)
        self._orthants = []


class L1Penalty(ElasticNetPenalty):
    """``strength * sum|w|``: drives uninformative weights to exactly zero."""

    setting = "l1"

    def __init__(self, strength: float) -> None:
        super().__init__(strength, l1_ratio=1.0)

    @classmethod
    def from_config(cls, config: RegConfig, *, n_classes: int | None, image_shape: tuple[int, int, int] | None) -> L1Penalty:
        return cls(config.l1)


class L2Penalty(ElasticNetPenalty):
    """``strength / 2 * sum w^2`` added to the loss (coupled: adaptive optimizers rescale it)."""

    setting = "l2"

    def __init__(self, strength: float) -> None:
        super().__init__(strength, l1_ratio=0.0)

    @classmethod
    def from_config(cls, config: RegConfig, *, n_classes: int | None, image_shape: tuple[int, int, int] | None) -> L2Penalty:
        return cls(config.l2)


class DecoupledWeightDecay(Regularizer):
    """AdamW's decay ``w <- w - lr * decay * w``, outside the loss and the optimizer's scaling.

    Like ``torch.optim.AdamW`` it decays the weights from before the step, so Adam plus this
    hook is AdamW; the weights are read after the backward pass, once weight noise is removed.
    It works with every optimizer. With ``optimizer="adamw"`` torch's AdamW applies the same
    decay itself (in its fused kernel), so no hook is built and the decay is applied once.
    """

    def __init__(self, decay: float) -> None:
        self.decay = float(decay)
        self._before: list[tuple[Tensor, Tensor]] = []

    def build(self, model: nn.Module) -> nn.Module:
        require_layers(model, "weight_decay")
        return model

    @classmethod
    def from_config(cls, config: RegConfig, *, n_classes: int | None, image_shape: tuple[int, int, int] | None) -> DecoupledWeightDecay | None:
        return None if config.optimizer == "adamw" else cls(config.weight_decay)

    @torch.no_grad()
    def after_backward(self, model: nn.Module) -> None:
        self._before = [(p, p.detach().clone()) for p in decay_parameters(model)]

    @torch.no_grad()
    def after_step(self, model: nn.Module, lr: float) -> None:
        pairs = self._before or [(p, p.detach().clone()) for p in decay_parameters(model)]
        for p, w in pairs:
            p.add_(w, alpha=-lr * self.decay)
        self._before = []
