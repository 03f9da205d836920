"""Weight constraints hold: max-norm after every optimizer step, spectral norm after training."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from regtune import RegConfig
from regtune.nn.models import build_network
from regtune.nn.regularizers import Regularizer, build_regularizers, weight_layers
from regtune.nn.trainer import Trainer

IMAGE = (1, 8, 8)


def _digits(n: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    X, y = load_digits(return_X_y=True)
    X = (X[:n] - X.mean()) / X.std()
    return torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y[:n])


class _UnitNorms(Regularizer):
    """Test probe: records the largest incoming-weight norm after every optimizer step."""

    def __init__(self) -> None:
        self.largest: list[float] = []

    def after_step(self, model: nn.Module, lr: float) -> None:
        self.largest.append(max(_unit_norms(layer.weight).max().item() for layer in weight_layers(model)))


def _unit_norms(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().reshape(weight.shape[0], -1).norm(dim=1)


def _train(config: RegConfig, extra: list[Regularizer] = ()) -> nn.Module:
    X, y = _digits()
    regs = build_regularizers(config, n_classes=10, image_shape=IMAGE) + list(extra)
    trainer = Trainer(
        lambda: build_network(config, 64, 10, IMAGE, regs), config, X, y, task="classification",
        regularizers=regs, seed=0,
    )
    while not trainer.done:
        trainer.step()
    return trainer.finish()


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
def test_max_norm_bounds_every_unit_after_every_step(architecture: str) -> None:
    config = RegConfig(
        architecture=architecture, hidden_layer_sizes=(64,), conv_channels=(8,), lr=1e-2, batch_size=64,
        max_epochs=4, early_stopping=False,
    )
    free, bounded = _UnitNorms(), _UnitNorms()
    _train(config, [free])
    model = _train(config.replace(max_norm=0.8), [bounded])
    assert len(bounded.largest) == 4 * 7  # 400 samples in batches of 64, 4 epochs
    assert max(bounded.largest) <= 0.8 + 1e-5
    assert max(free.largest) > 1.2  # the bound binds: unconstrained units grow past it
    layers = weight_layers(model)
    assert any(isinstance(m, nn.Conv2d) for m in layers) == (architecture == "cnn")
    for layer in layers:
        assert _unit_norms(layer.weight).max() <= 0.8 + 1e-5


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
def test_spectral_norm_holds_hidden_layers_at_unit_gain(architecture: str) -> None:
    config = RegConfig(
        architecture=architecture, hidden_layer_sizes=(64, 64), conv_channels=(8,), lr=1e-2, batch_size=64,
        max_epochs=6, early_stopping=False,
    )

    def top_singular_values(model: nn.Module) -> list[float]:
        hidden = weight_layers(model, include_head=False)
        assert len(hidden) == (3 if architecture == "cnn" else 2)
        return [torch.linalg.matrix_norm(m.weight.detach().reshape(m.weight.shape[0], -1), ord=2).item()
                for m in hidden]

    normalized = top_singular_values(_train(config.replace(spectral_norm=True)))
    free = top_singular_values(_train(config))
    assert all(s == pytest.approx(1.0, abs=0.05) for s in normalized), normalized
    assert max(free) > 1.5, free
