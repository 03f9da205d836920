"""Bring your own network: ``module=`` with skorch's ``module__NAME`` routing, the sklearn
contract around it (clone, get/set_params, GridSearchCV, pickle, saving) and the errors a module
that cannot work gets before any training."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from byo_modules import BrokenForward, Frozen, NoDropout, ResidualMLP, WrongWidth, mlp_factory
from sklearn.base import clone
from sklearn.datasets import load_digits, make_regression
from sklearn.model_selection import GridSearchCV
from torch import nn

from regtune import RegularizedNetClassifier, RegularizedNetRegressor
from regtune.estimators.persistence import load_model, save_model
from regtune.exceptions import ModuleError
from regtune.nn.models import MLP, ModuleFactory, load_module

FAST = dict(lr=1e-2, max_epochs=6, early_stopping=False, random_state=0, device="cpu")


def _digits(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:n], y[:n]


def test_module_params_are_parameters_for_get_set_params_and_clone() -> None:
    net = RegularizedNetClassifier(module=ResidualMLP, module__width=16, dropout=0.1)
    params = net.get_params()
    assert params["module"] is ResidualMLP and params["module__width"] == 16
    assert net.module__width == 16 and net.module_params() == {"width": 16}
    net.set_params(module__width=8, module__depth=3)  # new keys are accepted, like skorch
    twin = clone(net)
    assert twin.get_params()["module__width"] == 8 and twin.module__depth == 3
    assert "module__width=8" in repr(twin)
    with pytest.raises(AttributeError):
        _ = twin.module__missing


def test_init_takes_module_keywords_only() -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'widht'.*module__NAME=value"):
        RegularizedNetClassifier(widht=3)


def test_grid_search_over_module_params_and_regularizers() -> None:
    X, y = _digits(200)
    net = RegularizedNetClassifier(module=ResidualMLP, module__depth=1, **FAST)
    search = GridSearchCV(net, {"module__width": [8, 32], "dropout": [0.0, 0.3]}, cv=2).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_params_["module__width"] in (8, 32)
    best = search.best_estimator_
    assert best.module_.inp.out_features == best.module__width
    assert all(m.p == best.dropout for m in best.module_.modules() if isinstance(m, nn.Dropout))
    assert best.score(X, y) > 0.8


def test_the_factory_gets_the_sizes_and_settings_its_signature_names() -> None:
    seen = {}

    def factory(n_features: int, n_classes: int, image_shape: tuple | None, dropout: float, width: int = 4):
        seen.update(n_features=n_features, n_classes=n_classes, image_shape=image_shape, dropout=dropout, width=width)
        return nn.Sequential(nn.Flatten(), nn.Linear(n_features, width), nn.ReLU(), nn.Linear(width, n_classes))

    X, y = _digits()
    RegularizedNetClassifier(module=factory, module__width=7, dropout=0.2, **FAST).fit(X.reshape(-1, 8, 8), y)
    assert seen == {"n_features": 64, "n_classes": 10, "image_shape": (1, 8, 8), "dropout": 0.2, "width": 7}


def test_regressor_with_a_custom_module_and_two_targets() -> None:
    X, y = make_regression(200, 10, n_targets=2, noise=1.0, random_state=0)
    net = RegularizedNetRegressor(module=ResidualMLP, module__width=32, max_epochs=40, lr=1e-2, random_state=0,
                                  device="cpu").fit(X, y)
    assert net.module_.out.out_features == 2
    assert net.predict(X).shape == (200, 2) and net.score(X, y) > 0.8


def test_pickle_and_saving_keep_the_module_and_its_params(tmp_path) -> None:
    X, y = _digits()
    net = RegularizedNetClassifier(module=ResidualMLP, module__width=16, dropout=0.2, **FAST).fit(X, y)
    proba = net.predict_proba(X)
    again = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(again.predict_proba(X), proba)
    assert again.module__width == 16 and isinstance(again.module_, ResidualMLP)
    model = load_model(save_model(tmp_path / "saved", net, None))
    assert model.estimator.module == "byo_modules:ResidualMLP"  # saved by reference, as JSON
    np.testing.assert_allclose(model.predict(X), net.predict(X))


def test_a_module_defined_in_a_function_cannot_be_saved_and_says_why(tmp_path) -> None:
    class Local(nn.Module):
        def __init__(self, n_features: int, n_outputs: int) -> None:
            super().__init__()
            self.linear = nn.Linear(n_features, n_outputs)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x)

    X, y = _digits(100)
    net = RegularizedNetClassifier(module=Local, **FAST).fit(X, y)
    with pytest.raises(ModuleError, match=r"Local cannot be saved by reference: it is defined inside a function"):
        save_model(tmp_path / "saved", net, None)


def test_the_built_in_networks_go_through_the_same_factory_path() -> None:
    factory = ModuleFactory.of(None, "mlp")
    assert factory.factory is MLP and factory.builtin
    assert set(factory.parameters) >= {"n_features", "n_outputs", "hidden_layer_sizes", "dropout", "batch_norm"}
    assert ModuleFactory.of(None, "cnn").takes("image_shape")
    assert load_module("byo_modules:ResidualMLP") is ResidualMLP


# --- a module that cannot work: one error before any training ------------------------------------


@pytest.mark.parametrize(("params", "message"), [
    ({"module": BrokenForward}, r"BrokenForward's forward failed on a batch of shape \(2, 64\): RuntimeError"),
    ({"module": WrongWidth}, r"WrongWidth's forward returned torch.float32 of shape \(2, 11\) for a batch of shape "
                             r"\(2, 64\); expected floats of shape \(2, 10\)"),
    ({"module": Frozen}, r"Frozen has no trainable parameters"),
    ({"module": NoDropout, "module__width": 3}, r"module__width: NoDropout takes no argument 'width'; it takes no "
                                                r"arguments of its own"),
    ({"module": ResidualMLP, "module__widht": 3}, r"module__widht: ResidualMLP takes no argument 'widht'; it takes "
                                                  r"width, depth"),
    ({"module": ResidualMLP, "module__n_features": 3}, r"module__n_features: regtune passes n_features"),
    ({"module": ResidualMLP, "module__dropout": 0.1}, r"module__dropout: set the estimator's dropout= instead"),
    ({"module": mlp_factory, "module__width": "wide"}, r"mlp_factory\(n_features=64, n_outputs=10, dropout=0.0, "
                                                        r"batch_norm='none', width='wide'\) failed: TypeError"),
    ({"module": ResidualMLP(4, 2)}, r"module=ResidualMLP\(...\) is a module instance; pass the class"),
    ({"module": ResidualMLP, "hidden_layer_sizes": (64,)}, r"hidden_layer_sizes=\(64,\) cannot apply to ResidualMLP"),
    ({"module": ResidualMLP, "architecture": "cnn"}, r"architecture='cnn' picks a built-in network; with "
                                                     r"module=ResidualMLP leave"),
])
def test_a_module_that_cannot_work_fails_before_training_with_one_clear_error(params: dict, message: str) -> None:
    X, y = _digits(50)
    trained = []
    net = RegularizedNetClassifier(**{**FAST, "callbacks": [_Recorder(trained)]}, **params)
    with pytest.raises(ModuleError, match=message):
        net.fit(X, y)
    assert not trained  # not one epoch ran


class _Recorder:
    def __init__(self, seen: list) -> None:
        self.seen = seen

    def on_train_begin(self, trainer: object) -> None:
        pass

    def on_epoch_end(self, trainer: object) -> None:
        self.seen.append(1)

    def on_train_end(self, trainer: object) -> None:
        pass
