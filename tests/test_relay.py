"""Worker processes log through the parent's tracker, against a real MLflow store in tmp_path."""

from __future__ import annotations

import multiprocessing as mp
import sys
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from regtune.exceptions import TrackingError
from regtune.tracking.relay import RelayTracker, TrackerRelay
from regtune.tracking.tracker import MLflowTracker

CTX = mp.get_context("spawn")


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> MLflowTracker:
    tmp = tmp_path_factory.mktemp("relay")
    return MLflowTracker(f"sqlite:///{tmp / 'mlflow.db'}", "relay", artifact_root=tmp / "mlruns", flush_interval=3600)


def _worker(conn: Connection, parent: str, queue: mp.Queue) -> None:
    """A spawned worker's use of the tracker: one trial, three epochs, finished."""
    relay = RelayTracker(conn, "sqlite:///unused")
    run_id = relay.start_trial_run(parent, 0, {"lr": 0.01})
    for step in range(3):
        relay.log_epoch(run_id, step, {"val_score": step / 10})
    relay.finish_trial(run_id, "COMPLETE", {"value": 0.2})
    relay.close()
    queue.put((run_id, "mlflow" in sys.modules))


def test_a_spawned_worker_logs_through_the_parent_without_importing_mlflow(tracker: MLflowTracker) -> None:
    parent = tracker.start_study_run("spawned", {})
    relay = TrackerRelay(tracker)
    conn = relay.connect(CTX)
    queue = CTX.Queue()
    proc = CTX.Process(target=_worker, args=(conn, parent, queue))
    proc.start()
    conn.close()
    run_id, imported_mlflow = queue.get(timeout=120)
    proc.join(timeout=60)
    relay.join(timeout=30)
    assert proc.exitcode == 0 and not imported_mlflow
    run = tracker._client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["state"] == "COMPLETE"
    assert run.data.params == {"lr": "0.01"}
    assert [m.step for m in tracker._client.get_metric_history(run_id, "val_score")] == [0, 1, 2]


def test_errors_come_back_to_the_worker_and_unknown_calls_are_refused(tracker: MLflowTracker) -> None:
    relay = TrackerRelay(tracker)
    worker = RelayTracker(relay.connect(CTX), tracker.tracking_uri)
    run_id = worker.start_trial_run(tracker.start_study_run("errors", {}), 0, {})
    with pytest.raises(TrackingError, match="ValueError: trial state 'WAITING'"):
        worker.finish_trial(run_id, "WAITING")
    with pytest.raises(TrackingError, match="not relayed"):
        worker._call("_log_batch", run_id)
    worker.finish_trial(run_id, "FAIL")  # the pipe still works after an error
    worker.close()
    relay.join(timeout=30)
    assert tracker._client.get_run(run_id).info.status == "FAILED"


def test_epochs_a_killed_worker_sent_are_still_written(tracker: MLflowTracker) -> None:
    """kill -9 of a worker: what it sent is in the pipe; the parent queues it, then writes it."""
    relay = TrackerRelay(tracker)
    worker = RelayTracker(relay.connect(CTX), tracker.tracking_uri)
    run_id = worker.start_trial_run(tracker.start_study_run("killed", {}), 0, {})
    for step in range(4):
        worker.log_epoch(run_id, step, {"val_score": step / 10})
    worker._conn.close()  # dies without closing the run
    relay.join(timeout=30)
    tracker.flush()
    assert [m.step for m in tracker._client.get_metric_history(run_id, "val_score")] == [0, 1, 2, 3]


@pytest.mark.slow
def test_a_relay_serves_workers_of_a_whole_study(tmp_path: Path) -> None:
    """``tune(n_jobs=2)`` end to end: every trial's run, epochs and state, whoever ran it."""
    from regtune.tuning.tuner import tune

    result = tune("iris", n_trials=6, cv=1, pruner="none", n_jobs=2, log_model=False, space="minimal",
                  storage=str(tmp_path / "j.journal"), tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                  progress=False, device="cpu")
    client = MLflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "regtune")._client
    for t in result.study.trials:
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        assert run.info.status == "FINISHED" and run.data.tags["state"] == t.state.name
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_score")]
        assert sorted(steps) == sorted(t.intermediate_values)
