"""Numeric feature embeddings (regtune/nn/embeddings.py) through the MLP, the estimators and spaces."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from byo_modules import ResidualMLP
from locations import TINY_SPACE
from sklearn.base import clone
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.estimator_checks import parametrize_with_checks

from regtune import RegTuneRegressor, RegularizedNetClassifier, RegularizedNetRegressor, SearchSpace
from regtune.config import RegConfig
from regtune.estimators.net import EXPECTED_FAILED_CHECKS
from regtune.estimators.persistence import load_model, save_model
from regtune.exceptions import ModuleError, RegConfigError, RegtuneError
from regtune.nn.embeddings import NumericEmbedding, fit_numeric_columns
from regtune.nn.models import MLP
from regtune.nn.regularizers import decay_parameters, weight_layers

_FAST = dict(max_epochs=40, patience=5, lr=1e-2, device="cpu")


def _sine(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 2))
    return X, np.sin(8 * X[:, 0])


def _mixed(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Columns: numeric, binary, one-hot pair, constant, numeric with 3 values."""
    rng = np.random.default_rng(seed)
    numeric = rng.normal(size=n)
    binary = rng.integers(0, 2, n).astype(float)
    onehot = np.eye(2)[rng.integers(0, 2, n)]
    three = rng.integers(0, 3, n).astype(float)
    X = np.column_stack([numeric, binary, onehot, np.full(n, 5.0), three])
    return X, numeric + binary + three + 0.1 * rng.normal(size=n)


def test_periodic_and_piecewise_linear_fit_a_sharp_function_none_cannot() -> None:
    # Spectral bias: at equal epochs a plain MLP on x1 in [-1, 1] smooths sin(8 x1) away
    # (MSE ~0.2 of a variance of 0.5); an embedded column fits it (~1e-3).
    X, y = _sine(600, 0)
    Xt, yt = _sine(400, 1)
    mse = {}
    for kind in ("none", "periodic", "piecewise_linear"):
        est = RegularizedNetRegressor((64, 64), numeric_embedding=kind, frequency_sigma=1.0, max_epochs=60,
                                      early_stopping=False, random_state=0, device="cpu").fit(X, y)
        mse[kind] = float(np.mean((est.predict(Xt) - yt) ** 2))
    assert mse["none"] > 0.05, mse
    assert mse["periodic"] < mse["none"] / 5, mse
    assert mse["piecewise_linear"] < mse["none"] / 5, mse


def test_only_columns_with_more_than_two_training_values_are_embedded() -> None:
    X, y = _mixed()
    columns, edges = fit_numeric_columns(X, n_bins=8)
    assert columns == (0, 5)
    assert edges.shape == (2, 9)
    # the three-valued column has 2 real bins; the padding repeats its last edge
    assert np.all(np.diff(edges[1]) >= 0) and np.count_nonzero(np.diff(edges[1])) == 2
    est = RegularizedNetRegressor((8,), numeric_embedding="piecewise_linear", n_bins=8, early_stopping=False,
                                  **{**_FAST, "max_epochs": 2}).fit(X, y)
    assert tuple(est._x_numeric_) == (0, 5)
    embedding = est.module_.embedding
    assert embedding.passed_index.tolist() == [1, 2, 3, 4]
    rows = torch.as_tensor(X[:5], dtype=torch.float32)
    out = embedding(rows)
    # binary, one-hot and constant columns reach the first layer untouched
    torch.testing.assert_close(out[:, :4], rows[:, [1, 2, 3, 4]])
    assert out.shape == (5, 4 + 2 * est.embedding_dim)


def test_piecewise_linear_codes_are_monotone_and_extrapolate() -> None:
    edges = np.array([[0.0, 1.0, 2.0, 2.0]])  # 2 real bins and a padding bin
    emb = NumericEmbedding(1, "piecewise_linear", (0,), edges, embedding_dim=2)
    from regtune.nn import embeddings

    codes = embeddings._piecewise_linear(torch.tensor([[-1.0], [0.5], [1.5], [3.0]]), emb.bin_edges)[:, 0]
    expected = torch.tensor([[-1.0, 0.0, 0.0], [0.5, 0.0, 0.0], [1.0, 0.5, 0.0], [1.0, 2.0, 0.0]])
    torch.testing.assert_close(codes, expected)


