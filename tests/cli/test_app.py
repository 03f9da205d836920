"""The ``regtune`` commands: a real run end to end, and every bad input as one error line.

Commands run in-process through :func:`regtune.cli.app.main` (fast, output via ``capsys``); one
run goes through the installed ``regtune`` script, and the Ctrl-C tests (slow) interrupt a
real process. Each test works in its own ``tmp_path``: the CLI writes ``regtune.journal``,
``mlflow.db`` and ``mlruns/`` into the current directory.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import numpy as np
import optuna
import pytest
import yaml
from cli_helpers import run_cli
from mlflow import MlflowClient
from optuna.trial import TrialState
from plugins.postgres import PostgresCluster

from regtune.data.loading import load_dataset
from regtune.estimators.persistence import load_model
from regtune.tuning.storage import load_existing_study

REGTUNE = Path(sys.executable).with_name("regtune")
STUDY = "iris-minimal-accuracy"
# Slow enough per trial that a signal lands mid-study.
SLOW = """\
fixed: {architecture: mlp, hidden_layer_sizes: [64], batch_size: 8, max_epochs: 30}
params:
  lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true, default: 1.0e-3}
regularizers:
  dropout:
    dropout: {type: float, low: 0.05, high: 0.5}
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "WARNING")  # main() sets it; keep it scoped to the test


def _nothing_created(path: Path) -> None:
    journal = path / "regtune.journal"
    if journal.exists():
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
        assert optuna.study.get_all_study_names(storage) == []
    if (path / "mlflow.db").exists():
        with sqlite3.connect(path / "mlflow.db") as con:
            assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def test_tune_best_and_predict_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # An absolute URI: MLflow caches stores by URI, and a relative one may be cached for another cwd.
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code, out, err = run_cli(capsys, "tune", "iris", "--space", "minimal", "--trials", "3", "--cv", "1", "-q",
                          "--tracking-uri", uri)
    assert code == 0, err
    assert "Traceback" not in err and "regtune: error" not in err
    for word in ("baseline", "best", "train", "val (search)", "test", "gap (train-test)"):
        assert word in out
    assert f"study {STUDY}" in out
    counts = re.search(r"trials: (\d+) complete, (\d+) pruned, (\d+) failed", out)
    assert counts is not None and sum(map(int, counts.groups())) == 3
    parent = out.split("parent run ")[1].split()[0]

    code, out, err = run_cli(capsys, "best", "--study", STUDY)
    study = load_existing_study(STUDY)
    assert code == 0 and err == ""
    assert f"best trial {study.best_trial.number}" in out
    for key in study.best_params:
        assert key in out
    assert study.best_trial.user_attrs["mlflow_run_id"] in out

    code, out, err = run_cli(capsys, "predict", "iris", "--run", parent, "--tracking-uri", uri)
    assert code == 0, err
    predicted = np.array([int(line) for line in out.split()[1:]])
    model_uri = MlflowClient(uri).get_run(parent).data.tags["regtune.model_uri"]
    assert model_uri.startswith("models:/")
    [model_dir] = Path("mlruns").rglob("artifacts/regtune_model")
    expected = load_model(model_dir).predict(load_dataset("iris").X)
    np.testing.assert_array_equal(predicted, expected)
    assert len(predicted) == 150 and (predicted == load_dataset("iris").y.to_numpy()).mean() > 0.5

    code, out, err = run_cli(capsys, "predict", "iris", "--run", "0123456789abcdef", "--tracking-uri", uri)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("regtune: error: run '0123456789abcdef' is not in")


