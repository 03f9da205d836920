"""The built-in networks: an MLP with no hidden layer (``hidden_layer_sizes=()``) is a linear
model that every regularizer still reaches (issue 12)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer
from torch import nn

from regtune import RegConfig, RegularizedNetClassifier, RegularizedNetRegressor
from regtune.config import RegConfigError
from regtune.nn.models import CNN, MLP, build_model, dropout_layers
from regtune.nn.regularizers import weight_layers


@pytest.mark.parametrize("embedding", ["none", "periodic", "piecewise_linear"])
def test_an_mlp_without_hidden_layers_is_its_linear_head(embedding: str) -> None:
    torch.manual_seed(0)
    edges = np.tile(np.linspace(-3, 3, 9), (5, 1)) if embedding == "piecewise_linear" else None
    net = MLP(5, 3, hidden_layer_sizes=(), numeric_embedding=embedding, numeric_columns=tuple(range(5)),
              bin_edges=edges, activation="gelu", batch_norm="before_activation").eval()
    assert [type(m) for m in net.modules() if isinstance(m, (nn.Linear, nn.BatchNorm1d, nn.GELU))] == [nn.Linear]
    x1, x2 = torch.randn(64, 5), torch.randn(64, 5)
    if embedding != "none":  # linear in the embedded columns: an additive model of the inputs
        x1, x2 = net.embedding(x1), net.embedding(x2)
        f = net.head
    else:
        f = net
    for a in (0.0, 0.3, 1.7):
        torch.testing.assert_close(f(a * x1 + (1 - a) * x2), a * f(x1) + (1 - a) * f(x2), rtol=1e-4, atol=1e-4)


def test_without_hidden_layers_dropout_drops_the_inputs_and_batch_norm_does_nothing() -> None:
    for variant, kind in (("standard", nn.Dropout), ("alpha", nn.AlphaDropout)):
        net = MLP(4, 2, hidden_layer_sizes=(), dropout=0.3, dropout_variant=variant)
        assert [type(m) for m in net.body] == [kind] and dropout_layers(net)[0].p == 0.3
    cnn = CNN((1, 8, 8), 2, conv_channels=(4,), hidden_layer_sizes=(), dropout=0.3)
    assert isinstance(cnn.body[0], nn.Dropout)  # right before the head, as in the MLP
    config = RegConfig(hidden_layer_sizes=(), batch_norm="after_activation")
    assert not any(isinstance(m, nn.BatchNorm1d) for m in build_model(config, 4, 2).modules())


def test_constraints_act_on_the_head_when_it_is_the_only_layer() -> None:
    net = build_model(RegConfig(hidden_layer_sizes=()), 4, 2)
    assert weight_layers(net, include_head=False) == [net.head]
    assert weight_layers(build_model(RegConfig(hidden_layer_sizes=(8,)), 4, 2), include_head=False)[0].out_features == 8


def test_hidden_layer_sizes_may_be_empty_but_conv_channels_may_not() -> None:
    assert RegConfig(hidden_layer_sizes=()).hidden_layer_sizes == ()
    assert RegConfig(hidden_layer_sizes=[]).hidden_layer_sizes == ()
    with pytest.raises(RegConfigError, match=r"conv_channels=\(\) must be a non-empty sequence"):
        RegConfig(conv_channels=())
    with pytest.raises(RegConfigError, match=r"hidden_layer_sizes=\(0,\) must be a sequence of positive"):
        RegConfig(hidden_layer_sizes=(0,))


def test_a_linear_net_fits_like_logistic_regression_and_l2_shrinks_its_weights() -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    common = dict(hidden_layer_sizes=(), lr=1e-2, max_epochs=60, early_stopping=False, random_state=0, device="cpu")
    free = RegularizedNetClassifier(**common).fit(X, y)
    shrunk = RegularizedNetClassifier(**common, l2=1e-1).fit(X, y)
    assert free.score(X, y) >= LogisticRegression(max_iter=2000).fit(X, y).score(X, y) - 0.02
    norm = [float(e.module_.head.weight.detach().norm()) for e in (free, shrunk)]
    assert norm[1] < 0.5 * norm[0], norm
    embedded = RegularizedNetClassifier(**{**common, "max_epochs": 3}, numeric_embedding="piecewise_linear").fit(X, y)
    assert embedded.module_.embedding is not None and len(embedded.module_.body) == 0
    reg = RegularizedNetRegressor(**common, weight_decay=1e-2).fit(X, X[:, :3] @ np.array([1.0, -2.0, 0.5]))
    assert reg.score(X, X[:, :3] @ np.array([1.0, -2.0, 0.5])) > 0.95
