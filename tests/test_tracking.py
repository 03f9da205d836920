"""The MLflow tracker against a real SQLite store under tmp_path (no mocks)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import regtune.tracking.tracker as tracking
from regtune.tracking.tracker import (
    DEFAULT_TRACKING_URI,
    MLflowTracker,
    TrackingError,
    mask_secrets,
    resolve_tracking_uri,
)

SECRET = "s3cret-Pa55"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file for the module: creating MLflow's schema costs one to several seconds."""
    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    MLflowTracker(f"sqlite:///{db}", experiment="schema")
    return db


@pytest.fixture
def tracker(store: Path, tmp_path: Path, request: pytest.FixtureRequest) -> MLflowTracker:
    """A tracker on the shared store with an experiment of its own, so tests stay independent."""
    return MLflowTracker(
        f"sqlite:///{store}", experiment=request.node.name, artifact_root=tmp_path / "mlruns"
    )


def _stored_text(db: Path) -> str:
    """Every param, tag and run name in the store, as one string."""
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT key, value FROM params UNION ALL SELECT key, value FROM tags")
        text = "\n".join(f"{key}={value}" for key, value in rows)
        names = con.execute("SELECT name FROM runs").fetchall()
    return "\n".join([text, *(name for (name,) in names)])


def test_import_does_not_import_mlflow() -> None:
    code = "import regtune.tracking.tracker, sys; assert 'mlflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://bob:s3cret@host/db", "postgresql://bob:***@host/db"),
        ("postgresql://bob:s3cret@host:5432/db", "postgresql://bob:***@host:5432/db"),
        (
            "postgresql+psycopg://bob:s3cret@db.example.com/optuna",
            "postgresql+psycopg://bob:***@db.example.com/optuna",
        ),
        ("http://user:pw@host", "http://user:***@host"),
        ("https://user:p@ss/w0rd@host:443/api?x=1", "https://user:***@host:443/api?x=1"),
        ("postgresql://bob:pa/ss@host/db", "postgresql://bob:***@host/db"),
        ("mysql://:tok@h", "mysql://:***@h"),
    ],
)
def test_mask_secrets_hides_url_passwords(url: str, masked: str) -> None:
    assert mask_secrets(url) == masked
    assert (
        mask_secrets(f"storage='{url}' and again {url}.")
        == f"storage='{masked}' and again {masked}."
    )


def test_mask_secrets_leaves_urls_without_passwords_alone() -> None:
    text = (
        "sqlite:///mlflow.db http://localhost:5000/#/runs bob@example.com postgresql://bob@host/db"
    )
    assert mask_secrets(text) == text


@pytest.mark.parametrize(
    ("text", "masked"),
    [  # issue 11, item 10: each of these leaked before
        ("postgresql://bob@h/db?password=s3cret", "postgresql://bob@h/db?password=***"),
        ("postgresql://h/db?sslmode=require&PASSWORD=a%20b&x=1", "postgresql://h/db?sslmode=require&PASSWORD=***&x=1"),
        ("postgresql://bob:it's@h/db", "postgresql://bob:***@h/db"),
        ('postgresql://bob:say "hi"@h/db', "postgresql://bob:***@h/db"),
        ("postgresql://bob:two words@h:5432/db", "postgresql://bob:***@h:5432/db"),
        ("postgresql://bob:12/a b@h/db", "postgresql://bob:***@h/db"),
        ("host=h user=bob password=s3cret dbname=x", "host=h user=bob password=*** dbname=x"),
        ("host=h password='it\\'s two' dbname=x", "host=h password=*** dbname=x"),
        ("PGPASSWORD=s3cret regtune tune", "PGPASSWORD=*** regtune tune"),
        ("mlflow server --db-password=s3cret", "mlflow server --db-password=***"),
        ("postgresql://h/db?pass%77ord=s3cret", "postgresql://h/db?pass%77ord=***"),  # SQLAlchemy decodes keys
        ("https://ghp_t0ken@mlflow.example.com", "https://***@mlflow.example.com"),
        ("https://alice:p@ss@mlflow.example.com:5000", "https://alice:***@mlflow.example.com:5000"),
        ("mssql+pyodbc:///?odbc_connect=DRIVER%3Dx%3BUID%3Du%3BPWD%3Ds3cr%3BServer%3Dh",
         "mssql+pyodbc:///?odbc_connect=DRIVER%3Dx%3BUID%3Du%3BPWD%3D***%3BServer%3Dh"),
        ("cannot reach storage 'postgresql://bob:it\\'s \"x\"@h/db': refused",
         "cannot reach storage 'postgresql://bob:***@h/db': refused"),
        ("storage \"postgresql://h/db?password=it's me\" failed", "storage \"postgresql://h/db?password=***\" failed"),
    ],
)
def test_mask_secrets_hides_every_credential_form(text: str, masked: str) -> None:
    assert mask_secrets(text) == masked
    assert mask_secrets(masked) == masked


