"""Weight penalties change the weights the way they promise: sparsity, smaller norms, AdamW;
on the built-in MLP and on a module a user brings (weights found by layer type, never by name)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from byo_modules import ResidualMLP
from sklearn.datasets import make_classification
from torch import nn

from regtune import RegConfig, RegularizedNetClassifier
from regtune.nn.models import build_model
from regtune.nn.regularizers import (
    DecoupledWeightDecay,
    ElasticNetPenalty,
    L1Penalty,
    L2Penalty,
    build_regularizers,
    decay_parameters,
    weight_layers,
)

NETS = {"mlp": {"hidden_layer_sizes": (32,)}, "custom": {"module": ResidualMLP, "module__width": 32, "module__depth": 1}}


def _sparse_problem() -> tuple[np.ndarray, np.ndarray]:
    """4 informative features first, 36 pure-noise features after them."""
    return make_classification(
        n_samples=300, n_features=40, n_informative=4, n_redundant=0, shuffle=False, random_state=0
    )


def _fit(net: str = "mlp", **params: float) -> RegularizedNetClassifier:
    X, y = _sparse_problem()
    net = RegularizedNetClassifier(
        lr=1e-2, batch_size=64, max_epochs=25, early_stopping=False, random_state=0, device="cpu",
        **NETS[net], **params,
    )
    return net.fit(X, y)


def _weights(net: RegularizedNetClassifier) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in decay_parameters(net.module_)])


def _near_zero(net: RegularizedNetClassifier) -> float:
    return float((_weights(net).abs() < 1e-3).float().mean())


@pytest.mark.parametrize("net", list(NETS))
def test_l1_drives_uninformative_weights_to_exact_zero(net: str) -> None:
    plain, sparse = _fit(net), _fit(net, l1=3e-3)
    assert _near_zero(plain) < 0.02
    assert _near_zero(sparse) > 0.4
    assert _near_zero(sparse) > 5 * _near_zero(plain)
    assert float((_weights(sparse) == 0).float().mean()) > 0.35  # exact zeros, not jitter around 0
    # The noise features lose their incoming weights far more than the informative ones.
    columns = weight_layers(sparse.module_)[0].weight.detach().norm(dim=0)
    assert columns[4:].mean() < 0.4 * columns[:4].mean()
    X, y = _sparse_problem()
    assert sparse.score(X, y) > 0.95


def test_l1_zeros_survive_decoupled_decay_and_weight_noise() -> None:
    # Decay runs before the L1 step and weight noise comes off before both, or zeros would blur.
    net = _fit(l1=3e-3, weight_decay=0.1, weight_noise=0.01)
    assert float((_weights(net) == 0).float().mean()) > 0.42  # 0.34 with decay after the L1 step
    names = [type(r).__name__ for r in build_regularizers(net.config_, n_classes=2, image_shape=None)]
    assert names == ["WeightNoise", "DecoupledWeightDecay", "L1Penalty"]


def test_l1_keeps_a_zero_weight_at_zero_while_its_gradient_is_weaker_than_the_strength() -> None:
    layer = nn.Linear(4, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0, 0.0, 0.05, -0.3]]))
    l1 = L1Penalty(0.5)
    opt = torch.optim.SGD(layer.parameters(), lr=0.2)
    layer.weight.grad = torch.tensor([[0.3, -0.9, 0.0, 0.0]])
    l1.after_backward(layer)
    opt.step()
    l1.after_step(layer, 0.2)
    w = layer.weight.detach()[0]
    assert w[0] == 0  # |grad| 0.3 < 0.5: stays exactly at zero
    assert w[1] == pytest.approx(0.2 * (0.9 - 0.5))  # |grad| 0.9 > 0.5: leaves zero, shrunk by 0.5
    assert w[2] == 0  # the step 0.05 - 0.2 * 0.5 would cross zero: lands on it
    assert w[3] == pytest.approx(-0.3 + 0.2 * 0.5)  # far from zero: plain L1 shrinkage


@pytest.mark.parametrize("net", list(NETS))
def test_coupled_l2_and_decoupled_decay_lower_the_weight_norm(net: str) -> None:
    plain = float(_weights(_fit(net)).norm())
    l2 = float(_weights(_fit(net, l2=0.05)).norm())
    decay = float(_weights(_fit(net, weight_decay=0.5)).norm())
    assert l2 < 0.8 * plain
    assert decay < 0.8 * plain


def test_decoupled_decay_with_adam_is_adamw() -> None:
    torch.manual_seed(0)
    ours = nn.Linear(6, 3)
    ref, plain = copy.deepcopy(ours), copy.deepcopy(ours)
    lr, decay = 0.05, 0.5
    adam = torch.optim.Adam(ours.parameters(), lr=lr)
    plain_adam = torch.optim.Adam(plain.parameters(), lr=lr)
    adamw = torch.optim.AdamW(
        [{"params": [ref.weight], "weight_decay": decay}, {"params": [ref.bias], "weight_decay": 0.0}], lr=lr
    )
    hook = DecoupledWeightDecay(decay)
    for _ in range(3):
        grads = [torch.randn_like(p) for p in ours.parameters()]
        for model in (ours, ref, plain):
            for p, g in zip(model.parameters(), grads, strict=True):
                p.grad = g.clone()
        hook.after_backward(ours)
        adam.step()
        hook.after_step(ours, lr)
        adamw.step()
        plain_adam.step()
        torch.testing.assert_close(ours.weight, ref.weight, rtol=0, atol=1e-7)
        torch.testing.assert_close(ours.bias, ref.bias, rtol=0, atol=0)
    assert (ours.weight - plain.weight).abs().max() > 1e-3  # the decay did act


@pytest.mark.parametrize("net", list(NETS))
def test_elastic_net_sparsity_lies_between_l1_and_l2(net: str) -> None:
    fractions = [_near_zero(_fit(net, elastic_net=3e-3, l1_ratio=r)) for r in (1.0, 0.5, 0.0)]
    l1, mixed, l2 = fractions
    assert l1 > mixed + 0.05
    assert mixed > l2 + 0.05
    assert l2 < 0.05  # L2 alone shrinks, it does not zero (pure L2 on the MLP: 0.007)


def test_elastic_net_penalty_value_mixes_like_sklearn() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    weights = [model[0].weight, model[2].weight]
    abs_sum = sum(float(w.detach().abs().sum()) for w in weights)
    sq_sum = sum(float(w.detach().pow(2).sum()) for w in weights)
    assert L1Penalty(0.1).penalty(model).item() == pytest.approx(0.1 * abs_sum, rel=1e-5)
    assert L2Penalty(0.1).penalty(model).item() == pytest.approx(0.1 / 2 * sq_sum, rel=1e-5)
    mixed = ElasticNetPenalty(0.1, l1_ratio=0.3).penalty(model).item()
    assert mixed == pytest.approx(0.1 * (0.3 * abs_sum + 0.7 / 2 * sq_sum), rel=1e-5)


@pytest.mark.parametrize("net", list(NETS))
def test_penalties_and_decay_never_touch_biases_or_normalization(net: str) -> None:
    torch.manual_seed(0)
    if net == "mlp":
        model = build_model(RegConfig(hidden_layer_sizes=(8, 8), batch_norm="before_activation"), 5, 3)
    else:  # layer norm's scale is a parameter named "weight": it is found by type, not by name
        model = build_model(RegConfig(), 5, 3, module=ResidualMLP, module_params={"width": 8})
        assert sum(isinstance(m, nn.LayerNorm) for m in model.modules()) == 2
    weights = {id(p) for p in decay_parameters(model)}
    free = {name: p for name, p in model.named_parameters() if id(p) not in weights}
    assert {name for name, p in free.items() if p.ndim >= 2} == set()
    assert any("bias" in n for n in free)
    assert any(isinstance(m, (nn.BatchNorm1d, nn.LayerNorm)) and m.weight is p
               for m in model.modules() for p in free.values())
    with torch.no_grad():
        for p in free.values():
            p.uniform_(0.5, 1.5)  # nonzero, so shrinkage would show
    regs = [L1Penalty(1.0), L2Penalty(1.0), ElasticNetPenalty(1.0, 0.5), DecoupledWeightDecay(10.0)]

    sum(r.penalty(model) for r in regs[:3]).backward()
    for name, p in free.items():
        assert p.grad is None or torch.count_nonzero(p.grad) == 0, name

    before = {name: p.detach().clone() for name, p in free.items()}
    matrices = [p.detach().clone() for p in decay_parameters(model)]
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # a step with zero loss gradient: only the regularizers act
    for r in regs:
        r.after_backward(model)
    opt.step()
    for r in regs:
        r.after_step(model, 0.01)
    for name, p in free.items():
        assert torch.equal(p.detach(), before[name]), name
    for old, new in zip(matrices, decay_parameters(model), strict=True):
        assert new.detach().norm() < 0.95 * old.norm()
