"""Weight constraints hold: max-norm after every optimizer step, spectral norm after training,
on the built-in networks and on modules users bring (output layer free in both)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from byo_modules import HeadFirst, ResidualMLP, SmallConvNet
from sklearn.datasets import load_digits
from torch import nn

from regtune import RegConfig, RegularizedNetClassifier
from regtune.exceptions import RegConfigError
from regtune.nn.models import build_network
from regtune.nn.regularizers import Regularizer, build_regularizers, weight_layers
from regtune.nn.trainer import Trainer

IMAGE = (1, 8, 8)
# name -> (RegConfig changes, build_network keywords, images as (N, C, H, W)?, hidden layers)
NETS: dict[str, tuple[dict, dict, bool, int]] = {
    "mlp": ({"hidden_layer_sizes": (64, 64)}, {}, False, 2),
    "cnn": ({"architecture": "cnn", "hidden_layer_sizes": (64, 64), "conv_channels": (8,)}, {}, False, 3),
    "custom-residual": ({}, {"module": ResidualMLP, "module_params": {"width": 64}}, False, 3),
    "custom-conv": ({}, {"module": SmallConvNet, "module_params": {"channels": 8}}, True, 2),
}


def _digits(n: int = 400, images: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    X, y = load_digits(return_X_y=True)
    X = torch.as_tensor((X[:n] - X.mean()) / X.std(), dtype=torch.float32)
    return (X.reshape(-1, *IMAGE) if images else X), torch.as_tensor(y[:n])


class _UnitNorms(Regularizer):
    """Test probe: records the largest incoming-weight norm of the hidden layers after every
    optimizer step, and of the output layer."""

    def __init__(self) -> None:
        self.largest: list[float] = []
        self.output: list[float] = []

    def after_step(self, model: nn.Module, lr: float) -> None:
        self.largest.append(max(_unit_norms(m.weight).max().item() for m in weight_layers(model, include_head=False)))
        self.output.append(_unit_norms(weight_layers(model)[-1].weight).max().item())


def _unit_norms(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().reshape(weight.shape[0], -1).norm(dim=1)


def _train(net: str, extra: list[Regularizer] = (), epochs: int = 4, **changes: Any) -> nn.Module:
    config_changes, module, images, _ = NETS[net]
    config = RegConfig(lr=1e-2, batch_size=64, max_epochs=epochs, early_stopping=False,
                       **{**config_changes, **changes})
    X, y = _digits(images=images)
    regs = build_regularizers(config, n_classes=10, image_shape=IMAGE) + list(extra)
    trainer = Trainer(
        lambda: build_network(config, 64, 10, IMAGE, regs, **module), config, X, y, task="classification",
        regularizers=regs, seed=0,
    )
    while not trainer.done:
        trainer.step()
    return trainer.finish()


@pytest.mark.parametrize("net", list(NETS))
def test_max_norm_bounds_every_hidden_unit_after_every_step(net: str) -> None:
    free, bounded = _UnitNorms(), _UnitNorms()
    _train(net, [free])
    model = _train(net, [bounded], max_norm=0.5)
    assert len(bounded.largest) == 4 * 7  # 400 samples in batches of 64, 4 epochs
    assert max(bounded.largest) <= 0.5 + 1e-5
    assert max(free.largest) > 0.8  # the bound binds: unconstrained units grow past it
    assert max(bounded.output) > 0.5 + 1e-3  # the output layer stays free
    hidden = weight_layers(model, include_head=False)
    assert len(hidden) == NETS[net][3]
    assert any(isinstance(m, nn.Conv2d) for m in hidden) == (net in ("cnn", "custom-conv"))
    for layer in hidden:
        assert _unit_norms(layer.weight).max() <= 0.5 + 1e-5


@pytest.mark.parametrize("net", list(NETS))
def test_spectral_norm_holds_hidden_layers_at_unit_gain(net: str) -> None:
    def top_singular_values(model: nn.Module) -> list[float]:
        hidden = weight_layers(model, include_head=False)
        assert len(hidden) == NETS[net][3]
        return [torch.linalg.matrix_norm(m.weight.detach().reshape(m.weight.shape[0], -1), ord=2).item()
                for m in hidden]

    normalized = top_singular_values(_train(net, spectral_norm=True, epochs=6))
    free = top_singular_values(_train(net, epochs=6))
    assert all(s == pytest.approx(1.0, abs=0.05) for s in normalized), normalized
    assert max(free) > 1.5, free


def test_without_hidden_layers_max_norm_and_spectral_norm_constrain_the_head() -> None:
    bounded = _UnitNorms()
    _train("mlp", [bounded], hidden_layer_sizes=(), max_norm=0.5)
    assert max(bounded.largest) <= 0.5 + 1e-5 and max(bounded.output) <= 0.5 + 1e-5
    free = _UnitNorms()
    _train("mlp", [free], hidden_layer_sizes=())
    assert max(free.output) > 0.8  # the bound binds
    head = _train("mlp", hidden_layer_sizes=(), spectral_norm=True, epochs=6).head
    assert torch.linalg.matrix_norm(head.weight.detach(), ord=2).item() == pytest.approx(1.0, abs=0.05)


def test_a_module_names_its_constrained_layers_when_the_output_layer_is_not_last() -> None:
    X, y = load_digits(return_X_y=True)
    net = RegularizedNetClassifier(module=HeadFirst, max_norm=0.5, lr=1e-2, max_epochs=5, early_stopping=False,
                                   random_state=0, device="cpu").fit(X[:400], y[:400])
    assert _unit_norms(net.module_.hidden.weight).max() <= 0.5 + 1e-5
    assert _unit_norms(net.module_.output.weight).max() > 0.6  # the output layer is not bounded
    # The estimator's constrained_layers= says the same for a module that does not.
    named = RegularizedNetClassifier(module=ResidualMLP, module__width=16, constrained_layers=["inp"], max_norm=0.5,
                                     lr=1e-2, max_epochs=3, early_stopping=False, random_state=0, device="cpu")
    module = named.fit(X[:400], y[:400]).module_
    assert _unit_norms(module.inp.weight).max() <= 0.5 + 1e-5
    assert _unit_norms(module.blocks[0][1].weight).max() > 0.5 + 1e-3
    with pytest.raises(RegConfigError, match=r"constrained_layers: 'blocks'.*inp, blocks\.0\.1, blocks\.1\.1, out"):
        named.set_params(constrained_layers=["blocks"]).fit(X[:100], y[:100])
