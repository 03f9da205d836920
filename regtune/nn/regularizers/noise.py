"""Noise injection: on inputs, on weights during the forward pass, on gradients."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .base import Regularizer, decay_parameters, require_layers

if TYPE_CHECKING:
    from regtune.config import RegConfig

__all__ = ["GradientNoise", "InputNoise", "WeightNoise"]


class InputNoise(Regularizer):
    """Additive Gaussian noise on the (standardized) training inputs."""

    def __init__(self, std: float) -> None:
        self.std = float(std)

    @classmethod
    def from_config(cls, config: RegConfig, *, n_classes: int | None, image_shape: tuple[int, int, int] | None) -> InputNoise:
        return cls(config.input_noise)

    def on_batch(self, X: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return X + self.std * torch.randn_like(X), y


class WeightNoise(Regularizer):
    """Gaussian noise on the weights for each training forward pass, removed before the step.

    Gradients are taken at the perturbed point, the update applies to the clean weights.
    """

    def __init__(self, std: float) -> None:
        self.std = float(std)
        self._clean: list[tuple[Tensor, Tensor]] = []

    def build(self, model: nn.Module) -> nn.Module:
        require_layers(model, "weight_noise")
        return model

    @classmethod
    def from_config(cls, config: RegConfig, *, n_classes: int | None, image_shape: tuple[int, int, int] | None) -> WeightNoise:
        return cls(config.weight_noise)

    @torch.no_grad()
    def before_forward(self, model: nn.Module) -> None:
        self._clean = []
        for p in decay_parameters(model):
            self._clean.append((p, p.detach().clone()))
            p.add_(self.std * torch.randn_like(p))

    @torch.no_grad()
    def after_backward(self, model: nn.Module) -> None:
        # Copy back rather than subtract: (w + eps) - eps is not always w in floating point.
        for p, clean in self._clean:
            p.copy_(clean)
        self._clean = []


class GradientNoise(Regularizer):
    """Annealed Gaussian gradient noise, variance ``std^2 / (1 + t)^0.55`` (Neelakantan et al.)."""

    def __init__(self, std: float) -> None:
        self.std = float(std)
        self._step = 0

    @classmethod
    def from_config(cls, config: RegConfig, *, n_classes: int | None, image_shape: tuple[int, int, int] | None) -> GradientNoise:
        return cls(config.gradient_noise)

    @torch.no_grad()
    def after_backward(self, model: nn.Module) -> None:
        sigma = self.std / (1 + self._step) ** 0.275
        self._step += 1
        for p in model.parameters():
            if p.grad is not None:
                p.grad.add_(sigma * torch.randn_like(p.grad))