def test_bin_edges_come_from_the_training_rows_only() -> None:
    X, y = _sine(200, 0)
    X_val = X[:50] * 100  # far outside the training range
    est = RegularizedNetRegressor((8,), numeric_embedding="piecewise_linear", **{**_FAST, "max_epochs": 2})
    for _ in est.fit_iter(X, y, validation_data=(X_val, y[:50])):
        pass
    scaled = (X - X.mean(axis=0)) / X.std(axis=0)
    _, expected = fit_numeric_columns(scaled, est.n_bins)
    np.testing.assert_allclose(est._x_bin_edges_, expected, rtol=1e-5, atol=1e-5)
    # with the internal early-stopping split, the held-out half does not move the edges either
    est = RegularizedNetRegressor((8,), numeric_embedding="piecewise_linear", validation_fraction=0.5,
                                  random_state=0, **{**_FAST, "max_epochs": 2}).fit(X, y)
    seed = int(check_random_state(0).randint(np.iinfo(np.int32).max))
    train_part, _ = train_test_split(scaled, test_size=100, random_state=seed)
    np.testing.assert_allclose(est._x_bin_edges_, fit_numeric_columns(train_part, est.n_bins)[1], rtol=1e-5, atol=1e-5)
    assert not np.allclose(est._x_bin_edges_, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["periodic", "piecewise_linear"])
def test_pickle_json_round_trip_and_sklearn_params(kind: str, tmp_path: Path) -> None:
    X, y = _mixed()
    est = RegularizedNetRegressor((8,), numeric_embedding=kind, embedding_dim=4, n_frequencies=3, n_bins=5,
                                  frequency_sigma=0.5, random_state=0, **_FAST).fit(X, y)
    expected = est.predict(X)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(est)).predict(X), expected, rtol=1e-5, atol=1e-6)
    save_model(tmp_path / "m", est, None)
    np.testing.assert_allclose(load_model(tmp_path / "m").predict(X), expected, rtol=1e-5, atol=1e-6)

    params = est.get_params()
    assert {params[k] for k in ("numeric_embedding", "embedding_dim", "n_frequencies", "n_bins")} == {kind, 4, 3, 5}
    twin = clone(est)
    assert twin.get_params() == params and not hasattr(twin, "module_")
    twin.set_params(numeric_embedding="none").fit(X, y)
    assert twin.module_.embedding is None and twin._x_numeric_ is None


def test_embedding_parameters_are_left_alone_by_weight_regularizers() -> None:
    # Penalties, decay and weight noise find weights by layer type; constraints act on hidden
    # Linear layers. The embedding is neither, by choice (see regtune/nn/embeddings.py).
    model = MLP(6, 1, (16, 16), numeric_embedding="periodic", numeric_columns=(0, 5))
    embedding_ids = {id(p) for p in model.embedding.parameters()}
    assert embedding_ids and not embedding_ids & {id(p) for p in decay_parameters(model)}
    assert weight_layers(model, include_head=False) == [model.body[0], model.body[2]]
    X, y = _mixed()
    est = RegularizedNetRegressor((16,), numeric_embedding="periodic", l1=1e-2, l2=1e-2, weight_decay=1e-2,
                                  max_norm=1.0, weight_noise=1e-3, random_state=0, **_FAST).fit(X, y)
    assert np.isfinite(est.predict(X)).all()
    assert est.module_.body[0].weight.norm(dim=1).max() <= 1.0 + 1e-4
    assert est.module_.embedding.weight.abs().sum() > 0


