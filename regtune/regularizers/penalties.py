"""Weight penalties: L1, L2 (coupled, in the loss), elastic net, decoupled weight decay."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Regularizer, decay_parameters

__all__ = ["DecoupledWeightDecay", "ElasticNetPenalty", "L1Penalty", "L2Penalty"]


class ElasticNetPenalty(Regularizer):
    """``strength * (l1_ratio * sum|w| + (1 - l1_ratio) / 2 * sum w^2)`` over weight tensors.

    The same mixing as scikit-learn's ``ElasticNet``; L1 and L2 are its two ends.
    """

    name = "elastic_net"

    def __init__(self, strength: float, l1_ratio: float = 0.5) -> None:
        self.strength = float(strength)
        self.l1_ratio = float(l1_ratio)

    def penalty(self, model: nn.Module) -> Tensor:
        params = decay_parameters(model)
        total = torch.zeros((), device=params[0].device)
        if self.l1_ratio > 0:
            total = total + self.l1_ratio * sum(p.abs().sum() for p in params)
        if self.l1_ratio < 1:
            total = total + (1 - self.l1_ratio) / 2 * sum(p.pow(2).sum() for p in params)
        return self.strength * total


class L1Penalty(ElasticNetPenalty):
    """``strength * sum|w|``: drives uninformative weights to zero."""

    name = "l1"

    def __init__(self, strength: float) -> None:
        super().__init__(strength, l1_ratio=1.0)


class L2Penalty(ElasticNetPenalty):
    """``strength / 2 * sum w^2`` added to the loss (coupled: adaptive optimizers rescale it)."""

    name = "l2"

    def __init__(self, strength: float) -> None:
        super().__init__(strength, l1_ratio=0.0)


class DecoupledWeightDecay(Regularizer):
    """AdamW-style decay ``w <- w - lr * decay * w`` applied after the step, outside the loss."""

    name = "weight_decay"

    def __init__(self, decay: float) -> None:
        self.decay = float(decay)

    @torch.no_grad()
    def after_step(self, model: nn.Module, lr: float) -> None:
        factor = 1.0 - lr * self.decay
        for p in decay_parameters(model):
            p.mul_(factor)
