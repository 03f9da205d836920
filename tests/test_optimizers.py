"""``optimizer="adamw"`` is torch's AdamW: decay on weights only, applied once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from torch import nn

from regtune import RegConfig, RegularizedNetClassifier
from regtune.nn.models import build_model
from regtune.nn.regularizers import DecoupledWeightDecay, build_regularizers, decay_parameters
from regtune.nn.trainer import make_optimizer


def _model(config: RegConfig) -> nn.Module:
    torch.manual_seed(0)
    return build_model(config, n_features=6, n_outputs=3)


def _step_with_zero_gradients(config: RegConfig, steps: int = 5) -> tuple[dict, dict]:
    """Parameters before and after ``steps`` optimizer steps on zero gradients: only decay moves them."""
    model = _model(config)
    opt = make_optimizer(model, config)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    for _ in range(steps):
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
    return before, {k: v.detach().clone() for k, v in model.named_parameters()}


def test_adamw_decays_linear_weights_and_never_biases_or_batch_norm() -> None:
    config = RegConfig(hidden_layer_sizes=(8, 8), batch_norm="before_activation", optimizer="adamw",
                       weight_decay=0.1, lr=0.01)
    before, after = _step_with_zero_gradients(config)
    weights = {"body.0.weight", "body.3.weight", "head.weight"}
    assert weights < set(before)
    for name in before:
        if name in weights:
            np.testing.assert_allclose(after[name], before[name] * (1 - 0.01 * 0.1) ** 5, rtol=1e-5)
        else:  # biases and the batch-norm scale and shift
            assert torch.equal(after[name], before[name]), name
    # The same configuration with adam leaves every parameter where it was: adam gets its decay
    # from the DecoupledWeightDecay hook, which no optimizer step runs.
    before, after = _step_with_zero_gradients(config.replace(optimizer="adam"))
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_adamw_parameter_groups_pick_weights_by_module_type() -> None:
    config = RegConfig(hidden_layer_sizes=(8,), batch_norm="after_activation", optimizer="adamw", weight_decay=0.1)
    model = _model(config)
    opt = make_optimizer(model, config)
    assert isinstance(opt, torch.optim.AdamW)
    decayed = [g for g in opt.param_groups if g["weight_decay"] > 0]
    assert len(decayed) == 1
    assert {id(p) for p in decayed[0]["params"]} == {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_adamw_takes_over_weight_decay_so_it_is_applied_once() -> None:
    on = RegConfig(optimizer="adamw", weight_decay=0.1)
    assert not any(isinstance(r, DecoupledWeightDecay) for r in build_regularizers(on, n_classes=2, image_shape=None))
    assert any(isinstance(r, DecoupledWeightDecay)
               for r in build_regularizers(on.replace(optimizer="adam"), n_classes=2, image_shape=None))


def _fit(**params: object) -> RegularizedNetClassifier:
    X, y = make_classification(n_samples=300, n_features=20, n_informative=5, random_state=0)
    net = RegularizedNetClassifier((32,), lr=1e-2, batch_size=64, max_epochs=20, early_stopping=False,
                                   random_state=0, device="cpu", **params)
    return net.fit(X, y)


def _norm(net: RegularizedNetClassifier) -> float:
    return float(torch.cat([p.detach().flatten() for p in decay_parameters(net.module_)]).norm())


def test_adamw_shrinks_weights_like_adam_with_the_decay_hook() -> None:
    plain, adamw, hooked = _fit(), _fit(optimizer="adamw", weight_decay=0.5), _fit(weight_decay=0.5)
    assert _norm(adamw) < 0.85 * _norm(plain)
    # One decay, not two: the same shrinkage as Adam plus the hook (AdamW by another route).
    assert _norm(adamw) == pytest.approx(_norm(hooked), rel=0.02)
    # Without decay adamw is adam.
    assert _norm(_fit(optimizer="adamw")) == pytest.approx(_norm(plain), rel=1e-4)


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adamw"])
def test_every_optimizer_learns_digits_at_its_default_learning_rate(optimizer: str) -> None:
    from sklearn.datasets import load_digits

    from regtune.config import DEFAULT_LR

    X, y = load_digits(return_X_y=True)
    est = RegularizedNetClassifier(optimizer=optimizer, max_epochs=5, patience=100, device="cpu",
                                   random_state=0).fit(X, y)
    assert est.lr is None and est.config_.lr == DEFAULT_LR[optimizer]
    assert est.history_[-1]["val_score"] > 0.85  # SGD at Adam's 1e-3 reached 0.28


def test_an_explicit_learning_rate_wins_over_the_default() -> None:
    X, y = make_classification(n_samples=60, n_features=6, n_informative=4, random_state=0)
    est = RegularizedNetClassifier(optimizer="sgd", lr=1e-3, max_epochs=1, device="cpu").fit(X, y)
    assert est.config_.lr == 1e-3