# Passwords a user may choose: anything printable, quotes, spaces and URL delimiters included.
_PASSWORDS = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=24)


def _credential_forms(password: str) -> list[tuple[str, str]]:
    """(URL or DSN carrying ``password``, what it must mask to), in every form regtune's users can
    hand to SQLAlchemy, psycopg/libpq or MLflow's HTTP client."""
    encoded = quote(password, safe="")
    libpq = password.replace("\\", "\\\\").replace("'", "\\'")
    forms = [
        (f"postgresql+psycopg://bob:{encoded}@db.example.com:5432/optuna",
         "postgresql+psycopg://bob:***@db.example.com:5432/optuna"),
        (f"postgresql+psycopg://bob@db.example.com/optuna?sslmode=require&password={quote_plus(password)}&x=1",
         "postgresql+psycopg://bob@db.example.com/optuna?sslmode=require&password=***&x=1"),
        (f"host=db.example.com user=bob password='{libpq}' dbname=optuna",
         "host=db.example.com user=bob password=*** dbname=optuna"),
        (f"https://alice:{encoded}@mlflow.example.com:5000", "https://alice:***@mlflow.example.com:5000"),
    ]
    if "@" not in password:  # SQLAlchemy takes any raw password but one with '@'
        forms.append((f"mysql+pymysql://bob:{password}@db/optuna", "mysql+pymysql://bob:***@db/optuna"))
    if not set("/?#") & set(password) and password.strip() == password and " " not in password:
        forms.append((f"http://alice:{password}@127.0.0.1:5000", "http://alice:***@127.0.0.1:5000"))
    return forms


@settings(max_examples=300, deadline=None)
@given(password=_PASSWORDS)
def test_mask_secrets_hides_generated_passwords_in_every_form(password: str) -> None:
    from sqlalchemy.engine import make_url

    if "@" not in password and "%" not in password:  # the raw form is one SQLAlchemy accepts
        assert make_url(f"mysql+pymysql://bob:{password}@db/optuna").password == password
    for url, masked in _credential_forms(password):
        assert mask_secrets(url) == masked, url  # a param or tag value, a URL printed alone
        if "://" in url:  # regtune's messages show a URL with repr
            quoted = repr(url)
            assert mask_secrets(f"storage {quoted} cannot be used") == f"storage {quoted[0]}{masked}{quoted[0]} cannot be used"
        if "://" not in url or not any(c.isspace() or c in "'\"" for c in password):
            assert mask_secrets(f"cannot reach {url}: refused") == f"cannot reach {masked}: refused"


def test_parent_and_child_runs_form_a_tree_with_epoch_curves(
    tracker: MLflowTracker, tmp_path: Path
) -> None:
    parent = tracker.start_study_run("study-a", {"n_trials": 3, "sampler": "tpe"})
    children = []
    for number in range(3):
        run_id = tracker.start_trial_run(
            parent, number, {"l2": 10.0**-number, "dropout": None, "hidden_layer_sizes": (128, 128)}
        )
        for epoch in range(3):
            tracker.log_epoch(
                run_id, epoch, {"train_loss": 1.0 / (epoch + 1), "val_loss": float("nan")}
            )
        children.append(run_id)

    runs = tracker.child_runs(parent)
    assert [run.info.run_id for run in runs] == children
    for number, run in enumerate(runs):
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.tags["regtune.trial_number"] == str(number)
        assert run.data.tags["regtune.study"] == "study-a"
        assert run.info.run_name == f"trial-{number}"
        assert run.data.params["dropout"] == "None"
        assert run.data.params["hidden_layer_sizes"] == "(128, 128)"
        assert "val_loss" not in run.data.metrics  # non-finite values are skipped
    history = tracker._client.get_metric_history(children[0], "train_loss")
    assert [m.step for m in history] == [0, 1, 2]
    assert [m.value for m in history] == pytest.approx([1.0, 0.5, 1 / 3])
    parent_run = tracker._client.get_run(parent)
    assert parent_run.info.run_name == "study-a"
    assert "mlflow.parentRunId" not in parent_run.data.tags
    assert parent_run.info.artifact_uri.startswith((tmp_path / "mlruns").as_uri())


