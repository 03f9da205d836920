"""Bring your own network: ``module=`` with skorch's ``module__NAME`` routing, the sklearn
contract around it (clone, get/set_params, GridSearchCV, pickle, saving) and the errors a module
that cannot work gets before any training."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from byo_modules import BrokenForward, Frozen, NoDropout, ResidualMLP, WrongWidth, mlp_factory
from cli_helpers import run_cli
from mlflow import MlflowClient
from sklearn.base import clone
from sklearn.datasets import load_digits, make_regression
from sklearn.model_selection import GridSearchCV
from torch import nn

from regtune import RegTuneClassifier, RegularizedNetClassifier, RegularizedNetRegressor
from regtune.data.loading import load_dataset
from regtune.estimators.persistence import load_model, save_model
from regtune.exceptions import ModuleError, RegConfigError
from regtune.nn.models import MLP, ModuleFactory, load_module
from regtune.space.space import SearchSpace
from regtune.tuning.trial import Folds, Network, check_network

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


def _local_module() -> type[nn.Module]:
    """A linear module class defined in a function: no import path for a fresh process."""

    class Local(nn.Module):
        def __init__(self, n_features: int, n_outputs: int) -> None:
            super().__init__()
            self.linear = nn.Linear(n_features, n_outputs)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x)

    return Local


def test_a_module_defined_in_a_function_cannot_be_saved_and_says_why(tmp_path) -> None:
    Local = _local_module()
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


# --- the CLI: --model FILE.py:CLASS, logged with its code, served in a fresh process ------------

NETS_FILE = '''
import torch
from torch import nn


class TinyConv(nn.Module):
    def __init__(self, image_shape, n_outputs, channels=4):
        super().__init__()
        c, h, w = image_shape
        self.conv = nn.Conv2d(c, channels, 3, padding=1)
        self.drop = nn.Dropout(0.0)
        self.head = nn.Linear(channels * h * w, n_outputs)

    def forward(self, x):
        return self.head(self.drop(torch.relu(self.conv(x))).flatten(1))


class TinyMLP(nn.Module):
    def __init__(self, n_features, n_outputs, width=16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features, width), nn.ReLU(), nn.Dropout(0.0), nn.Linear(width, n_outputs))

    def forward(self, x):
        return self.net(x)
'''

SPACE = '''
fixed: {max_epochs: 4, batch_size: 32}
params:
  lr: {type: float, low: 1.0e-3, high: 3.0e-2, log: true, default: 1.0e-2}
module:
  channels: {type: int, low: 2, high: 6, default: 4}
regularizers:
  dropout:
    dropout: {type: float, low: 0.05, high: 0.3}
  batch_norm:
    batch_norm: {type: categorical, choices: [before_activation]}
'''


def _fresh(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    """A new Python process, with nothing of the tests on its path: only the MLflow model knows
    the module."""
    cwd.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("data", ["npz", pytest.param("csv", marks=pytest.mark.slow)])
def test_cli_tunes_a_model_file_and_a_fresh_process_serves_it(
    data: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    name = f"nets_{uuid.uuid4().hex[:8]}"  # a module name of its own: file modules stay imported
    model_file = tmp_path / "src" / f"{name}.py"
    model_file.parent.mkdir()
    model_file.write_text(NETS_FILE)
    X, y = load_digits(return_X_y=True)
    X, y = X[:240], y[:240]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    if data == "npz":
        np.savez(tmp_path / "digits.npz", X=X.reshape(-1, 8, 8), y=y)
        (tmp_path / "space.yaml").write_text(SPACE)
        argv = ["digits.npz", "--model", f"src/{name}.py:TinyConv", "--space", "space.yaml"]
    else:
        pd.DataFrame(X).assign(label=y).to_csv(tmp_path / "digits.csv", index=False)
        argv = ["digits.csv", "--model", f"src/{name}.py:TinyMLP", "--space", str(Path(__file__).parent / "spaces" / "tiny.yaml")]
    code, out, err = run_cli(capsys, "tune", *argv, "--trials", "3", "--cv", "1", "-q", "--tracking-uri", uri)
    assert code == 0, err
    parent = out.split("parent run ")[1].split()[0]
    study = f"digits.{data}-Tiny{'Conv' if data == 'npz' else 'MLP'}"
    assert study in out
    if data == "npz":  # the module's own parameter was searched; batch norm, which it cannot take, was not
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
            str(tmp_path / "regtune.journal")))
        [name] = optuna.get_all_study_names(storage)
        params = optuna.load_study(study_name=name, storage=storage).trials[0].params
        assert "module__channels" in params and "use_batch_norm" not in params
    expected = load_dataset(tmp_path / f"digits.{data}")
    model_file.unlink()  # the model must carry its own copy of the code

    served = _fresh(tmp_path / "elsewhere", str(Path(sys.executable).with_name("regtune")), "predict",
                    str(tmp_path / f"digits.{data}"), "--run", parent, "--tracking-uri", uri)
    assert served.returncode == 0, served.stderr
    predicted = np.array([int(line) for line in served.stdout.split()[1:]])
    assert len(predicted) == 240 and (predicted == expected.y.to_numpy()).mean() > 0.5

    if data != "csv":
        return  # mlflow.pyfunc in a fresh process: once is enough (slow)
    model_uri = MlflowClient(uri).get_run(parent).data.tags["regtune.model_uri"]
    script = ("import sys, mlflow, numpy as np, pandas as pd; mlflow.set_tracking_uri(sys.argv[1]); "
              "m = mlflow.pyfunc.load_model(sys.argv[2]); X = pd.read_csv(sys.argv[3]); "
              "print(' '.join(map(str, m.predict(X))))")
    expected.X.to_csv(tmp_path / "rows.csv", index=False)
    pyfunc = _fresh(tmp_path / "elsewhere", sys.executable, "-c", script, uri, model_uri, str(tmp_path / "rows.csv"))
    assert pyfunc.returncode == 0, pyfunc.stderr
    assert np.array_equal(np.array(pyfunc.stdout.split(), dtype=int), predicted)


def test_cli_refuses_a_module_that_cannot_work_before_any_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    name = f"bad_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(NETS_FILE + "\n\nclass Wide(TinyMLP):\n"
                                          "    def forward(self, x):\n        return torch.cat([self.net(x)] * 2, 1)\n")
    code, out, err = run_cli(capsys, "tune", "iris", "--model", f"{name}.py:Wide", "--trials", "2", "-q",
                          "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db")
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert "Wide's forward returned torch.float32 of shape (2, 6)" in err and "expected floats of shape (2, 3)" in err
    assert not (tmp_path / "regtune.journal").exists() or "iris" not in (tmp_path / "regtune.journal").read_text()
    code, _, err = run_cli(capsys, "tune", "iris", "--model", f"{name}.py:Nope", "--trials", "2", "-q")
    assert code == 2 and "has no 'Nope'; its nn.Module classes: TinyConv, TinyMLP, Wide" in err
    code, _, err = run_cli(capsys, "tune", "iris", "--model", "missing.py:Net", "--trials", "2", "-q")
    assert code == 2 and "no such file 'missing.py'" in err


# --- the tuner --------------------------------------------------------------------------------


def test_the_tuner_searches_module_params_and_leaves_out_what_the_module_cannot_take(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(
        "fixed: {max_epochs: 3, batch_size: 64}\n"
        "params:\n  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true, default: 5.0e-3}\n"
        "  n_layers: {type: int, low: 1, high: 2, default: 1}\n  width: {type: int, low: 8, high: 16, default: 8}\n"
        "module:\n  width: {type: int, low: 8, high: 32, default: 16}\n"
        "regularizers:\n  dropout:\n    dropout: {type: float, low: 0.1, high: 0.3}\n"
        "    dropout_variant: {type: categorical, choices: [standard, gaussian]}\n"
        "  batch_norm:\n    batch_norm: {type: categorical, choices: [before_activation]}\n  l2:\n"
        "    l2: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}\n"
    )
    X, y = _digits(200)
    search = RegTuneClassifier(module=ResidualMLP, module__depth=1, space=str(space), n_trials=4, cv=1,
                               tracking_uri="off", random_state=0).fit(X, y)
    sampled = set().union(*(t.params for t in search.study_.trials))
    assert "module__width" in sampled and {"use_dropout", "use_l2"} <= sampled
    assert not sampled & {"use_batch_norm", "dropout_variant", "n_layers", "width"}  # it takes none of these
    best = search.best_estimator_
    assert best.module is ResidualMLP and best.module__depth == 1
    assert best.module__width == search.best_params_["module__width"]
    assert best.module_.inp.out_features == best.module__width


def test_the_tuner_refuses_a_bad_module_before_the_study_starts(tmp_path: Path) -> None:
    X, y = _digits(100)
    journal = tmp_path / "study.journal"
    with pytest.raises(ModuleError, match=r"WrongWidth's forward returned .* expected floats of shape \(\d+, 10\)"):
        RegTuneClassifier(module=WrongWidth, storage=str(journal), n_trials=2, tracking_uri="off").fit(X, y)
    assert not journal.exists() or journal.stat().st_size == 0
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  lr: {type: float, low: 1.0e-3, high: 1.0e-2, default: 5.0e-3}\n"
                     "module:\n  widht: {type: int, low: 8, high: 32, default: 16}\n")
    with pytest.raises(ModuleError, match="module__widht: ResidualMLP takes no argument 'widht'; it takes width, depth"):
        RegTuneClassifier(module=ResidualMLP, space=str(space), n_trials=2, tracking_uri="off").fit(X, y)


def test_a_module_mlflow_cannot_ship_is_tuned_without_logging_the_model(tmp_path: Path) -> None:
    Local = _local_module()
    X, y = _digits(100)
    with pytest.warns(UserWarning, match="the best model will not be logged to MLflow: module .*Local cannot be saved"):
        search = RegTuneClassifier(module=Local, space="minimal", n_trials=2, cv=1, random_state=0,
                                   tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").fit(X, y)
    assert "regtune.model_uri" not in MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(
        search.mlflow_run_id_).data.tags



def test_a_module_mlflow_cannot_ship_raises_no_warning_when_nothing_is_logged() -> None:
    """With tracking off no model is logged whatever the module, so there is nothing to warn of
    (the warning came all the same, for a CNN defined in the script being run)."""
    import warnings

    Local = _local_module()
    X, y = _digits(100)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="the best model will not be logged")
        RegTuneClassifier(module=Local, space="minimal", n_trials=2, cv=1, random_state=0, tracking_uri="off").fit(X, y)

def test_weight_regularizers_refuse_a_module_without_the_layers_they_act_on() -> None:
    X, y = _digits(60)
    with pytest.raises(RegConfigError, match=r"max_norm cannot apply to NoDropout: it has no hidden Linear or "
                                             r"convolution layer .* constrained_layers="):
        RegularizedNetClassifier(module=NoDropout, max_norm=1.0, **FAST).fit(X, y)

    class Raw(nn.Module):  # its one weight is a bare parameter: no layer type to find it by
        def __init__(self, n_features: int, n_outputs: int) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(n_features, n_outputs))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ self.w

    with pytest.raises(RegConfigError, match=r"l2 cannot apply to Raw: it has no Linear, convolution or embedding"):
        RegularizedNetClassifier(module=Raw, l2=1e-3, **FAST).fit(X, y)
    assert RegularizedNetClassifier(module=Raw, **FAST).fit(X, y).score(X, y) > 0.5  # unregularized, it trains


def test_check_network_finds_what_a_module_cannot_take(tmp_path: Path) -> None:
    X, y = _digits(100)
    folds = Folds(X, y, "classification", [(np.arange(80), np.arange(80, 100))])
    space = SearchSpace.from_yaml("default")
    found = check_network(Network(NoDropout), space, folds, "cpu")
    assert set(found.unsupported) == {"hidden_layer_sizes", "conv_channels", "activation", "dropout_variant",
                                      "batch_norm", "dropout", "max_norm", "spectral_norm", "numeric_embedding",
                                      "embedding_dim", "n_frequencies", "frequency_sigma", "tabm"}
    trimmed = found.space(space)
    assert not {"dropout", "batch_norm", "max_norm", "spectral_norm"} & set(trimmed.families())
    assert {"l2", "weight_decay", "mixup", "early_stopping"} <= set(trimmed.families())
    assert {p.name for p in trimmed.params}.isdisjoint({"n_layers", "width", "activation"})
    assert check_network(Network(), space, folds, "cpu") == Network()  # the built-in network: nothing to check
