"""Regularizers that live in the architecture: dropout variants and batch-norm placement."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from regtune.exceptions import RegConfigError

__all__ = ["GaussianDropout", "layer_block", "make_dropout"]


class GaussianDropout(nn.Module):
    """Multiplicative noise ``N(1, p / (1 - p))`` in training (Srivastava et al. 2014); identity at eval."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        std = (self.p / (1 - self.p)) ** 0.5
        return x * (1 + std * torch.randn_like(x))

    def extra_repr(self) -> str:
        return f"p={self.p}"


_DROPOUTS: dict[str, type[nn.Module]] = {
    "standard": nn.Dropout,
    "alpha": nn.AlphaDropout,
    "gaussian": GaussianDropout,
}


def make_dropout(p: float, variant: str) -> nn.Module | None:
    """``standard`` inverted dropout, ``alpha`` dropout (keeps SELU's mean and variance), ``gaussian``."""
    if variant not in _DROPOUTS:
        raise RegConfigError(f"dropout_variant={variant!r} is not one of 'standard', 'alpha', 'gaussian'")
    return _DROPOUTS[variant](p) if p > 0 else None


def layer_block(
    layer: nn.Module,
    activation: nn.Module,
    *,
    norm: nn.Module | None,
    batch_norm: str,
    dropout: nn.Module | None,
) -> list[nn.Module]:
    """Order one block: weights, then batch norm before or after the activation, then dropout."""
    if batch_norm == "before_activation":
        modules = [layer, norm, activation]
    elif batch_norm == "after_activation":
        modules = [layer, activation, norm]
    else:
        modules = [layer, activation]
    return [m for m in (*modules, dropout) if m is not None]
