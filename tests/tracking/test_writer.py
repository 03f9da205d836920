"""The background writer: queued epochs and params reach the store live, at a trial's end,
after a failed write, and at exit (a real SQLite store under tmp_path)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from regtune.tracking.tracker import MLflowTracker


def _tracker(store: Path, tmp_path: Path, name: str, flush_interval: float) -> MLflowTracker:
    return MLflowTracker(f"sqlite:///{store}", experiment=name, artifact_root=tmp_path / "mlruns",
                         flush_interval=flush_interval)


def _steps(tracker: MLflowTracker, run_id: str, key: str = "val_score") -> list[int]:
    return [m.step for m in tracker.metric_history(run_id, key)]


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
    run = tracker.run(run_id)
    assert run.info.status == "RUNNING" and run.data.params == {"lr": "0.01"}
    history = tracker.metric_history(run_id, "val_score")
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
    run = tracker.run(run_id)
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
    assert tracker.run(run_id).info.status == "KILLED"
    assert _steps(tracker, run_id) == [0, 1, 2]


def test_a_failed_write_keeps_the_queue_for_the_next_one(store: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    tracker = _tracker(store, tmp_path, "store-down", flush_interval=3600)
    parent = tracker.start_study_run("s", {})
    run_id = tracker.start_trial_run(parent, 0, {"lr": 1})
    tracker.log_epoch(run_id, 0, _epoch(0))
    real = MlflowClient.log_batch

    def down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("MLflow is down")

    monkeypatch.setattr(MlflowClient, "log_batch", down)
    with pytest.raises(ConnectionError):
        tracker.flush()
    tracker.log_epoch(run_id, 1, _epoch(1))
    monkeypatch.setattr(MlflowClient, "log_batch", real)
    tracker.finish_trial(run_id, "COMPLETE")
    assert _steps(tracker, run_id) == [0, 1]
    assert tracker.run(run_id).data.params == {"lr": "1"}


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