def test_finish_trial_maps_optuna_states_to_tags_and_statuses(tracker: MLflowTracker) -> None:
    parent = tracker.start_study_run("s", {})
    expected = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}
    for number, (state, status) in enumerate(expected.items()):
        run_id = tracker.start_trial_run(parent, number, {})
        tracker.finish_trial(run_id, state, {"val_score": 0.9}, tags={"pruned_epoch": 4})
        run = tracker._client.get_run(run_id)
        assert run.info.status == status
        assert run.data.tags["state"] == state
        assert run.data.tags["pruned_epoch"] == "4"
        assert run.data.metrics["val_score"] == 0.9
    with pytest.raises(ValueError, match="'WAITING'"):
        tracker.finish_trial(run_id, "WAITING")


def test_resuming_a_study_reuses_its_parent_run(tracker: MLflowTracker) -> None:
    first = tracker
    parent = first.start_study_run("resumable", {"n_trials": 5, "seed": 0})
    first.end_run(parent, "KILLED")
    first.start_study_run("other", {})

    second = MLflowTracker(first.tracking_uri, first.experiment)  # as a new process would
    assert second.find_study_run("resumable") == parent
    assert second.start_study_run("resumable", {"n_trials": 10, "seed": 0, "jobs": 2}) == parent
    run = second._client.get_run(parent)
    assert run.info.status == "RUNNING"
    assert run.data.params == {"n_trials": "5", "seed": "0", "jobs": "2"}
    assert run.data.tags["resumed.n_trials"] == "10"
    assert len(second._search("tags.`regtune.run_type` = 'study'")) == 2
    assert second.find_study_run("never-ran") is None


def test_secrets_never_reach_the_store(tracker: MLflowTracker, store: Path, tmp_path: Path) -> None:
    storage = f"postgresql+psycopg://optuna:{SECRET}@db:5432/optuna"
    parent = tracker.start_study_run("s", {"storage": storage}, tags={"note": f"from {storage}"})
    child = tracker.start_trial_run(
        parent, 0, {"storage": storage}, tags={"url": f"http://u:{SECRET}@h"}
    )
    tracker.set_tags(child, {"again": storage})
    tracker.log_params(child, {"other": f"x {storage}"})
    tracker.log_text(child, f"storage: {storage}\n", "config.yaml")
    tracker.flush()  # trial params are queued

    stored = _stored_text(store)
    assert "optuna:***@db:5432" in stored
    assert SECRET not in stored
    artifact = tracker._client.download_artifacts(child, "config.yaml", str(tmp_path))
    assert "optuna:***@db" in Path(artifact).read_text()
    assert SECRET not in Path(artifact).read_text()


def test_long_and_many_params_are_truncated_and_split_not_rejected(
    tracker: MLflowTracker,
) -> None:
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    parent = tracker.start_study_run("s", {})
    params = {f"p{i}": i for i in range(250)} | {"space": "x" * (MAX_PARAM_VAL_LENGTH + 500)}
    child = tracker.start_trial_run(parent, 0, params)
    tracker.flush(child)  # trial params are queued, like epochs
    logged = tracker._client.get_run(child).data.params
    assert len(logged) == 251
    assert logged["space"] == "x" * MAX_PARAM_VAL_LENGTH


def test_mark_orphans_ends_only_running_children(tracker: MLflowTracker) -> None:
    parent = tracker.start_study_run("s", {})
    runs = [tracker.start_trial_run(parent, number, {}) for number in range(4)]
    tracker.finish_trial(runs[0], "COMPLETE")

    assert tracker.mark_orphans(parent, trials=[1]) == 1
    assert tracker.mark_orphans(parent, trials=lambda number: number == 0) == 0  # already ended
    assert tracker.mark_orphans(parent, status="FAILED") == 2
    assert tracker.mark_orphans(parent) == 0
    statuses = [(run.info.status, run.data.tags["state"]) for run in tracker.child_runs(parent)]
    assert statuses == [
        ("FINISHED", "COMPLETE"),
        ("KILLED", "FAIL"),
        ("FAILED", "FAIL"),
        ("FAILED", "FAIL"),
    ]
    assert "worker stopped" in tracker.child_runs(parent)[1].data.tags["fail_reason"]


def test_child_runs_paginate(tracker: MLflowTracker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracking, "_PAGE_SIZE", 2)
    parent = tracker.start_study_run("s", {})
    runs = [tracker.start_trial_run(parent, number, {}) for number in range(5)]
    assert [run.info.run_id for run in tracker.child_runs(parent)] == runs


