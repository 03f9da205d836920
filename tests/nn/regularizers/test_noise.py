"""Noise injection on inputs, weights and gradients, and label smoothing, at the promised scale,
on the built-in networks and on a module a user brings."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from byo_modules import ResidualMLP
from sklearn.datasets import load_digits
from sklearn.metrics import log_loss
from torch import nn

from regtune import RegularizedNetClassifier
from regtune.nn.regularizers import GradientNoise, InputNoise, WeightNoise


def _net(kind: str = "sequential") -> nn.Module:
    torch.manual_seed(0)
    if kind == "custom":  # layer norm, residual blocks: its 1-D "weight"s are norm scales
        return ResidualMLP(20, 3, width=50, depth=1)
    return nn.Sequential(nn.Linear(20, 50), nn.ReLU(), nn.Linear(50, 3))


@pytest.mark.parametrize("shape", [(2000, 50), (2000, 1, 8, 8)], ids=["rows", "images"])
def test_input_noise_adds_gaussian_noise_with_the_requested_std(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    X, y = torch.full(shape, 2.0), torch.arange(2000) % 3
    Xn, yn = InputNoise(0.3).on_batch(X, y)
    noise = Xn - X
    assert Xn.shape == X.shape
    assert torch.equal(yn, y)
    assert abs(float(noise.mean())) < 0.005
    assert float(noise.std()) == pytest.approx(0.3, rel=0.02)
    Xn2, _ = InputNoise(0.3).on_batch(X, y)
    assert not torch.equal(Xn, Xn2)  # fresh noise for every batch


@pytest.mark.parametrize("kind", ["sequential", "custom"])
def test_weight_noise_perturbs_the_forward_pass_and_restores_the_clean_weights(kind: str) -> None:
    model = _net(kind)
    clean = copy.deepcopy(model.state_dict())
    x = torch.randn(8, 20)
    out_clean = model(x)
    noise = WeightNoise(0.05)

    noise.before_forward(model)
    for name, p in model.named_parameters():
        delta = p.detach() - clean[name]
        if p.ndim >= 2:
            assert float(delta.std()) == pytest.approx(0.05, rel=0.1), name
        else:
            assert torch.count_nonzero(delta) == 0, name  # biases and norm scales are not perturbed
    assert not torch.allclose(model(x), out_clean)

    noise.after_backward(model)
    for name, value in model.state_dict().items():
        assert torch.equal(value, clean[name]), name  # bit for bit, not just close


@pytest.mark.parametrize("kind", ["sequential", "custom"])
def test_weight_noise_update_is_the_optimizer_step_on_the_clean_weights(kind: str) -> None:
    noisy, reference = _net(kind), _net(kind)
    x, y = torch.randn(16, 20), torch.randint(0, 3, (16,))
    F.cross_entropy(reference(x), y).backward()
    clean_grads = [q.grad.clone() for q in reference.parameters()]
    noise = WeightNoise(0.1)

    noise.before_forward(noisy)
    F.cross_entropy(noisy(x), y).backward()
    noise.after_backward(noisy)
    first = next(noisy.parameters())
    assert not torch.allclose(first.grad, clean_grads[0])  # taken at the perturbed point
    for p, q in zip(noisy.parameters(), reference.parameters(), strict=True):
        q.grad = p.grad.clone()
    torch.optim.SGD(noisy.parameters(), lr=0.1).step()
    torch.optim.SGD(reference.parameters(), lr=0.1).step()
    for p, q in zip(noisy.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q)  # ...but applied to the clean weights


@pytest.mark.parametrize("kind", ["linear", "custom"])
def test_gradient_noise_has_the_annealed_std(kind: str) -> None:
    torch.manual_seed(0)
    model = nn.Linear(400, 250) if kind == "linear" else ResidualMLP(400, 3, width=250, depth=1)
    weight = model.weight if kind == "linear" else model.inp.weight
    noise = GradientNoise(0.2)
    stds = []
    for _ in range(100):
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        noise.after_backward(model)
        stds.append(float(weight.grad.std()))
    assert all(float(p.grad.abs().sum()) > 0 for p in model.parameters())  # every parameter gets noise
    assert stds[0] == pytest.approx(0.2, rel=0.02)  # t = 0
    assert stds[99] == pytest.approx(0.2 / 100**0.275, rel=0.02)  # variance 0.04 / 100^0.55
    assert stds[9] == pytest.approx(0.2 / 10**0.275, rel=0.02)


@pytest.mark.parametrize("kind", ["mlp", "custom"])
def test_label_smoothing_lowers_confidence_on_the_training_data(kind: str) -> None:
    X, y = load_digits(return_X_y=True)
    X, y = X[:500], y[:500]
    fits = {}
    module = {"hidden_layer_sizes": (64,)} if kind == "mlp" else {"module": ResidualMLP, "module__width": 64}
    for smoothing in (0.0, 0.2):
        net = RegularizedNetClassifier(
            lr=1e-2, max_epochs=30, early_stopping=False, label_smoothing=smoothing, random_state=0,
            device="cpu", **module,
        )
        fits[smoothing] = net.fit(X, y).predict_proba(X)
    confidence = {s: float(p.max(1).mean()) for s, p in fits.items()}
    nll = {s: log_loss(y, p, labels=np.arange(10)) for s, p in fits.items()}
    assert confidence[0.0] > 0.97
    assert confidence[0.2] < 0.9
    # With targets 0.82 / 0.02 the best reachable plain log loss is -log(0.82) ~ 0.2.
    assert nll[0.0] < 0.05
    assert nll[0.2] > 0.15
