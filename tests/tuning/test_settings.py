"""TuneSettings is the one declaration of the tuning settings: the CLI options, the RegTune
estimators' keywords and the workers' spec agree with it (checked by introspection), and
``space="auto"`` resolves to the space the data need."""

from __future__ import annotations

import inspect
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import typer

from regtune.cli.app import app
from regtune.data.loading import load_dataset
from regtune.exceptions import TuneError
from regtune.search.estimators import RegTuneClassifier, RegTuneRegressor
from regtune.tuning.settings import AUTO_SPACE, DEFAULTS, TuneSettings, help_of, resolve_space
from regtune.tuning.tuner import tune
from regtune.tuning.worker import WorkerSpec

FIELDS = {f.name for f in fields(TuneSettings)}


@pytest.mark.parametrize("estimator", [RegTuneClassifier, RegTuneRegressor])
def test_regtune_defaults_are_the_settings_defaults(estimator: type) -> None:
    shared = [p for p in inspect.signature(estimator.__init__).parameters.values() if p.name in FIELDS]
    assert len(shared) >= 15, [p.name for p in shared]
    wrong = {p.name: (p.default, getattr(DEFAULTS, p.name)) for p in shared if p.default != getattr(DEFAULTS, p.name)}
    assert not wrong


def _tune_options() -> dict[str, typer.core.TyperOption]:
    command = typer.main.get_command(app).commands["tune"]  # type: ignore[attr-defined]
    return {p.name: p for p in command.params}


def test_cli_tune_options_are_the_settings() -> None:
    options = _tune_options()
    shared = {name: option for name, option in options.items() if name in FIELDS}
    assert len(shared) >= 20, sorted(shared)
    for name, option in shared.items():
        assert option.default == getattr(DEFAULTS, name), name
        assert option.help == help_of(name), name
    assert options["quiet"].default is (not DEFAULTS.progress)
    assert "--trials" in options["n_trials"].opts and "--model" in options["module"].opts


def test_worker_spec_carries_the_settings_and_redeclares_none() -> None:
    spec_fields = {f.name: f for f in fields(WorkerSpec)}
    assert not FIELDS & set(spec_fields), sorted(FIELDS & set(spec_fields))
    assert spec_fields["settings"].type in ("TuneSettings", TuneSettings)


def test_help_texts_name_the_default_journal_and_experiment() -> None:
    assert "./regtune.journal" in help_of("storage") and DEFAULTS.experiment == "regtune"
    assert DEFAULTS.space == AUTO_SPACE


def test_settings_check_themselves_as_they_are_built() -> None:
    with pytest.raises(TuneError, match="trials=0"):
        TuneSettings(n_trials=0)
    with pytest.raises(TuneError, match="storage=':memory:' lives in one process"):
        TuneSettings(storage=":memory:", n_jobs=2)


def test_settings_and_the_cli_load_nothing_heavy() -> None:
    code = ("import sys, regtune.tuning.settings, regtune.cli.app; "
            "heavy = [m for m in ('torch', 'optuna', 'mlflow', 'pandas', 'sklearn') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- space="auto"


def test_auto_space_is_image_for_images_and_default_for_tables() -> None:
    assert resolve_space("auto", (1, 8, 8)) == "image"
    assert resolve_space("auto", None) == "default"
    assert resolve_space("minimal", (1, 8, 8)) == "minimal" and resolve_space("x.yaml", None) == "x.yaml"


def _images(n: int = 48) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, 1, 8, 8)).astype(np.float32)
    X[y == 1, :, :4] += 1.5  # a bright top half: learnable in a few epochs
    return X, y


def test_tune_picks_the_image_space_for_images_and_records_it(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    X, y = _images()
    result = tune(X, y, n_trials=1, cv=1, ensemble=1, storage=":memory:", tracking_uri=uri, log_model=False,
                  progress=False)
    assert result.study.user_attrs["space"] == "image" and "-image-" in result.study_name
    assert result.study.user_attrs["regtune.fingerprint"]["space_name"] == "image"
    params = MlflowClient(uri).get_run(result.parent_run_id).data.params
    assert params["space"] == "image"


def test_tune_keeps_an_explicit_space_and_picks_default_for_tables() -> None:
    X, y = _images()
    explicit = tune(X, y, space="minimal", n_trials=1, cv=1, ensemble=1, storage=":memory:", tracking_uri="off",
                    progress=False)
    assert explicit.study.user_attrs["space"] == "minimal"
    table = tune(load_dataset("iris"), n_trials=1, cv=1, ensemble=1, storage=":memory:", tracking_uri="off",
                 progress=False)
    assert table.study.user_attrs["space"] == "default" and table.study_name.endswith("-default-accuracy")


def test_regtune_estimator_picks_the_image_space_for_images() -> None:
    X, y = _images()
    search = RegTuneClassifier(n_trials=1, cv=1, ensemble=1, tracking_uri="off", random_state=0).fit(X, y)
    assert search.space == "auto" and search.study_.user_attrs["space"] == "image"