def test_default_uri_puts_the_store_and_artifacts_in_the_working_directory(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(store, tmp_path / "mlflow.db")  # an existing store; a fresh schema is slow
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracker = MLflowTracker()
    # The default, made absolute: MLflow caches stores by URI string across chdir.
    assert tracker.tracking_uri == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    with sqlite3.connect(tmp_path / "mlflow.db") as con:
        query = "SELECT artifact_location FROM experiments WHERE name = 'regtune'"
        assert con.execute(query).fetchall() == [((tmp_path / "mlruns").as_uri(),)]

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    assert MLflowTracker().tracking_uri == f"sqlite:///{store}"


def test_tracking_uri_resolves_argument_then_environment_then_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert resolve_tracking_uri(None) == DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert resolve_tracking_uri(None) == "sqlite:///env.db"
    assert resolve_tracking_uri("file:/tmp/given") == "file:/tmp/given"


def test_unwritable_store_raises_a_readable_tracking_error(tmp_path: Path) -> None:
    (tmp_path / "afile.txt").write_text("not a directory")
    with pytest.raises(TrackingError, match=r"afile\.txt/mlflow\.db.*cannot be used.*writable"):
        MLflowTracker(f"sqlite:///{tmp_path}/afile.txt/mlflow.db")


def test_deleted_experiment_raises_with_the_fix(tracker: MLflowTracker) -> None:
    tracker._client.delete_experiment(tracker.experiment_id)
    with pytest.raises(TrackingError, match="is deleted; restore it with `mlflow experiments"):
        MLflowTracker(tracker.tracking_uri, tracker.experiment)


def test_unreachable_server_error_masks_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(TrackingError) as info:
        MLflowTracker(f"http://bob:{SECRET}@127.0.0.1:9/")
    assert "http://bob:***@127.0.0.1:9/" in str(info.value)
    assert SECRET not in str(info.value)


# ---------------------------------------------------------------- queued epochs (the writer)


def _tracker(store: Path, tmp_path: Path, name: str, flush_interval: float) -> MLflowTracker:
    return MLflowTracker(f"sqlite:///{store}", experiment=name, artifact_root=tmp_path / "mlruns",
                         flush_interval=flush_interval)


def _steps(tracker: MLflowTracker, run_id: str, key: str = "val_score") -> list[int]:
    return [m.step for m in tracker._client.get_metric_history(run_id, key)]


def _epoch(step: int) -> dict[str, float]:
    return {"train_loss": 1.0 / (step + 1), "val_score": step / 10}


def test_the_background_writer_logs_live_epochs_in_order(store: Path, tmp_path: Path) -> None:
    tracker = _tracker(store, tmp_path, "live", flush_interval=0.05)
    parent = tracker.start_study_run("s", {})
    run_id = tracker.start_trial_run(parent, 0, {"lr": 0.01})
    for step in range(5):
        tracker.log_epoch(run_id, step, _epoch(step))
    deadline = time.monotonic() + 30
    while len(_steps(tracker, run_id)) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    # Written while the run is still RUNNING: the curve is live in the MLflow UI.
    run = tracker._client.get_run(run_id)
    assert run.info.status == "RUNNING" and run.data.params == {"lr": "0.01"}
    history = tracker._client.get_metric_history(run_id, "val_score")
    assert [m.step for m in history] == [0, 1, 2, 3, 4]
    assert [m.value for m in history] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    tracker.close()


def test_finish_trial_writes_every_queued_epoch_with_the_final_record(store: Path, tmp_path: Path) -> None:
    tracker = _tracker(store, tmp_path, "finish", flush_interval=3600)  # no background write comes
    parent = tracker.start_study_run("s", {})
    run_id = tracker.start_trial_run(parent, 0, {"lr": 0.01})
    for step in range(30):
        tracker.log_epoch(run_id, step, _epoch(step))
    assert _steps(tracker, run_id) == []
    tracker.finish_trial(run_id, "PRUNED", {"value": 0.9}, tags={"pruned_epoch": 29})
    run = tracker._client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["state"] == "PRUNED"
    assert run.data.params == {"lr": "0.01"} and run.data.metrics["value"] == 0.9
    assert _steps(tracker, run_id) == list(range(30))
    assert _steps(tracker, run_id, "train_loss") == list(range(30))


def test_ending_an_interrupted_run_writes_its_queued_epochs_first(store: Path, tmp_path: Path) -> None:
    """The Ctrl-C path: the worker tags the run and ends it KILLED."""
    tracker = _tracker(store, tmp_path, "ctrl-c", flush_interval=3600)
    parent = tracker.start_study_run("s", {})
    run_id = tracker.start_trial_run(parent, 0, {})
    for step in range(3):
        tracker.log_epoch(run_id, step, _epoch(step))
    tracker.set_tags(run_id, {"state": "FAIL", "fail_reason": "interrupted"})
    tracker.end_run(run_id, "KILLED")
    assert tracker._client.get_run(run_id).info.status == "KILLED"
    assert _steps(tracker, run_id) == [0, 1, 2]


def test_a_failed_write_keeps_the_queue_for_the_next_one(store: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    tracker = _tracker(store, tmp_path, "store-down", flush_interval=3600)
    parent = tracker.start_study_run("s", {})
    run_id = tracker.start_trial_run(parent, 0, {"lr": 1})
    tracker.log_epoch(run_id, 0, _epoch(0))
    real = tracker._client.log_batch

    def down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("MLflow is down")

    monkeypatch.setattr(tracker._client, "log_batch", down)
    with pytest.raises(ConnectionError):
        tracker.flush()
    tracker.log_epoch(run_id, 1, _epoch(1))
    monkeypatch.setattr(tracker._client, "log_batch", real)
    tracker.finish_trial(run_id, "COMPLETE")
    assert _steps(tracker, run_id) == [0, 1]
    assert tracker._client.get_run(run_id).data.params == {"lr": "1"}


def test_queued_epochs_are_written_when_the_process_exits(store: Path, tmp_path: Path) -> None:
    code = f"""
from regtune.tracking.tracker import MLflowTracker
t = MLflowTracker({f"sqlite:///{store}"!r}, experiment="exit", artifact_root={str(tmp_path)!r}, flush_interval=3600)
run = t.start_trial_run(t.start_study_run("s", {{}}), 0, {{"lr": 1}})
for step in range(3):
    t.log_epoch(run, step, {{"val_score": step / 10}})
print(run)
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=300)
    run_id = out.stdout.split()[-1]
    tracker = MLflowTracker(f"sqlite:///{store}", experiment="exit")
    assert _steps(tracker, run_id) == [0, 1, 2]


def test_backfill_adds_only_the_missing_steps_and_params(tracker: MLflowTracker) -> None:
    """What a reaper does for a worker killed with epochs still queued."""
    parent = tracker.start_study_run("s", {})
    run_id = tracker.start_trial_run(parent, 0, {})
    tracker.log_epoch(run_id, 0, _epoch(0))
    tracker.log_epoch(run_id, 1, _epoch(1))
    tracker.flush()
    reported = {step: step / 10 for step in range(5)}
    assert tracker.backfill(run_id, "val_score", reported, params={"lr": 0.01, "seed": 3}) == 3
    assert tracker.backfill(run_id, "val_score", reported, params={"lr": 0.01}) == 0
    history = tracker._client.get_metric_history(run_id, "val_score")
    assert sorted(m.step for m in history) == [0, 1, 2, 3, 4]
    assert {m.step: m.value for m in history} == pytest.approx(reported)
    assert tracker._client.get_run(run_id).data.params == {"lr": "0.01", "seed": "3"}


@pytest.mark.parametrize(
    "dead_port", ["refuses", pytest.param("never_answers", marks=pytest.mark.slow)], indirect=True
)
def test_unreachable_tracking_server_fails_fast_with_one_masked_line(
    dead_port: int, fails_within: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11, item 12: with MLflow's default retries a refused port took 268 s, a port that
    accepts and never answers over 600 s."""
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)  # the user's default
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    uri = f"http://bob:{SECRET}@127.0.0.1:{dead_port}"
    error = fails_within(20, lambda: MLflowTracker(uri))
    assert isinstance(error, TrackingError)
    text = str(error)
    assert f"'http://bob:***@127.0.0.1:{dead_port}'" in text and "\n" not in text
    assert SECRET not in text and "--tracking-uri" in text


def test_unreachable_database_store_fails_fast(dead_port: int, fails_within: Callable) -> None:
    error = fails_within(20, lambda: MLflowTracker(f"postgresql+psycopg://bob:{SECRET}@127.0.0.1:{dead_port}/mlflow"))
    assert isinstance(error, TrackingError)
    assert f"bob:***@127.0.0.1:{dead_port}/mlflow" in str(error) and "\n" not in str(error)
