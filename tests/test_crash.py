"""A worker stopped mid-trial (``kill -9``, Ctrl-C) loses nothing; the same command resumes.

Each test starts ``regtune tune`` in a subprocess on a tiny space whose trials last about a
second, waits (polling the Optuna storage) until two trials are complete and a third is
training, stops the worker, and runs the same command again. Finished trials must stay as they
were, the stopped trial must be FAIL in Optuna and KILLED/FAILED in MLflow, and the study must
end with exactly the requested number of counted trials.
"""

from __future__ import annotations

import collections
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from worker_helpers import (
    Worker,
    load_trials,
    mlflow_runs,
    mlflow_steps,
    start_worker,
    wait_for,
    write_space,
)

N_TRIALS = 6
STUDY = "crash"
COUNTED = ("COMPLETE", "PRUNED")


def _command(tmp_path: Path, *extra: Any) -> list[Any]:
    space = write_space(tmp_path / "tiny.yaml", max_epochs=60)
    return ["tune", "iris", "--space", space, "--cv", "1", "--trials", N_TRIALS, "--pruner", "none",
            "--study", STUDY, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--quiet", *extra]


def _stop_mid_trial(worker: Worker, storage: str | Path, sig: int, *,
                    run_id: bool = True) -> tuple[dict[int, Any], Any]:
    """Wait for two complete trials and one training, send ``sig``; returns what was there.
    ``run_id=False`` does not wait for the trial's MLflow run id (it reaches Optuna a few
    epochs late): a trial of iris lasts ~0.3 s, and waiting for it let the trial end first."""

    def mid_trial() -> tuple[list[Any], Any] | None:
        if worker.proc.poll() is not None:
            raise AssertionError(f"the worker ended before it could be stopped: {worker.describe()}")
        trials = load_trials(storage, STUDY) or []
        done = [t for t in trials if t.state.name == "COMPLETE"]
        running = [t for t in trials if t.state.name == "RUNNING"
                   and ("mlflow_run_id" in t.user_attrs or not run_id) and t.intermediate_values]
        return (done, running[0]) if len(done) >= 2 and running else None

    done, running = wait_for(mid_trial, timeout=300, what="2 complete trials and one training")
    worker.proc.send_signal(sig)
    worker.wait(timeout=120)
    return {t.number: t for t in done}, running


def by_number(trials: list[Any]) -> dict[int, Any]:
    return {t.number: t for t in trials}


def _assert_untouched(before: dict[int, Any], after: dict[int, Any]) -> None:
    for number, old in before.items():
        new = after[number]
        assert (new.state, new.value, new.params, new.datetime_complete, new.intermediate_values) == (
            old.state, old.value, old.params, old.datetime_complete, old.intermediate_values
        ), f"finished trial {number} changed on resume"
        assert new.user_attrs["mlflow_run_id"] == old.user_attrs["mlflow_run_id"]


def _assert_study_complete(trials: list[Any], stopped: Any, db: Path) -> None:
    """Exactly N counted trials, the stopped one FAIL and not counted, MLflow in step."""
    numbered = by_number(trials)
    states = collections.Counter(t.state.name for t in trials)
    assert sum(states[s] for s in COUNTED) == N_TRIALS, states
    assert states["FAIL"] == 1 and len(trials) == N_TRIALS + 1, states
    killed = numbered[stopped.number]
    assert killed.state.name == "FAIL"
    assert "fail_reason" not in killed.user_attrs, "a crash must not count as a trial failed by its objective"
    assert killed.params == stopped.params

    runs = [r for r in mlflow_runs(db) if r.lifecycle == "active"]
    assert not [(r.name, r.status) for r in runs if r.status == "RUNNING"], "an MLflow run was left RUNNING"
    parents = [r for r in runs if r.tags.get("regtune.run_type") == "study"]
    assert [p.status for p in parents] == ["FINISHED"]
    children = [r for r in runs if r.tags.get("mlflow.parentRunId") == parents[0].run_id]
    assert sorted(r.trial for r in children) == sorted(numbered), "one child run per trial"
    status = {r.run_id: r.status for r in children}
    # killed, not stopped: a trial stopped before its run id reached Optuna has it only now
    assert status[killed.user_attrs["mlflow_run_id"]] in ("KILLED", "FAILED")
    for t in trials:
        if t.state.name in COUNTED:
            assert status[t.user_attrs["mlflow_run_id"]] == "FINISHED"
    # Epochs still queued for MLflow when the worker died come back from Optuna's record.
    logged = mlflow_steps(db, "val_score")
    for t in trials:
        missing = set(t.intermediate_values) - logged.get(t.user_attrs["mlflow_run_id"], set())
        assert not missing, f"trial {t.number} ({t.state.name}): epochs {sorted(missing)} are not in MLflow"


def _assert_no_repeats(trials: list[Any], stopped: Any, retry: bool) -> None:
    """A resumed study samples new configurations; only --retry-failed repeats the killed one."""
    seen: dict[tuple, int] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if t.state.name not in COUNTED:
            continue
        key = tuple(sorted(t.params.items()))
        assert key not in seen, f"trial {t.number} repeats the configuration of trial {seen[key]}: {t.params}"
        seen[key] = t.number
    reruns = [t.number for t in trials if t.number > stopped.number and t.params == stopped.params]
    if retry:
        assert len(reruns) == 1, "the killed trial's params were not re-run (once)"
        assert by_number(trials)[reruns[0]].state.name == "COMPLETE"
    else:
        assert reruns == [], "the killed trial was re-run without --retry-failed"


def _kill_and_resume(tmp_path: Path, storage: str | Path, extra: list[Any], *, retry: bool,
                     pause: float = 0.0) -> None:
    args = _command(tmp_path, *extra, *(["--retry-failed", 1] if retry else []))
    first = start_worker(args, tmp_path, "first")
    done, running = _stop_mid_trial(first, storage, signal.SIGKILL)
    assert first.proc.returncode == -signal.SIGKILL
    time.sleep(pause)
    second = start_worker(args, tmp_path, "second")
    assert second.wait(timeout=600) == 0, second.describe()

    trials = load_trials(storage, STUDY)
    assert trials is not None
    _assert_untouched(done, by_number(trials))
    _assert_study_complete(trials, running, tmp_path / "mlflow.db")
    _assert_no_repeats(trials, running, retry)


def test_kill_9_mid_trial_then_the_same_command_finishes_the_study(tmp_path: Path) -> None:
    _kill_and_resume(tmp_path, tmp_path / "regtune.journal", [], retry=False)


@pytest.mark.slow
def test_kill_9_with_retry_failed_reruns_the_killed_trials_params(tmp_path: Path) -> None:
    _kill_and_resume(tmp_path, tmp_path / "regtune.journal", [], retry=True)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("retry", [False, True], ids=["no-retry", "retry"])
def test_kill_9_on_postgres_fails_the_stale_trial_and_resumes(tmp_path: Path, postgres_url: str,
                                                              retry: bool) -> None:
    # Wait past the grace period, so the heartbeat (not the dead pid) is what finds the trial.
    _kill_and_resume(tmp_path, postgres_url, ["--storage", postgres_url, "--heartbeat", 1, "--grace", 2],
                     retry=retry, pause=4.0)


@pytest.mark.slow
def test_ctrl_c_fails_the_trial_exits_130_with_one_line_and_resumes(tmp_path: Path) -> None:
    storage = tmp_path / "regtune.journal"
    db = tmp_path / "mlflow.db"
    args = _command(tmp_path)
    first = start_worker(args, tmp_path, "first")
    done, running = _stop_mid_trial(first, storage, signal.SIGINT, run_id=False)
    assert first.proc.returncode == 130, first.describe()
    errors = [line for line in first.stderr.splitlines() if line.startswith("regtune: error:")]
    assert len(errors) == 1, first.stderr
    assert "same command" in errors[0] and "resume" in errors[0], errors[0]
    assert "Traceback" not in first.stderr, first.stderr

    trials = load_trials(storage, STUDY)
    assert trials is not None
    assert not [t.number for t in trials if t.state.name == "RUNNING"], "a trial was left RUNNING"
    stopped = next(t for t in trials if t.number == running.number)
    assert stopped.state.name == "FAIL" and stopped.user_attrs.get("interrupted") is True
    runs = [r for r in mlflow_runs(db) if r.lifecycle == "active"]
    assert not [(r.name, r.status) for r in runs if r.status == "RUNNING"], "an MLflow run was left RUNNING"
    by_id = {r.run_id: r for r in runs}
    assert by_id[stopped.user_attrs["mlflow_run_id"]].status == "KILLED"

    second = start_worker(args, tmp_path, "second")
    assert second.wait(timeout=600) == 0, second.describe()
    trials = load_trials(storage, STUDY)
    assert trials is not None
    _assert_untouched(done, by_number(trials))
    _assert_study_complete(trials, running, db)
    _assert_no_repeats(trials, running, retry=False)


@pytest.mark.slow
@pytest.mark.integration
def test_a_worker_killed_mid_study_is_replaced_by_the_worker_still_running(tmp_path: Path,
                                                                          postgres_url: str) -> None:
    """Two machines share a study and one dies: the survivor fails the dead worker's trial once
    its heartbeat is stale, closes its MLflow run and runs a replacement; no re-run needed."""
    n_trials = 10
    space = write_space(tmp_path / "tiny.yaml", max_epochs=120)
    args = ["tune", "iris", "--space", space, "--cv", "1", "--trials", n_trials, "--pruner", "none",
            "--study", STUDY, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--quiet",
            "--storage", postgres_url, "--heartbeat", 1, "--grace", 3]
    survivor = start_worker(args, tmp_path, "survivor")
    wait_for(lambda: load_trials(postgres_url, STUDY), timeout=300, what="the study to be created")
    doomed = start_worker(args, tmp_path, "doomed")

    def doomed_trial() -> Any:
        if doomed.proc.poll() is not None:
            raise AssertionError(f"the second worker ended early: {doomed.describe()}")
        owner = f":{doomed.pid}"
        return next((t for t in load_trials(postgres_url, STUDY) or [] if t.state.name == "RUNNING"
                     and t.user_attrs.get("regtune.owner", "").endswith(owner)
                     and "mlflow_run_id" in t.user_attrs and t.intermediate_values), None)

    stopped = wait_for(doomed_trial, timeout=300, what="the second worker to be mid-trial")
    doomed.proc.kill()
    doomed.wait(timeout=60)
    assert survivor.wait(timeout=600) == 0, survivor.describe()

    trials = load_trials(postgres_url, STUDY)
    assert trials is not None
    states = collections.Counter(t.state.name for t in trials)
    assert sum(states[s] for s in COUNTED) == n_trials and states["FAIL"] == 1, states
    assert by_number(trials)[stopped.number].state.name == "FAIL"
    runs = [r for r in mlflow_runs(tmp_path / "mlflow.db") if r.lifecycle == "active"]
    assert not [(r.name, r.status) for r in runs if r.status == "RUNNING"], "an MLflow run was left RUNNING"
    assert {r.run_id: r.status for r in runs}[stopped.user_attrs["mlflow_run_id"]] in ("KILLED", "FAILED")
