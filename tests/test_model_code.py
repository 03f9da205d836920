"""The user's network code (``--model`` / ``module=``): imported under a private name, its
source part of the study's fingerprint, its fixed arguments from the CLI (``--module-arg``),
fed the data in the shape it asks for, and named in every trial's MLflow run."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from byo_modules import WIDE
from cli_helpers import run_cli
from mlflow import MlflowClient
from sklearn.datasets import load_digits

from regtune import RegularizedNetClassifier
from regtune.estimators.persistence import save_model
from regtune.nn.models import load_module

TINY_SPACE = str(Path(__file__).parent / "spaces" / "tiny.yaml")


def _fresh(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    cwd.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


# --- a file named like a standard-library module ----------------------------------------------


def test_a_model_file_named_like_a_stdlib_module_is_imported_under_a_private_name(tmp_path: Path) -> None:
    (tmp_path / "statistics.py").write_text(WIDE.replace("class Wide", "class MyNet"))
    net = load_module(f"{tmp_path}/statistics.py:MyNet")
    assert net.__module__ != "statistics" and net.__module__.endswith("_statistics")
    assert sys.modules["statistics"] is statistics and statistics.mean([1, 3]) == 2
    assert load_module(f"{tmp_path}/statistics.py:MyNet") is net  # the same file: the same module


def test_a_saved_model_of_a_stdlib_named_file_loads_in_a_fresh_process(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "statistics.py").write_text(WIDE.replace("class Wide", "class MyNet"))
    X, y = load_digits(return_X_y=True)
    X, y = X[:200], y[:200]
    est = RegularizedNetClassifier(module=f"{tmp_path}/src/statistics.py:MyNet", module__width=16, max_epochs=3,
                                   early_stopping=False, device="cpu", random_state=0).fit(X, y)
    save_model(tmp_path / "model", est, None)
    (tmp_path / "src" / "statistics.py").unlink()  # the model carries its own copy
    np.save(tmp_path / "X.npy", X)
    script = ("import sys, statistics, numpy as np; from regtune.estimators.persistence import load_model; "
              "m = load_model(sys.argv[1]); print(' '.join(map(str, m.predict(np.load(sys.argv[2]))))); "
              "assert statistics.mean([1, 3]) == 2")
    run = _fresh(tmp_path / "elsewhere", sys.executable, "-c", script, str(tmp_path / "model"), str(tmp_path / "X.npy"))
    assert run.returncode == 0, run.stderr
    assert np.array_equal(np.array(run.stdout.split(), dtype=int), est.predict(X))


@pytest.mark.slow
def test_cli_tunes_a_stdlib_named_model_file_and_predict_serves_it_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "statistics.py").write_text(WIDE.replace("class Wide", "class MyNet"))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code, out, err = run_cli(capsys, "tune", "iris", "--model", "statistics.py:MyNet", "--module-arg", "width=8",
                          "--space", TINY_SPACE, "--trials", "2", "--cv", "1", "-q", "--tracking-uri", uri)
    assert code == 0, err
    assert "cannot import name" not in err
    parent = out.split("parent run ")[1].split()[0]
    (tmp_path / "statistics.py").unlink()
    served = _fresh(tmp_path / "elsewhere", str(Path(sys.executable).with_name("regtune")), "predict", "iris",
                    "--run", parent, "--tracking-uri", uri)
    assert served.returncode == 0, served.stderr
    assert len(served.stdout.split()) == 151  # header + 150 rows


# --- the model's code in the study fingerprint ----------------------------------------------


def test_editing_the_model_file_between_runs_of_one_study_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text(WIDE)
    argv = ["tune", "iris", "--model", "nets.py:Wide", "--module-arg", "width=8", "--space", TINY_SPACE,
            "--cv", "1", "-q", "--tracking-uri", "off", "--ensemble", "1"]
    code, _, err = run_cli(capsys, *argv, "--trials", "2")
    assert code == 0, err
    (tmp_path / "nets.py").write_text(WIDE.replace("nn.ReLU()", "nn.Tanh()"))
    code, out, err = run_cli(capsys, *argv, "--trials", "3")
    assert code == 2, err
    assert err.count("\n") == 1 and "model code" in err and "changed" in err
    assert "use another --study" in err
    (tmp_path / "nets.py").write_text(WIDE)  # the code as it was; another --module-arg is another study
    code, _, err = run_cli(capsys, *[a.replace("width=8", "width=9") for a in argv], "--trials", "3")
    assert code == 2 and '"width": 9' in err and "module parameters" in err


# --- --module-arg -------------------------------------------------------------------------------


@pytest.mark.parametrize(("arg", "message"), [
    ("width", "must look like NAME=VALUE"),
    ("=3", "must look like NAME=VALUE"),
    ("width=[8,", "is not a YAML value"),
    ("width={a: 1}", "must be a number, a word, true/false or a list of those"),
])
def test_a_bad_module_arg_is_one_line_and_exit_2(
    arg: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "tune", "iris", "--model", "nets.py:Wide", "--module-arg", arg, "-q")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "--module-arg" in err


def test_a_module_arg_needs_a_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "tune", "iris", "--module-arg", "width=8", "-q")
    assert code == 2 and "pass --model" in err


def test_module_args_are_parsed_as_yaml() -> None:
    from regtune.cli.app import _parse_module_args

    parsed = _parse_module_args(["hidden=[64, 32]", "p=0.1", "act=relu", "bias=true"], "nets.py:Net")
    assert parsed == {"hidden": [64, 32], "p": 0.1, "act": "relu", "bias": True}


# --- images for a network of flat features; what the trial runs log ---------------------------


def test_a_module_asking_for_n_features_gets_images_as_rows(tmp_path: Path) -> None:
    """``Wide(n_features, n_outputs)`` on (N, 1, 8, 8) digits once got n_features=64 and then
    batches of images ("mat1 and mat2 shapes cannot be multiplied")."""
    X, y = load_digits(return_X_y=True)
    images = X[:200].reshape(-1, 1, 8, 8)
    (tmp_path / "wide.py").write_text(WIDE)
    est = RegularizedNetClassifier(module=f"{tmp_path}/wide.py:Wide", module__width=16, max_epochs=3,
                                   early_stopping=False, augment="image", device="cpu", random_state=0)
    est.fit(images, y[:200])
    assert est.predict(images).shape == (200,)
    assert est.module_.net[0].in_features == 64


def test_cli_digits_with_a_flat_network_module_args_and_what_trial_runs_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text(WIDE)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code, out, err = run_cli(capsys, "tune", "digits", "--model", "nets.py:Wide", "--module-arg", "width=12",
                          "--space", TINY_SPACE, "--trials", "2", "--cv", "1", "-q", "--tracking-uri", uri,
                          "--ensemble", "1")
    assert code == 0, err
    parent = out.split("parent run ")[1].split()[0]
    client = MlflowClient(uri)
    run = client.get_run(parent)
    trials = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    assert len(trials) >= 2
    for trial in trials:
        params = trial.data.params
        assert params["module"] == "nets.py:Wide" and params["module__width"] == "12"
        assert not {"config.architecture", "config.hidden_layer_sizes", "config.conv_channels"} & set(params)
        assert "config.dropout" in params
