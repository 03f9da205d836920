"""Workers log through a relay (a thread of the parent, or a tracker process), against a real
MLflow store in tmp_path."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
from relay_helpers import spawned_worker

from regtune.exceptions import TrackingError
from regtune.tracking.relay import RelayTracker, TrackerProcess, TrackerRelay
from regtune.tracking.tracker import MLflowTracker

CTX = mp.get_context("spawn")


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> MLflowTracker:
    tmp = tmp_path_factory.mktemp("relay")
    return MLflowTracker(f"sqlite:///{tmp / 'mlflow.db'}", "relay", artifact_root=tmp / "mlruns", flush_interval=3600)


def test_a_spawned_worker_logs_through_the_parent_without_importing_mlflow(tracker: MLflowTracker) -> None:
    parent = tracker.start_study_run("spawned", {})
    relay = TrackerRelay(tracker)
    conn = relay.connect(CTX)
    queue = CTX.Queue()
    proc = CTX.Process(target=spawned_worker, args=(conn, parent, queue))
    proc.start()
    conn.close()
    run_id, imported_mlflow = queue.get(timeout=120)
    proc.join(timeout=60)
    relay.join(timeout=30)
    assert proc.exitcode == 0 and not imported_mlflow
    run = tracker.run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["state"] == "COMPLETE"
    assert run.data.params == {"lr": "0.01"}
    assert [m.step for m in tracker.metric_history(run_id, "val_score")] == [0, 1, 2]


def test_errors_come_back_to_the_worker_and_unknown_calls_are_refused(tracker: MLflowTracker) -> None:
    relay = TrackerRelay(tracker)
    worker = RelayTracker(relay.connect(CTX), tracker.tracking_uri)
    parent = tracker.start_study_run("errors", {})
    run_id = worker.start_trial_run(parent, 0, {})
    with pytest.raises(TrackingError, match="ValueError: run status 'BOGUS'"):
        worker.mark_orphans(parent, status="BOGUS")  # a call awaits its answer
    with pytest.raises(TrackingError, match="not relayed"):
        worker._call("_log_batch", run_id)
    worker.finish_trial(run_id, "WAITING")  # a cast: the relay logs the error, the worker goes on
    worker.finish_trial(run_id, "FAIL")  # the pipe still works after an error
    real = worker.resolve(run_id, wait=True)
    assert worker.trial_run_id(parent, 0) == real
    worker.close()
    relay.join(timeout=30)
    assert tracker.run(real).info.status == "FAILED"


def test_epochs_a_killed_worker_sent_are_still_written(tracker: MLflowTracker) -> None:
    """kill -9 of a worker: what it sent is in the pipe; the parent queues it, then writes it."""
    relay = TrackerRelay(tracker)
    worker = RelayTracker(relay.connect(CTX), tracker.tracking_uri)
    run_id = worker.start_trial_run(tracker.start_study_run("killed", {}), 0, {})
    for step in range(4):
        worker.log_epoch(run_id, step, {"val_score": step / 10})
    real = worker.resolve(run_id, wait=True)
    worker._conn.close()  # dies without closing the run
    relay.join(timeout=30)
    tracker.flush()
    assert [m.step for m in tracker.metric_history(real, "val_score")] == [0, 1, 2, 3]


def test_opening_a_run_does_not_wait_for_mlflow(tracker: MLflowTracker) -> None:
    """The token comes back before the relay has read the call; the run id follows."""
    parent = tracker.start_study_run("no-wait", {})
    mine, theirs = CTX.Pipe(duplex=True)
    worker = RelayTracker(theirs, tracker.tracking_uri)
    token = worker.start_trial_run(parent, 0, {"lr": 1})  # nobody serves the pipe yet
    worker.log_epoch(token, 0, {"val_score": 0.5})
    assert worker.resolve(token) is None
    relay = TrackerRelay(tracker)
    relay.serve(mine)
    real = worker.resolve(token, wait=True)
    assert real is not None and not real.startswith("pending-")
    worker.close()
    relay.join(timeout=30)
    assert [m.step for m in tracker.metric_history(real, "val_score")] == [0]


def test_a_tracker_process_writes_what_a_killed_worker_sent(tmp_path: Path) -> None:
    """The tracker process (its own MLflow, shared by every worker): a worker that dies
    (kill -9: its socket closes unflushed) loses no epoch it sent; an ended trial is complete."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MLflowTracker(store, "proc", artifact_root=tmp_path / "mlruns", flush_interval=3600)
    parent = tracker.start_study_run("proc", {})
    process = TrackerProcess.shared()
    assert TrackerProcess.shared() is process  # reused, not restarted
    done, dying = (RelayTracker(process.connect(tracker.tracking_uri, "proc"), store) for _ in range(2))
    finished = done.start_trial_run(parent, 0, {"lr": 1})
    killed = dying.start_trial_run(parent, 1, {"lr": 2})
    for step in range(5):
        done.log_epoch(finished, step, {"val_score": step / 10})
        dying.log_epoch(killed, step, {"val_score": step / 10})
    done.finish_trial(finished, "COMPLETE", {"value": 0.4})
    finished = done.resolve(finished, wait=True)
    done.close()  # returns once everything it sent is written
    run = tracker.run(finished)
    assert run.info.status == "FINISHED" and run.data.params == {"lr": "1"}
    assert [m.step for m in tracker.metric_history(finished, "val_score")] == [0, 1, 2, 3, 4]
    killed = dying.resolve(killed, wait=True)
    # The same process serves another store (another study of the session) beside it.
    other = MLflowTracker(f"sqlite:///{tmp_path / 'other.db'}", "other", artifact_root=tmp_path / "mlruns")
    elsewhere = RelayTracker(process.connect(other.tracking_uri, "other"), other.tracking_uri)
    run = elsewhere.resolve(elsewhere.start_trial_run(other.start_study_run("other", {}), 0, {}), wait=True)
    elsewhere.close()
    assert run is not None and other.run(run).data.tags["regtune.trial_number"] == "0"
    dying._conn.close()
    process.retire(timeout=60)  # it writes what it holds, then ends
    assert not process.alive()
    assert [m.step for m in tracker.metric_history(killed, "val_score")] == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_a_relay_serves_workers_of_a_whole_study(tmp_path: Path) -> None:
    """``tune(n_jobs=2)`` end to end: every trial's run, epochs and state, whoever ran it."""
    from regtune.tuning.tuner import tune

    result = tune("iris", n_trials=6, cv=1, pruner="none", n_jobs=2, log_model=False, space="minimal",
                  storage=str(tmp_path / "j.journal"), tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                  progress=False, device="cpu")
    client = MLflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "regtune")
    for t in result.study.trials:
        run = client.run(t.user_attrs["mlflow_run_id"])
        assert run.info.status == "FINISHED" and run.data.tags["state"] == t.state.name
        steps = [m.step for m in client.metric_history(run.info.run_id, "val_score")]
        assert sorted(steps) == sorted(t.intermediate_values)
