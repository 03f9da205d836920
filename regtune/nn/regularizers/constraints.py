"""Weight constraints: max-norm on each unit's incoming weights, spectral normalization."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .base import Regularizer, require_layers, weight_layers

if TYPE_CHECKING:
    from regtune.config import RegConfig

__all__ = ["MaxNorm", "SpectralNorm", "constrained_weight"]


class MaxNorm(Regularizer):
    """After every step, rescale each hidden unit's incoming weight vector to L2 norm <= ``max_norm``.

    Hidden units are those of every Linear and convolution layer but the output layer (the last
    one in module order), or of the layers a module names (:func:`weight_layers`); a kernel's
    unit is an output channel.
    """

    def __init__(self, max_norm: float) -> None:
        self.max_norm = float(max_norm)

    @classmethod
    def from_config(cls, config: RegConfig, *, n_classes: int | None, image_shape: tuple[int, int, int] | None) -> MaxNorm:
        return cls(config.max_norm)

    def build(self, model: nn.Module) -> nn.Module:
        require_layers(model, "max_norm", hidden=True)
        return model

    @torch.no_grad()
    def after_step(self, model: nn.Module, lr: float) -> None:
        for layer in weight_layers(model, include_head=False):
            w = constrained_weight(layer)
            if w is not None:
                torch.renorm(w, p=2, dim=0, maxnorm=self.max_norm, out=w)


class SpectralNorm(Regularizer):
    """Divide each hidden layer's weight by its top singular value (Miyato et al. 2018).

    The output layer (the last Linear or convolution in module order) stays free so the logits
    can take any scale; a module may name its constrained layers instead (:func:`weight_layers`). Kernels count as their
    ``(out_channels, -1)`` matrix. Unlike ``torch.nn.utils.parametrizations.spectral_norm``,
    which runs one power iteration per training forward on the weights from before the step,
    the singular vectors are refined after every optimizer step until they fit the new weights
    (up to ``max_iter`` iterations, warm-started): with one iteration the optimizer grows
    directions the estimate has not caught up with, and trained layers end with gains of 1.1 to
    1.25 instead of 1.
    """

    def __init__(self, tol: float = 1e-2, max_iter: int = 10) -> None:
        self.tol = tol
        self.max_iter = max_iter

    @classmethod
    def from_config(cls, config: RegConfig, *, n_classes: int | None, image_shape: tuple[int, int, int] | None) -> SpectralNorm:
        return cls()

    def build(self, model: nn.Module) -> nn.Module:
        require_layers(model, "spectral_norm", hidden=True)
        for layer in weight_layers(model, include_head=False):
            parametrize.register_parametrization(layer, "weight", _SpectralNormalization(layer.weight))
            self._refine(layer, max_iter=100)
        return model

    @torch.no_grad()
    def after_step(self, model: nn.Module, lr: float) -> None:
        # Built last, so this runs after every other after_step hook and sees the final weights.
        for layer in weight_layers(model, include_head=False):
            if parametrize.is_parametrized(layer, "weight"):
                self._refine(layer, self.max_iter)

    @torch.no_grad()
    def _refine(self, layer: nn.Module, max_iter: int) -> None:
        """Warm-started power iteration until ``v`` is a right singular vector to ``tol``."""
        norm = layer.parametrizations.weight[0]
        w = layer.parametrizations.weight.original
        w = w.reshape(w.shape[0], -1)
        u, wt_u = norm.u, w.T @ norm.u
        for _ in range(max_iter):
            v = wt_u / wt_u.norm().clamp_min(1e-12)
            wv = w @ v
            sigma = wv.norm().clamp_min(1e-12)
            u = wv / sigma
            wt_u = w.T @ u
            if (wt_u - sigma * v).norm() <= self.tol * sigma:
                break
        norm.u.copy_(u)
        norm.v.copy_(v)


class _SpectralNormalization(nn.Module):
    """``W / (u^T W v)`` with ``u, v`` the top singular vectors kept by :class:`SpectralNorm`."""

    @torch.no_grad()
    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        u = nn.functional.normalize(weight.new_empty(weight.shape[0]).normal_(), dim=0)
        self.register_buffer("u", u)
        self.register_buffer("v", nn.functional.normalize(weight.reshape(weight.shape[0], -1).T @ u, dim=0))

    def forward(self, weight: Tensor) -> Tensor:
        sigma = torch.dot(self.u, weight.reshape(weight.shape[0], -1) @ self.v)
        return weight / sigma


def constrained_weight(layer: nn.Module) -> torch.Tensor | None:
    """The trainable tensor behind ``layer.weight``; ``None`` when a parametrization owns it."""
    if parametrize.is_parametrized(layer, "weight"):
        return None
    return layer.weight.data
