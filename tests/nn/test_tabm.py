"""The built-in MLP as a TabM-mini ensemble (``tabm=k``): members, their loss, their mean."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from regtune import RegularizedNetClassifier, RegularizedNetRegressor
from regtune.config import RegConfig
from regtune.estimators.persistence import load_model, save_model
from regtune.exceptions import ModuleError
from regtune.nn.cohort import cohort_problem
from regtune.nn.losses import Loss
from regtune.nn.models import MLP, ModuleFactory, build_model, build_network
from regtune.nn.regularizers import build_regularizers, decay_parameters, weight_layers
from regtune.nn.trainer import Trainer

FAST = {"max_epochs": 3, "batch_size": 32, "random_state": 0, "device": "cpu"}


def _data(n: int = 96, d: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    return X, (X[:, 0] + X[:, 1] > 0).astype(int)


def _member_outputs(model: MLP, x: torch.Tensor) -> torch.Tensor:
    """Each member's output, ``(batch, k, n_out)``: the training-mode forward (the model has no
    dropout or batch norm, so training and eval mode compute the same members)."""
    model.train()
    with torch.no_grad():
        out = model(x)
    model.eval()
    return out


def test_tabm_1_is_the_plain_mlp_with_the_state_dict_of_earlier_versions() -> None:
    torch.manual_seed(0)
    model = build_model(RegConfig(tabm=1, dropout=0.1), 5, 3, n_classes=3)
    assert list(model.state_dict()) == ["body.0.weight", "body.0.bias", "body.3.weight", "body.3.bias",
                                        "head.weight", "head.bias"]
    assert model.members is None and not hasattr(model, "regtune_constrained_layers")
    assert model.train()(torch.randn(4, 5)).shape == (4, 3)


def test_tabm_members_share_the_hidden_layers_and_own_adapters_and_heads() -> None:
    model = build_model(RegConfig(tabm=4, hidden_layer_sizes=(8, 8)), 5, 2, n_classes=2)
    keys = list(model.state_dict())
    assert [k for k in keys if k.startswith("body.")] == ["body.0.weight", "body.0.bias", "body.2.weight",
                                                          "body.2.bias"]
    assert model.members.adapters.shape == (4, 5)
    assert set(model.members.adapters.detach().unique().tolist()) <= {-1.0, 1.0}
    assert len(model.members.heads) == 4 and "head.weight" not in keys
    assert model.train()(torch.randn(6, 5)).shape == (6, 4, 2)
    assert model.eval()(torch.randn(6, 5)).shape == (6, 2)


def test_regularizers_find_the_shared_and_the_member_weights() -> None:
    model = build_model(RegConfig(tabm=3, hidden_layer_sizes=(8, 8)), 5, 2, n_classes=2)
    heads = [h.weight for h in model.members.heads]
    decayed = {id(p) for p in decay_parameters(model)}
    assert {id(model.body[0].weight), id(model.body[2].weight)} | {id(w) for w in heads} == decayed
    assert weight_layers(model, include_head=False) == [model.body[0], model.body[2]]  # max-norm, spectral norm
    linear = build_model(RegConfig(tabm=3, hidden_layer_sizes=()), 5, 2, n_classes=2)
    assert weight_layers(linear, include_head=False) == list(linear.members.heads)  # the only layers
    config = RegConfig(tabm=3, hidden_layer_sizes=(8,), spectral_norm=True, max_norm=1.0, weight_noise=0.01)
    regs = build_regularizers(config, n_classes=2, image_shape=None)
    model = build_network(config, 5, 2, None, regs, n_classes=2)
    assert torch.nn.utils.parametrize.is_parametrized(model.body[0], "weight")
    assert not torch.nn.utils.parametrize.is_parametrized(model.members.heads[0], "weight")


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_eval_output_is_the_members_mean_probability_or_output(task: str) -> None:
    torch.manual_seed(0)
    n_classes = 3 if task == "classification" else None
    model = build_model(RegConfig(tabm=5, hidden_layer_sizes=(8,)), 4, 3, n_classes=n_classes)
    x = torch.randn(10, 4)
    members = _member_outputs(model, x)
    with torch.no_grad():
        out = model.eval()(x)
    if task == "classification":
        torch.testing.assert_close(out.softmax(-1), members.softmax(-1).mean(1))
        torch.testing.assert_close(out.exp().sum(-1), torch.ones(10))  # log-probabilities: valid logits
    else:
        torch.testing.assert_close(out, members.mean(1))


def test_loss_is_the_mean_of_the_members_losses() -> None:
    torch.manual_seed(0)
    k, out = 3, torch.randn(6, 3, 4)
    target, weight = torch.randint(0, 4, (6,)), torch.rand(6) + 0.5
    smooth = Loss(None, RegConfig(tabm=k, label_smoothing=0.1), "classification")
    by_hand = torch.stack([F.cross_entropy(out[:, i], target, label_smoothing=0.1) for i in range(k)]).mean()
    torch.testing.assert_close(smooth(out, target), by_hand)
    weighted = torch.stack([(F.cross_entropy(out[:, i], target, reduction="none") * weight).mean()
                            for i in range(k)]).mean()
    torch.testing.assert_close(Loss(None, RegConfig(tabm=k), "classification")(out, target, weight), weighted)
    soft = torch.softmax(torch.randn(6, 4), -1)  # mixup / cutmix targets
    by_hand = torch.stack([F.cross_entropy(out[:, i], soft) for i in range(k)]).mean()
    torch.testing.assert_close(Loss(None, RegConfig(tabm=k), "classification")(out, soft), by_hand)
    y = torch.randn(6, 4)
    by_hand = torch.stack([F.mse_loss(out[:, i], y) for i in range(k)]).mean()
    torch.testing.assert_close(Loss(None, RegConfig(tabm=k), "regression")(out, y), by_hand)
    summed = Loss(nn.HuberLoss(reduction="sum"), RegConfig(tabm=k), "regression")
    by_hand = torch.stack([F.huber_loss(out[:, i], y, reduction="sum") for i in range(k)]).mean()
    torch.testing.assert_close(summed(out, y), by_hand)  # a custom criterion: each member's loss, their mean
    assert Loss(None, RegConfig(tabm=k), "classification", training=False).members == 1  # eval: the ensemble's


def test_the_trainer_trains_on_the_mean_of_the_members_losses() -> None:
    X, y = (torch.from_numpy(a) for a in _data(16))
    config = RegConfig(tabm=4, hidden_layer_sizes=(8,), batch_size=16, max_epochs=1)
    built: list[MLP] = []

    def build() -> nn.Module:
        built.append(build_model(config, 5, 2, n_classes=2))
        return built[-1]

    trainer = Trainer(build, config, X, y, task="classification", seed=0)
    members = _member_outputs(built[0], X)  # before the one step: the weights the loss was computed with
    by_hand = np.mean([float(F.cross_entropy(members[:, i], y)) for i in range(4)])
    assert trainer.step()["train_loss"] == pytest.approx(by_hand, rel=1e-5)
    ensemble = float(F.cross_entropy(torch.log(members.softmax(-1).mean(1)), y))
    assert ensemble != pytest.approx(by_hand, rel=1e-4)  # not the loss of the averaged prediction


def test_members_train_apart_and_the_estimators_fit_predict_pickle_and_load(tmp_path: Path) -> None:
    X, y = _data()
    clf = RegularizedNetClassifier((16,), tabm=4, dropout=0.1, label_smoothing=0.1, mixup_alpha=0.2,
                                   weight_decay=1e-4, max_norm=3.0, **FAST).fit(X, y)
    members = clf.module_.members
    adapters = members.adapters.detach()
    assert not torch.equal(adapters.abs(), torch.ones_like(adapters))  # trained away from their signs
    heads = [h.weight.detach() for h in members.heads]
    assert all(not torch.allclose(heads[i], heads[j]) for i in range(4) for j in range(i + 1, 4))
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.allclose(proba.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(clf)).predict_proba(X), proba, rtol=1e-5, atol=1e-6)
    loaded = load_model(save_model(tmp_path / "clf", clf, None)).estimator
    np.testing.assert_allclose(loaded.predict_proba(X), proba, rtol=1e-5, atol=1e-6)
    target = X[:, 0] * 2 + X[:, 2]
    reg = RegularizedNetRegressor((16,), tabm=4, spectral_norm=True, **FAST)
    reg.fit(X, target, sample_weight=np.linspace(0.5, 1.5, len(X)))
    pred = reg.predict(X)
    assert pred.shape == (len(X),) and np.isfinite(pred).all()
    np.testing.assert_allclose(pickle.loads(pickle.dumps(reg)).predict(X), pred, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(load_model(save_model(tmp_path / "reg", reg, None)).estimator.predict(X), pred,
                               rtol=1e-5, atol=1e-6)


class _UserNet(nn.Module):
    def __init__(self, n_features: int, n_outputs: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_features, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def test_a_user_module_or_the_cnn_with_tabm_is_refused() -> None:
    X, y = _data()
    with pytest.raises(ModuleError, match=r"tabm=4 cannot apply to _UserNet.*leave tabm at 1"):
        RegularizedNetClassifier(module=_UserNet, tabm=4, **FAST).fit(X, y)
    assert RegularizedNetClassifier(module=_UserNet, **FAST).fit(X, y).predict(X).shape == (len(X),)
    assert "tabm" in ModuleFactory.of(_UserNet).missing_arguments()  # a search leaves it out
    with pytest.raises(ModuleError, match=r"tabm=2 cannot apply to CNN"):
        ModuleFactory.of(None, "cnn").check(RegConfig(architecture="cnn", tabm=2), {})
    assert ModuleFactory.of(None, "cnn").unsupported(RegConfig(architecture="cnn")) == []


def test_a_tabm_trial_trains_alone_not_in_a_cohort() -> None:
    problem = cohort_problem(RegConfig(tabm=8))
    assert problem is not None and "tabm=8" in problem
    assert cohort_problem(RegConfig(tabm=1)) is None
