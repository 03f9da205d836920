"""Networks a user might bring with ``module=``: the tests run regtune's regularizers on them.

Kept in their own module (not a test file) so that saved models find them by import, and a
logged MLflow model ships this small file as its code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ResidualMLP(nn.Module):
    """Residual blocks ``x + Dropout(ReLU(Linear(LayerNorm(x))))`` between an input and an output
    layer: layer norm, dropout layers and skip connections regtune's MLP does not have."""

    def __init__(self, n_features: int, n_outputs: int, width: int = 32, depth: int = 2) -> None:
        super().__init__()
        self.inp = nn.Linear(n_features, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.ReLU(), nn.Dropout(0.5))
            for _ in range(depth)
        )
        self.out = nn.Linear(width, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        h = self.inp(x.flatten(1))
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


class SmallConvNet(nn.Module):
    """Images in: a 3x3 convolution (batch norm, 2-D dropout), 2x2 pooling, another convolution,
    a linear head over the flattened feature maps."""

    def __init__(self, image_shape: tuple[int, int, int], n_outputs: int, channels: int = 8) -> None:
        super().__init__()
        c, h, w = image_shape
        self.conv1 = nn.Conv2d(c, channels, 3, padding=1)
        self.norm = nn.BatchNorm2d(channels)
        self.drop = nn.Dropout2d(0.1)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        self.head = nn.Linear(2 * channels * (h // 2) * (w // 2), n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        h = F.max_pool2d(self.drop(F.relu(self.norm(self.conv1(x)))), 2)
        return self.head(F.relu(self.conv2(h)).flatten(1))


class HeadFirst(nn.Module):
    """Its output layer is registered first, so it must name its hidden layers for the weight
    constraints (a class attribute here; ``constrained_layers=`` does the same)."""

    regtune_constrained_layers = ("hidden",)

    def __init__(self, n_features: int, n_outputs: int) -> None:
        super().__init__()
        self.output = nn.Linear(32, n_outputs)
        self.hidden = nn.Linear(n_features, 32)

    def forward(self, x: Tensor) -> Tensor:
        return self.output(torch.relu(self.hidden(x)))


def mlp_factory(n_features: int, n_outputs: int, width: int = 32, dropout: float = 0.0,
                batch_norm: str = "none") -> nn.Module:
    """A factory function that takes regtune's dropout rate and batch-norm placement itself."""
    layers: list[nn.Module] = [nn.Linear(n_features, width)]
    if batch_norm == "before_activation":
        layers.append(nn.BatchNorm1d(width))
    layers.append(nn.ReLU())
    if batch_norm == "after_activation":
        layers.append(nn.BatchNorm1d(width))
    layers += [nn.Dropout(dropout), nn.Linear(width, n_outputs)]
    return nn.Sequential(nn.Flatten(), *layers)


class NoDropout(nn.Module):
    """No dropout layer and no dropout argument: dropout cannot apply to it."""

    def __init__(self, n_features: int, n_outputs: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_features, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)


class WrongWidth(NoDropout):
    """Returns one column too many."""

    def __init__(self, n_features: int, n_outputs: int) -> None:
        super().__init__(n_features, n_outputs + 1)


class BrokenForward(NoDropout):
    """Its forward multiplies by a matrix of the wrong size."""

    def forward(self, x: Tensor) -> Tensor:
        return x @ torch.ones(x.shape[1] + 1, 2)


class Frozen(NoDropout):
    """Every parameter frozen: nothing to train."""

    def __init__(self, n_features: int, n_outputs: int) -> None:
        super().__init__(n_features, n_outputs)
        self.linear.requires_grad_(False)


class SlowNet(nn.Module):
    """A one-layer network whose every forward pass sleeps ``delay`` seconds: a trial that is slow
    whatever the data, for the budget's tests."""

    def __init__(self, n_features: int, n_outputs: int, delay: float = 0.05) -> None:
        super().__init__()
        self.delay = delay
        self.body = nn.Sequential(nn.Linear(n_features, 16), nn.ReLU(), nn.Dropout(0.0), nn.Linear(16, n_outputs))

    def forward(self, x: Tensor) -> Tensor:
        import time

        time.sleep(self.delay)
        return self.body(x.flatten(1))


# The source of a user's model file (tests/test_model_code.py, tests/tuning/test_fingerprint.py).
WIDE = '''
import torch
from torch import nn


class Wide(nn.Module):
    """An MLP: it asks for n_features, not image_shape."""

    def __init__(self, n_features, n_outputs, width):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features, width), nn.ReLU(), nn.Dropout(0.0), nn.Linear(width, n_outputs))

    def forward(self, x):
        assert x.ndim == 2, f"Wide expects rows, got {tuple(x.shape)}"
        return self.net(x)
'''