def test_embedding_on_a_module_that_cannot_take_it_is_refused() -> None:
    X, y = _mixed()
    with pytest.raises(ModuleError, match="numeric_embedding='periodic' cannot apply to ResidualMLP"):
        RegularizedNetRegressor(module=ResidualMLP, numeric_embedding="periodic", **_FAST).fit(X, y)
    # its settings alone, with the embedding off, are not a setting the module must take
    RegularizedNetRegressor(module=ResidualMLP, embedding_dim=4, **{**_FAST, "max_epochs": 1}).fit(X, y)
    images = np.random.default_rng(0).normal(size=(20, 1, 8, 8))
    with pytest.raises(RegtuneError, match="numeric_embedding"):
        RegularizedNetClassifier(architecture="cnn", numeric_embedding="periodic", **_FAST).fit(images, np.arange(20) % 2)
    with pytest.raises(RegConfigError, match="n_bins=1"):
        RegConfig(n_bins=1)


def test_a_yaml_space_samples_the_embedding(tmp_path: Path) -> None:
    text = TINY_SPACE.read_text().replace(
        "params:\n", "params:\n"
        "  numeric_embedding: {type: categorical, choices: [none, periodic, piecewise_linear], default: none}\n"
        "  frequency_sigma: {type: float, low: 0.01, high: 3.0, log: true, default: 0.1}\n")
    path = tmp_path / "emb.yaml"
    path.write_text(text)
    space = SearchSpace.from_yaml(path)
    assert space.to_config(space.baseline_params()).numeric_embedding == "none"
    params = {**space.baseline_params(), "numeric_embedding": "piecewise_linear", "frequency_sigma": 0.5}
    config = space.sample(optuna.trial.FixedTrial(params))
    assert config.numeric_embedding == "piecewise_linear" and config.frequency_sigma == 0.5
    X, y = _mixed()
    est = RegTuneRegressor(space=str(path), n_trials=4, cv=2, tracking_uri="off", device="cpu",
                           random_state=0).fit(X, y)
    seen = {t.params.get("numeric_embedding") for t in est.study_.trials}
    assert "none" in seen and seen <= {"none", "periodic", "piecewise_linear"}
    assert est.best_estimator_.numeric_embedding == est.best_params_.get("numeric_embedding", "none")


@parametrize_with_checks(
    [
        RegularizedNetRegressor(hidden_layer_sizes=(32,), numeric_embedding="periodic", embedding_dim=4, **_FAST),
        RegularizedNetClassifier(hidden_layer_sizes=(32,), numeric_embedding="piecewise_linear", embedding_dim=4,
                                 **_FAST),
    ],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible_with_embeddings(estimator, check) -> None:
    check(estimator)


@pytest.mark.slow  # a real study and MLflow run end to end (~15 s alone, a minute on a busy machine)
def test_cli_tunes_with_piecewise_linear_and_the_saved_model_reproduces_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from regtune.cli.app import main
    from regtune.data.loading import load_dataset

    monkeypatch.chdir(tmp_path)
    space = tmp_path / "ple.yaml"
    space.write_text(TINY_SPACE.read_text().replace(
        "  max_epochs: 8\n", "  max_epochs: 8\n  numeric_embedding: piecewise_linear\n  n_bins: 6\n"))
    uri = f"sqlite:///{tmp_path}/mlflow.db"

    def run(*argv: str) -> str:
        try:
            main(list(argv))
        except SystemExit as stop:
            assert stop.code in (0, None), capsys.readouterr().err
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return out

    out = run("tune", "diabetes", "--space", str(space), "--trials", "2", "--cv", "1", "-q", "--tracking-uri", uri)
    parent = out.split("parent run ")[1].split()[0]
    out = run("predict", "diabetes", "--run", parent, "--tracking-uri", uri)
    predicted = np.array([float(line) for line in out.split()[1:]])
    [model_dir] = Path("mlruns").rglob("artifacts/regtune_model")
    model = load_model(model_dir)
    assert model.estimator.numeric_embedding == "piecewise_linear"
    assert model.estimator._x_bin_edges_.shape[1] == 7
    np.testing.assert_allclose(predicted, model.predict(load_dataset("diabetes").X), rtol=1e-4, atol=1e-3)
