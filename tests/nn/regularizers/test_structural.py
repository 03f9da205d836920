"""Dropout variants and batch-norm placement: active when training, off at eval, in the right order;
on a custom module, dropout reaches its dropout layers and what it cannot take is refused."""

from __future__ import annotations

import pytest
import torch
from byo_modules import NoDropout, ResidualMLP, SmallConvNet, mlp_factory
from sklearn.datasets import load_digits
from torch import nn

from regtune import RegConfig, RegularizedNetClassifier
from regtune.config import RegConfigError
from regtune.exceptions import ModuleError
from regtune.nn.models import build_model, dropout_layers
from regtune.nn.regularizers import GaussianDropout, make_dropout

IMAGE = (1, 8, 8)
VARIANTS = ["standard", "alpha", "gaussian"]


def _digits(n: int = 300) -> tuple:
    X, y = load_digits(return_X_y=True)
    return X[:n], y[:n]


# --- dropout -------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_dropout_is_active_in_training_and_off_at_eval(variant: str) -> None:
    torch.manual_seed(0)
    model = build_model(RegConfig(hidden_layer_sizes=(32, 32), dropout=0.3, dropout_variant=variant), 10, 3)
    dropouts = [m for m in model.modules() if isinstance(m, (nn.Dropout, nn.AlphaDropout, GaussianDropout))]
    assert len(dropouts) == 2  # one after each hidden block
    x = torch.randn(16, 10)
    model.train()
    assert not torch.allclose(model(x), model(x))
    model.eval()
    out = model(x)
    assert torch.equal(out, model(x))
    for m in dropouts:
        m.train(False)
        assert torch.equal(m(x), x)  # identity at eval, no rescaling either


def test_alpha_dropout_keeps_the_mean_and_variance_of_selu_normalized_input() -> None:
    torch.manual_seed(0)
    x = torch.randn(200_000)  # what SELU layers keep their activations at
    out = make_dropout(0.2, "alpha").train()(x)
    assert abs(float(out.mean())) < 0.01
    assert float(out.var()) == pytest.approx(1.0, abs=0.02)
    plain = make_dropout(0.2, "standard").train()(x)
    assert float(plain.var()) == pytest.approx(1 / 0.8, abs=0.02)  # what alpha dropout avoids


def test_alpha_dropout_keeps_a_deep_selu_network_normalized() -> None:
    variances = {}
    for variant in ("alpha", "standard"):
        torch.manual_seed(0)
        config = RegConfig(hidden_layer_sizes=(256,) * 6, activation="selu", dropout=0.1, dropout_variant=variant)
        model = build_model(config, 64, 2).train()
        with torch.no_grad():
            h = model.body(torch.randn(4096, 64))
        variances[variant] = float(h.var())
        if variant == "alpha":
            assert abs(float(h.mean())) < 0.05
    assert variances["alpha"] == pytest.approx(1.0, abs=0.1)
    assert variances["standard"] > 1.3  # plain dropout inflates the variance layer after layer


def test_gaussian_dropout_preserves_the_mean_with_the_bernoulli_variance() -> None:
    torch.manual_seed(0)
    x = torch.full((200_000,), 3.0)
    out = GaussianDropout(0.2).train()(x)
    assert float(out.mean()) == pytest.approx(3.0, abs=0.02)
    assert float(out.std()) == pytest.approx(3.0 * (0.2 / 0.8) ** 0.5, rel=0.02)
    assert torch.equal(GaussianDropout(0.2).eval()(x), x)


@pytest.mark.parametrize("p", [0.0, 0.5])
def test_unknown_dropout_variant_is_a_clear_error(p: float) -> None:
    with pytest.raises(ValueError, match=r"dropout_variant='spatial'.*'standard', 'alpha', 'gaussian'"):
        make_dropout(p, "spatial")
    with pytest.raises(RegConfigError, match="dropout_variant='spatial'"):
        RegConfig(dropout=p, dropout_variant="spatial")


def test_fitted_estimator_with_dropout_predicts_deterministically() -> None:
    X, y = _digits()
    net = RegularizedNetClassifier(
        (64,), dropout=0.5, max_epochs=5, early_stopping=False, lr=1e-2, random_state=0, device="cpu"
    ).fit(X, y)
    assert not net.module_.training
    first = net.predict_proba(X)
    assert (first == net.predict_proba(X)).all()
    assert (net.predict(X) == net.classes_[first.argmax(1)]).all()


# --- batch norm ----------------------------------------------------------------------------