def test_f1_says_macro_and_scores_print_in_one_format(tmp_path: Path, tiny_space: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11: ``--metric f1`` is macro-F1 but said nothing; the summary printed ``1`` next to
    ``0.9722`` and a gap of ``0.02228``."""
    import typer

    from regtune.cli.app import app

    params = typer.main.get_command(app).commands["tune"].params  # type: ignore[attr-defined]
    assert "f1 (macro" in next(p.help for p in params if p.name == "metric")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code, out, err = run_cli(capsys, "tune", "iris", "--space", str(tiny_space), "--metric", "f1", "--trials", "2",
                          "--cv", "1", "-q", "--tracking-uri", uri)
    assert code == 0, err
    assert "f1 (macro), baseline vs best" in out
    rows = [line for line in out.splitlines() if re.match(r"^\W*(baseline|best)\b", line)][:2]
    assert len(rows) == 2, out
    for row in rows:
        cells = [c.strip() for c in re.split(r"[│|]", row) if c.strip()]
        train, val, test, gap = cells[2:6]
        for score in (train, val, test):
            assert re.fullmatch(r"[01]\.\d{4}", score), (score, row)
        assert re.fullmatch(r"[+-]\d\.\d{4}", gap), (gap, row)
    parent = out.split("parent run ")[1].split()[0]
    assert MlflowClient(uri).get_run(parent).data.params["metric_label"] == "f1 (macro)"
    code, out, err = run_cli(capsys, "best", "--study", "iris-tiny-f1")
    assert code == 0 and re.search(r"value \(f1 \(macro\)\)\s*│?\s*[01]\.\d{4}", out), out


@pytest.mark.slow  # four commands on a real PostgreSQL study: ~40 s
@pytest.mark.integration
def test_no_form_of_a_database_password_leaks(postgres_cluster: PostgresCluster, tmp_path: Path, tiny_space: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11, item 10: a password with quotes, a space and '%', given in the query or in the
    URL, reaches no MLflow param or tag, no logged model, no output, no report."""
    token = secrets.token_hex(3)
    password = f"it's a \"pa{token}\" w%rd"
    role, db = f"leaky_{token}", f"leaky_{token}"
    postgres_cluster.sql(f"CREATE ROLE {role} LOGIN PASSWORD '{password.replace(chr(39), chr(39) * 2)}'")
    postgres_cluster.sql(f'CREATE DATABASE "{db}" OWNER {role}')
    host = f"127.0.0.1:{postgres_cluster.port}/{db}"
    forms = {
        "query": f"postgresql+psycopg://{role}@{host}?sslmode=disable&password={quote_plus(password)}",
        "userinfo": f"postgresql+psycopg://{role}:{quote(password, safe='')}@{host}",
    }
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    printed = []
    for name, storage in forms.items():
        common = ("--study", name, "--storage", storage, "--tracking-uri", uri)
        code, out, err = run_cli(capsys, "tune", "iris", "--space", str(tiny_space), "--trials", "2", "--cv", "1",
                              "-q", *common)
        assert code == 0, err
        printed.append(out + err)
        for argv in (("best", *common[:4]), ("report", *common, "--out", str(tmp_path / f"report-{name}"))):
            code, out, err = run_cli(capsys, *argv)
            assert code == 0, err
            printed.append(out + err)
    with sqlite3.connect(tmp_path / "mlflow.db") as con:  # params, tags, logged models' params, all
        stored = "\n".join(con.iterdump())
    files = [p.read_bytes().decode(errors="replace") for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".db"]
    assert "regtune.storage" in stored and "password=***" in stored and f"{role}:***@" in stored
    for secret in (password, quote(password, safe=""), quote_plus(password), f"pa{token}"):
        for where, text in (("MLflow store", stored), ("output", "\n".join(printed)), ("files", "\n".join(files))):
            assert secret not in text, f"the password leaks in the {where}"


def _tune_here(capsys: pytest.CaptureFixture[str], data: str, space: Path, uri: str) -> str:
    """Run a 2-trial study on ``data`` logging to ``uri``; its parent run id."""
    code, out, err = run_cli(capsys, "tune", data, "--space", str(space), "--trials", "2", "--cv", "1", "-q",
                          "--tracking-uri", uri)
    assert code == 0, err
    return out.split("parent run ")[1].split()[0]


def _one_line_error(code: int, out: str, err: str) -> str:
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("regtune: error: "), err
    assert "Traceback" not in out + err and "REGTUNE_DEBUG" not in err
    return err


def test_predict_serves_any_store_and_says_what_it_cannot(tmp_path: Path, tiny_space: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11, item 14 and the unclear `predict` / `best` errors."""
    study_dir, elsewhere = tmp_path / "study", tmp_path / "elsewhere"
    study_dir.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(study_dir)
    uri = f"sqlite:///{study_dir}/store.db"
    parent = _tune_here(capsys, "iris", tiny_space, uri)

    code, out, err = run_cli(capsys, "best", "--study", "iris-tiny-accuracy")
    assert code == 0, err
    trial_run = load_existing_study("iris-tiny-accuracy").best_trial.user_attrs["mlflow_run_id"]
    assert trial_run in out and f"regtune predict DATA --run {parent}" in out  # the id predict takes

    monkeypatch.chdir(elsewhere)  # another directory, the store given by URI
    code, out, err = run_cli(capsys, "predict", "iris", "--run", parent, "--tracking-uri", uri)
    assert code == 0, err  # before: "Logged model ... not found", from the default store
    assert len(out.split()) == 151 and not (elsewhere / "mlflow.db").exists()

    err = _one_line_error(*run_cli(capsys, "predict", "iris", "--run", trial_run, "--tracking-uri", uri))
    assert f"run {trial_run} is trial" in err and f"regtune predict DATA --run {parent}" in err

    err = _one_line_error(*run_cli(capsys, "predict", "iris", "--run", parent, "--tracking-uri", uri,
                                "--output", "/nonexistent/p.csv"))
    assert "'/nonexistent' of '/nonexistent/p.csv' does not exist" in err
    code, out, err = run_cli(capsys, "predict", "iris", "--run", parent, "--tracking-uri", uri, "--output", "p.csv")
    assert code == 0 and len((elsewhere / "p.csv").read_text().split()) == 151

    for model_dir in (study_dir / "mlruns").rglob("models"):
        shutil.rmtree(model_dir)  # the model's artifacts are gone, its run is not
    err = _one_line_error(*run_cli(capsys, "predict", "iris", "--run", parent, "--tracking-uri", uri))
    assert f"the model of run {parent}" in err and "deleted or moved" in err
    assert tempfile.gettempdir() + "/tmp" not in err  # no temporary download directory


def test_predict_proba_on_a_regression_run_is_one_line(tmp_path: Path, tiny_space: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    parent = _tune_here(capsys, "diabetes", tiny_space, uri)
    err = _one_line_error(*run_cli(capsys, "predict", "diabetes", "--run", parent, "--tracking-uri", uri, "--proba"))
    assert "regression model" in err and "drop --proba" in err  # before: a bare AttributeError
    code, out, _ = run_cli(capsys, "predict", "diabetes", "--run", parent, "--tracking-uri", uri)
    assert code == 0 and len(out.split()) == 443


@pytest.mark.parametrize("command", [["report", "--study", "s", "--from-mlflow"], ["predict", "iris", "--run", "abc"]])
def test_commands_fail_fast_on_a_tracking_server_that_is_down(command: list[str], dead_port: int,
                                                              capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11, item 12: with MLflow's default retries a refused port took 268 s."""
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    start = time.monotonic()
    err = _one_line_error(*run_cli(capsys, *command, "--tracking-uri", f"http://u:secret@127.0.0.1:{dead_port}"))
    assert time.monotonic() - start < 20
    assert f"'http://u:***@127.0.0.1:{dead_port}' refused the connection" in err and "secret" not in err


def test_resume_with_nothing_to_do_prints_the_same_summary(tiny_space: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("tune", "iris", "--space", str(tiny_space), "--trials", "2", "--cv", "1", "-q", "--tracking-uri", "off")
    code, first, _ = run_cli(capsys, *argv)
    assert code == 0 and "trials: 2 complete, 0 pruned, 0 failed" in first
    code, again, _ = run_cli(capsys, *argv)
    assert code == 0
    table = first.split("best regularization settings")[0]
    assert table == again.split("best regularization settings")[0]
    assert "trials: 2 complete, 0 pruned, 0 failed" in again


def test_tracking_off_summary_offers_no_run_to_browse_or_predict(tiny_space: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """With --tracking-uri off nothing is logged: the summary printed "experiment  parent run "
    with empty ids and a `regtune predict DATA --run ` hint no run could answer."""
    argv = ("tune", "iris", "--space", str(tiny_space), "--trials", "2", "--cv", "1", "-q", "--tracking-uri", "off")
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0
    assert "MLflow: off (nothing logged)" in out
    assert "parent run" not in out and "--run" not in out and "regtune ui" not in out
    assert "regtune best --study" in out  # what the study still offers


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tune", "no_such_dataset"], "'no_such_dataset' is neither a built-in dataset"),
        (["tune", "missing.csv"], "data file 'missing.csv' does not exist"),
        (["tune", "table.csv", "--target", "nope"], "nope"),
        (["tune", "iris", "--space", "typo.yaml"], "search space 'typo.yaml', line 4: params.lr.defualt"),
        (["tune", "iris", "--storage", "postgresql://u:secret@127.0.0.1:1/db"],
         "cannot reach storage postgresql://u:***@127.0.0.1:1/db"),
        (["tune", "iris", "--trials", "0"], "trials=0 must be a whole number >= 1"),
        (["tune", "iris", "--sampler", "bayes"], "sampler 'bayes' is unknown"),
        (["tune", "iris", "--pruner", "asha"], "pruner 'asha' is unknown"),
        (["tune", "iris", "--metric", "rmse"], "metric='rmse' is for regression"),
        (["tune", "iris", "--cv", "two"], "--cv 'two' must be 'auto' or a whole number"),
        (["tune", "iris", "--bogus"], "No such option: --bogus"),
        (["tune"], "Missing argument 'DATA'"),
        (["best", "--study", "nope"], "no study 'nope'"),
        (["predict", "iris", "--run", "abc"], "no MLflow store at 'sqlite:///mlflow.db'"),
        (["spaces", "nope"], "no space named 'nope'"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_errors_are_one_line_and_create_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                argv: list[str], message: str) -> None:
    (tmp_path / "table.csv").write_text("a,b,y\n" + "\n".join(f"{i},{i % 3},{i % 2}" for i in range(40)) + "\n")
    (tmp_path / "typo.yaml").write_text(
        "fixed:\n  max_epochs: 5\nparams:\n  lr: {type: float, low: 1.0e-4, high: 1.0e-2, defualt: 1.0e-3}\n"
    )
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("regtune: error: "), err
    assert message.lower() in err.lower()
    assert "Traceback" not in out + err and "secret" not in out + err
    _nothing_created(tmp_path)
    assert not (tmp_path / "regtune.journal").exists() and not (tmp_path / "mlflow.db").exists()


def test_spaces(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "spaces")
    assert code == 0
    for name in ("cocktail", "default", "image", "minimal"):
        assert f" {name} " in out
    code, out, _ = run_cli(capsys, "spaces", "minimal")
    assert code == 0
    space = yaml.safe_load(out)
    assert space["fixed"]["max_epochs"] == 30 and set(space["regularizers"]) == {"l2", "dropout", "early_stopping"}


def test_no_arguments_prints_help_without_an_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys)
    assert "Usage" in out + err and "regtune: error" not in err
    code, out, err = run_cli(capsys, "--help")
    assert code == 0 and "tune" in out


def _wait_for(predicate, timeout: float = 240) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def _study_states(path: Path) -> list[TrialState]:
    journal = path / "regtune.journal"
    if not journal.exists():
        return []
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    try:
        return [t.state for t in optuna.load_study(study_name="s", storage=storage).get_trials()]
    except KeyError:
        return []


@pytest.mark.slow
def test_ctrl_c_stops_parallel_workers_cleanly_and_the_study_resumes(tmp_path: Path) -> None:
    """``kill -INT`` on the parent of two workers (test_crash.py covers one worker)."""
    jobs = "2"
    (tmp_path / "slow.yaml").write_text(SLOW)
    argv = [str(REGTUNE), "tune", "breast_cancer", "--space", "slow.yaml", "--trials", "4", "--cv", "1", "--study", "s",
            "--pruner", "none", "--jobs", jobs, "-q"]
    env = {**os.environ, "MLFLOW_LOGGING_LEVEL": "WARNING"}
    # A shell running this test in the background ignores SIGINT, and children inherit that.
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # Interrupt once a trial is done and others are running.
        _wait_for(lambda: _study_states(tmp_path).count(TrialState.COMPLETE) >= 1
                  and TrialState.RUNNING in _study_states(tmp_path))
        proc.send_signal(signal.SIGINT)  # this process only: a worker must be stopped by regtune
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "regtune: error: interrupted; run the same command again to resume the study"
    assert "Traceback" not in err
    states = _study_states(tmp_path)
    assert TrialState.RUNNING not in states
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")  # absolute: MLflow caches stores by URI
    runs = client.search_runs(["1"])
    table = [(r.data.tags["regtune.run_type"], r.data.tags.get("state"), r.info.status) for r in runs]
    assert [status for kind, _, status in table if kind == "study"] == ["KILLED"], (table, states, err)
    assert "RUNNING" not in {status for _, _, status in table}, table
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    final = _study_states(tmp_path)
    counted = [s for s in final if s in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == 4 and TrialState.RUNNING not in final and TrialState.WAITING not in final


def test_tune_options_default_to_what_tune_settings_defaults_to() -> None:
    """A default is decided once: `regtune tune` without an option runs what `tune()` and the
    estimators run (the CLI's literals are checked against TuneSettings here)."""
    import dataclasses
    import inspect

    from regtune.cli.app import tune as tune_command
    from regtune.tuning.settings import TuneSettings

    fields = {f.name: f.default for f in dataclasses.fields(TuneSettings) if f.default is not dataclasses.MISSING}
    shared = {name: getattr(p.default, "default", p.default)
              for name, p in inspect.signature(tune_command).parameters.items() if name in fields}
    assert {"ensemble", "cohort", "cv", "pruner", "sampler", "seed", "space"} <= set(shared)
    assert shared == {name: fields[name] for name in shared}
