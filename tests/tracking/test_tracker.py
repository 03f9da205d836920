"""The MLflow tracker against a real SQLite store under tmp_path (no mocks), and the one
:class:`Tracker` protocol that it, the relay and the null tracker implement."""

from __future__ import annotations

import inspect
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import regtune.tracking.tracker as tracking
from regtune.exceptions import TrackingError
from regtune.tracking.relay import RelayTracker
from regtune.tracking.tracker import (
    DEFAULT_TRACKING_URI,
    MLflowTracker,
    NullTracker,
    StudyTracker,
    Tracker,
    make_tracker,
    resolve_tracking_uri,
)

SECRET = "s3cret-Pa55"


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
    history = tracker.metric_history(children[0], "train_loss")
    assert [m.step for m in history] == [0, 1, 2]
    assert [m.value for m in history] == pytest.approx([1.0, 0.5, 1 / 3])
    parent_run = tracker.run(parent)
    assert parent_run.info.run_name == "study-a"
    assert "mlflow.parentRunId" not in parent_run.data.tags
    assert parent_run.info.artifact_uri.startswith((tmp_path / "mlruns").as_uri())


def test_finish_trial_maps_optuna_states_to_tags_and_statuses(tracker: MLflowTracker) -> None:
    parent = tracker.start_study_run("s", {})
    expected = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}
    for number, (state, status) in enumerate(expected.items()):
        run_id = tracker.start_trial_run(parent, number, {})
        tracker.finish_trial(run_id, state, {"val_score": 0.9}, tags={"pruned_epoch": 4})
        run = tracker.run(run_id)
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
    run = second.run(parent)
    assert run.info.status == "RUNNING"
    assert run.data.params == {"n_trials": "5", "seed": "0", "jobs": "2"}
    assert run.data.tags["resumed.n_trials"] == "10"
    studies = MlflowClient(second.tracking_uri).search_runs([second.experiment_id], "tags.`regtune.run_type` = 'study'")
    assert len(studies) == 2
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
    artifact = tracker.download_artifacts(f"runs:/{child}/config.yaml", str(tmp_path))
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
    logged = tracker.run(child).data.params
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
    MlflowClient(tracker.tracking_uri).delete_experiment(tracker.experiment_id)
    with pytest.raises(TrackingError, match="is deleted; restore it with `mlflow experiments"):
        MLflowTracker(tracker.tracking_uri, tracker.experiment)


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
    history = tracker.metric_history(run_id, "val_score")
    assert sorted(m.step for m in history) == [0, 1, 2, 3, 4]
    assert {m.step: m.value for m in history} == pytest.approx(reported)
    assert tracker.run(run_id).data.params == {"lr": "0.01", "seed": "3"}


def _epoch(step: int) -> dict[str, float]:
    return {"train_loss": 1.0 / (step + 1), "val_score": step / 10}


def _members(protocol: type) -> set[str]:
    """The methods and attributes a protocol declares, its bases' included."""
    names: set[str] = set()
    for cls in protocol.__mro__:
        if cls is object or cls.__name__ in ("Protocol", "Generic"):
            continue
        names |= {n for n in vars(cls) if not n.startswith("_")} | set(getattr(cls, "__annotations__", {}))
    return names


def _public(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_")} | set(getattr(cls, "__annotations__", {}))


@pytest.mark.parametrize(
    ("cls", "protocol", "extra"),
    [(MLflowTracker, StudyTracker, {"experiment"}), (NullTracker, StudyTracker, set()), (RelayTracker, Tracker, set())],
    ids=["mlflow", "null", "relay"],
)
def test_each_tracker_implements_its_protocol_exactly(cls: type, protocol: type, extra: set[str]) -> None:
    """A method added to one tracker and not to the protocol (or the other way round) fails here:
    every name matches, and every method takes the protocol's parameters (names, kinds, defaults)."""
    declared = _members(protocol)
    attributes = set(getattr(Tracker, "__annotations__", {})) | set(getattr(protocol, "__annotations__", {}))
    assert _public(cls) - extra - {"tracking_uri", "experiment_id", "enabled"} == declared - attributes
    for name in sorted(declared - attributes):
        want = inspect.signature(getattr(protocol, name))
        have = inspect.signature(getattr(cls, name))
        assert [(p.name, p.kind, p.default) for p in have.parameters.values()] == [
            (p.name, p.kind, p.default) for p in want.parameters.values()
        ], f"{cls.__name__}.{name}{have} differs from {protocol.__name__}.{name}{want}"


def test_every_tracker_has_the_protocols_attributes(tmp_path: Path) -> None:
    real = MLflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "regtune")
    for tracker in (real, NullTracker()):
        assert isinstance(tracker.enabled, bool) and isinstance(tracker.tracking_uri, str)
        assert isinstance(tracker.experiment_id, str)
    assert real.enabled and not NullTracker().enabled


def test_tracking_off_gives_a_null_tracker_that_logs_nothing() -> None:
    tracker = make_tracker("off", "regtune")
    assert isinstance(tracker, NullTracker)
    parent = tracker.start_study_run("s", {"n_trials": 1})
    run_id = tracker.start_trial_run(parent, 0, {"l2": 0.1})
    assert parent == run_id == "" and tracker.resolve(run_id) == ""
    tracker.log_epoch(run_id, 0, _epoch(0))
    tracker.finish_trial(run_id, "COMPLETE", {"value": 1.0})
    assert tracker.child_runs(parent) == [] and tracker.metric_history(run_id, "value") == []
    assert tracker.run(run_id) is None and tracker.find_study_run("s") is None
    with pytest.raises(TrackingError, match="--tracking-uri"):
        tracker.register_model("models:/m-1", "best", parent)


def test_run_and_metric_history_read_what_is_stored(tracker: MLflowTracker) -> None:
    parent = tracker.start_study_run("s", {})
    run_id = tracker.start_trial_run(parent, 0, {"lr": 0.5})
    tracker.log_epoch(run_id, 0, _epoch(0))
    assert tracker.metric_history(run_id, "val_score") == []  # queued, not stored yet
    tracker.flush(run_id)
    assert tracker.resolve(run_id) == run_id
    assert tracker.run(run_id).data.params == {"lr": "0.5"}
    assert [m.step for m in tracker.metric_history(run_id, "val_score")] == [0]