_ORDER = {
    "before_activation": [nn.Linear, nn.BatchNorm1d, nn.ReLU],
    "after_activation": [nn.Linear, nn.ReLU, nn.BatchNorm1d],
    "none": [nn.Linear, nn.ReLU],
}
_CONV_ORDER = {
    "before_activation": [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d],
    "after_activation": [nn.Conv2d, nn.ReLU, nn.BatchNorm2d, nn.MaxPool2d],
    "none": [nn.Conv2d, nn.ReLU, nn.MaxPool2d],
}


@pytest.mark.parametrize("placement", list(_ORDER))
def test_batch_norm_placement_shows_in_the_module_order(placement: str) -> None:
    config = RegConfig(hidden_layer_sizes=(16, 16), conv_channels=(4, 8), batch_norm=placement)
    mlp = build_model(config, 64, 10)
    assert [type(m) for m in mlp.body] == _ORDER[placement] * 2

    cnn = build_model(config.replace(architecture="cnn"), 64, 10, IMAGE)
    assert [type(m) for m in cnn.features] == [nn.Unflatten, *_CONV_ORDER[placement] * 2, nn.Flatten]
    assert [type(m) for m in cnn.body] == _ORDER[placement] * 2
    n_norms = sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in cnn.modules())
    assert n_norms == (0 if placement == "none" else 4)


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
@pytest.mark.parametrize("placement", ["before_activation", "after_activation"])
def test_batch_norm_trains_in_both_placements(placement: str, architecture: str) -> None:
    X, y = _digits(257)  # 257 = 2 * 128 + 1: a last batch of one sample must not break batch norm
    net = RegularizedNetClassifier(
        (32,), conv_channels=(8,), architecture=architecture, image_shape=IMAGE, batch_norm=placement,
        max_epochs=8, early_stopping=False, lr=1e-2, random_state=0, device="cpu",
    ).fit(X, y)
    assert net.score(X, y) > 0.9
    norms = [m for m in net.module_.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert norms and all(m.num_batches_tracked > 0 for m in norms)
    assert all(m.running_mean.abs().sum() > 0 for m in norms)  # statistics were gathered


# --- on a module a user brings ---------------------------------------------------------------


def test_dropout_sets_p_on_every_dropout_layer_of_a_custom_module() -> None:
    X, y = _digits()
    for module, params, layers in ((ResidualMLP, {"width": 32}, 2), (SmallConvNet, {"channels": 4}, 1)):
        X_in = X.reshape(-1, *IMAGE) if module is SmallConvNet else X
        net = RegularizedNetClassifier(module=module, dropout=0.3, max_epochs=3, early_stopping=False, lr=1e-2,
                                       random_state=0, device="cpu", **{f"module__{k}": v for k, v in params.items()})
        net.fit(X_in, y)
        dropouts = dropout_layers(net.module_)
        assert len(dropouts) == layers and all(m.p == 0.3 for m in dropouts)
        batch = torch.as_tensor(X_in[:16], dtype=torch.float32)
        net.module_.train()
        assert not torch.allclose(net.module_(batch), net.module_(batch))  # active in training
        first = net.predict_proba(X_in)
        assert (first == net.predict_proba(X_in)).all()  # off at eval
        # The baseline is unregularized: dropout=0 switches the module's own dropout off too.
        plain = RegularizedNetClassifier(module=module, max_epochs=1, device="cpu",
                                         **{f"module__{k}": v for k, v in params.items()}).fit(X_in, y)
        assert all(m.p == 0 for m in dropout_layers(plain.module_))


def test_a_factory_that_takes_dropout_and_batch_norm_builds_them_itself() -> None:
    X, y = _digits()
    net = RegularizedNetClassifier(module=mlp_factory, module__width=16, dropout=0.2, batch_norm="before_activation",
                                   max_epochs=3, early_stopping=False, random_state=0, device="cpu").fit(X, y)
    types = [type(m) for m in net.module_]
    assert types == [nn.Flatten, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout, nn.Linear]
    assert net.module_[4].p == 0.2


@pytest.mark.parametrize(("setting", "value"), [("dropout_variant", "alpha"), ("batch_norm", "before_activation")])
def test_structural_settings_a_module_cannot_take_are_refused_not_ignored(setting: str, value: str) -> None:
    X, y = _digits(50)
    net = RegularizedNetClassifier(module=ResidualMLP, dropout=0.2, device="cpu", **{setting: value})
    with pytest.raises(ModuleError, match=rf"{setting}='{value}' cannot apply to ResidualMLP: it takes no "
                                          rf"'{setting}' argument \(it takes width, depth\)"):
        net.fit(X, y)
    with pytest.raises(ModuleError, match=r"dropout=0.2 cannot apply to NoDropout: it has no nn.Dropout layer"):
        RegularizedNetClassifier(module=NoDropout, dropout=0.2, device="cpu").fit(X, y)
