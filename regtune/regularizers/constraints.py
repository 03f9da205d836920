"""Weight constraints: max-norm on each unit's incoming weights, spectral normalization."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrizations

from .base import Regularizer, weight_layers

__all__ = ["MaxNorm", "SpectralNorm", "constrained_weight"]


class MaxNorm(Regularizer):
    """After every step, rescale each unit's incoming weight vector to L2 norm <= ``max_norm``."""

    name = "max_norm"

    def __init__(self, max_norm: float) -> None:
        self.max_norm = float(max_norm)

    @torch.no_grad()
    def after_step(self, model: nn.Module, lr: float) -> None:
        for layer in weight_layers(model):
            w = constrained_weight(layer)
            if w is not None:
                torch.renorm(w, p=2, dim=0, maxnorm=self.max_norm, out=w)


class SpectralNorm(Regularizer):
    """Divide each hidden layer's weight by its top singular value (Miyato et al. 2018).

    The output layer stays free so the logits can take any scale.
    """

    name = "spectral_norm"

    def build(self, model: nn.Module) -> nn.Module:
        for layer in weight_layers(model, include_head=False):
            parametrizations.spectral_norm(layer)
        return model


def constrained_weight(layer: nn.Module) -> torch.Tensor | None:
    """The trainable tensor behind ``layer.weight``; ``None`` when a parametrization owns it."""
    if nn.utils.parametrize.is_parametrized(layer, "weight"):
        return None
    return layer.weight.data
