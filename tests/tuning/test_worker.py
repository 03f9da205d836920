"""A worker and one trial: every way a trial can end gives the same state in Optuna and in its
MLflow run. A recording tracker stands in for MLflow; the networks are tiny."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch

import regtune.tuning.worker as worker
from regtune.data.loading import load_dataset
from regtune.metrics import get_metric
from regtune.space.space import SearchSpace
from regtune.tuning.prepare import prepare
from regtune.tuning.queue import OWNER_ATTR, open_study, owner_tag
from regtune.tuning.settings import TuneSettings
from regtune.tuning.storage import make_storage
from regtune.tuning.trial import Folds, TrialPruned, make_estimator, run_objective
from regtune.tuning.worker import WorkerSpec, run_worker, worker_process


class RecordingTracker:
    """The tracker interface, keeping what a trial logged in memory."""

    enabled = True
    tracking_uri = "memory"
    experiment_id = "0"

    def __init__(self, fail_on: str | None = None) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.fail_on = fail_on

    def _check(self, name: str) -> None:
        if self.fail_on == name:
            raise RuntimeError(f"MLflow is down ({name})")

    def start_trial_run(self, parent: str, number: int, params: dict, tags: dict | None = None) -> str:
        self._check("start_trial_run")
        run_id = f"run-{number}"
        self.runs[run_id] = {"params": dict(params), "tags": dict(tags or {}), "steps": [],
                             "status": "RUNNING", "metrics": {}}
        return run_id

    def log_epoch(self, run_id: str, epoch: int, record: dict) -> None:
        self.runs[run_id]["steps"].append(epoch)

    def log_params(self, run_id: str, params: dict) -> None:
        self.runs[run_id]["params"].update(params)

    def finish_trial(self, run_id: str, state: str, metrics: dict | None = None, tags: dict | None = None) -> None:
        self._check("finish_trial")
        run = self.runs[run_id]
        run["tags"].update({**(tags or {}), "state": state})
        run["metrics"].update(metrics or {})
        run["status"] = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}[state]

    def set_tags(self, run_id: str, tags: dict) -> None:
        self.runs[run_id]["tags"].update(tags)

    def end_run(self, run_id: str, status: str) -> None:
        self.runs[run_id]["status"] = status

    closed = 0

    def close(self) -> None:
        self.closed += 1


@pytest.fixture(scope="module")
def folds() -> Folds:
    return prepare(load_dataset("iris"), TuneSettings(cv=2, seed=0))[0]


def _setup(tmp_path: Path, tiny_space: Path, n_trials: int, monkeypatch: pytest.MonkeyPatch,
           tracker: RecordingTracker | None = None, **spec: Any) -> tuple[optuna.Study, WorkerSpec, RecordingTracker]:
    space = SearchSpace.from_yaml(tiny_space)
    study, _ = open_study(
        study_name="w", storage=make_storage(":memory:"), sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.NopPruner(), direction="maximize", n_trials=n_trials,
        baseline_params=space.baseline_params(), attrs={},
    )
    tracker = tracker or RecordingTracker()
    monkeypatch.setattr(worker, "make_tracker", lambda uri, experiment: tracker)
    settings = TuneSettings(study_name="w", storage=":memory:", sampler="random", pruner="none", seed=0,
                            space=str(tiny_space), metric="accuracy", device="cpu", tracking_uri="memory",
                            experiment="e", n_trials=n_trials, ensemble=0)
    options = {"parent_run_id": "parent", "warmup": 3, "max_epochs": space.to_config({}).max_epochs, **spec}
    return study, WorkerSpec(settings, **options), tracker


def _states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in study.get_trials()]


def test_complete_trials_log_their_run(tmp_path: Path, tiny_space: Path, folds: Folds,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    study, spec, tracker = _setup(tmp_path, tiny_space, 2, monkeypatch)
    run_worker(spec, folds, 0, study)
    assert _states(study) == ["COMPLETE", "COMPLETE"]
    for trial in study.get_trials():
        run = tracker.runs[trial.user_attrs["mlflow_run_id"]]
        assert run["tags"]["state"] == "COMPLETE" and run["status"] == "FINISHED"
        assert run["steps"] == list(range(len(run["steps"]))) and run["steps"]
        assert run["params"]["trial_seed"] == trial.user_attrs["seed"] and run["params"]["seed"] == spec.settings.seed
        assert run["params"]["config.lr"] == trial.params["lr"]
        assert math.isclose(run["metrics"]["value"], trial.value)
        assert "best_epoch" in trial.user_attrs and "regtune.owner" in trial.user_attrs
    assert tracker.runs["run-0"]["tags"]["baseline"] == "True"


def test_a_failing_trial_fails_alone(tmp_path: Path, tiny_space: Path, folds: Folds,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    study, spec, tracker = _setup(tmp_path, tiny_space, 3, monkeypatch)
    real = worker.run_objective

    def objective(trial: optuna.Trial, *args: Any, **kwargs: Any) -> Any:
        if trial.number == 1:
            raise FloatingPointError("training diverged at epoch 2: loss=nan")
        return real(trial, *args, **kwargs)

    monkeypatch.setattr(worker, "run_objective", objective)
    run_worker(spec, folds, 0, study)
    assert _states(study) == ["COMPLETE", "FAIL", "COMPLETE"]
    failed = study.get_trials()[1]
    assert failed.user_attrs["fail_reason"] == "FloatingPointError: training diverged at epoch 2: loss=nan"
    run = tracker.runs["run-1"]
    assert run["status"] == "FAILED" and run["tags"]["state"] == "FAIL"
    assert run["tags"]["fail_reason"] == failed.user_attrs["fail_reason"]


def test_a_pruned_trial_records_its_epoch(tmp_path: Path, tiny_space: Path, folds: Folds,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    study, spec, tracker = _setup(tmp_path, tiny_space, 1, monkeypatch)
    monkeypatch.setattr(worker, "run_objective", lambda *a, **k: (_ for _ in ()).throw(TrialPruned(4)))
    run_worker(spec, folds, 0, study)
    assert _states(study) == ["PRUNED"]
    assert tracker.runs["run-0"]["tags"] == {**tracker.runs["run-0"]["tags"], "state": "PRUNED", "pruned_epoch": "4"}


def test_ctrl_c_fails_the_trial_uncounted_and_kills_its_run(tmp_path: Path, tiny_space: Path, folds: Folds,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    study, spec, tracker = _setup(tmp_path, tiny_space, 3, monkeypatch)

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(worker, "run_objective", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_worker(spec, folds, 0, study)
    assert _states(study) == ["FAIL", "WAITING", "WAITING"]
    trial = study.get_trials()[0]
    assert trial.user_attrs["interrupted"] is True and "fail_reason" not in trial.user_attrs
    assert tracker.runs["run-0"]["status"] == "KILLED" and tracker.runs["run-0"]["tags"]["state"] == "FAIL"


def test_mlflow_errors_never_leave_a_trial_running(tmp_path: Path, tiny_space: Path, folds: Folds,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    study, spec, _ = _setup(tmp_path, tiny_space, 2, monkeypatch, RecordingTracker(fail_on="start_trial_run"))
    run_worker(spec, folds, 0, study)
    assert _states(study) == ["FAIL", "FAIL"]
    assert "MLflow is down" in study.get_trials()[0].user_attrs["fail_reason"]
    study, spec, _ = _setup(tmp_path, tiny_space, 1, monkeypatch, RecordingTracker(fail_on="finish_trial"))
    with pytest.raises(RuntimeError, match="MLflow is down"):
        run_worker(spec, folds, 0, study)
    assert _states(study) == ["COMPLETE"]


def test_a_trial_that_cannot_be_sampled_still_gets_a_failed_run(
    tmp_path: Path, tiny_space: Path, folds: Folds, monkeypatch: pytest.MonkeyPatch
) -> None:
    study, spec, tracker = _setup(tmp_path, tiny_space, 1, monkeypatch)

    def broken(self: SearchSpace, trial: optuna.Trial) -> Any:
        raise ValueError("no valid configuration")

    monkeypatch.setattr(SearchSpace, "sample", broken)
    run_worker(spec, folds, 0, study)
    assert _states(study) == ["FAIL"]
    assert tracker.runs["run-0"]["tags"]["fail_reason"] == "ValueError: no valid configuration"


def test_the_deadline_stops_new_trials(tmp_path: Path, tiny_space: Path, folds: Folds,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    study, spec, _ = _setup(tmp_path, tiny_space, 3, monkeypatch, deadline=time.time() - 1)
    run_worker(spec, folds, 0, study)
    assert _states(study) == ["COMPLETE", "WAITING", "WAITING"]


def test_an_idle_worker_sees_a_local_peers_last_trial_end_within_a_fraction_of_a_second(
        tmp_path: Path, tiny_space: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 21 item 5: a worker with nothing left to claim watched the trial another worker on
    this machine still ran once a second, so the final refits began up to 1 s after the search."""
    study, spec, tracker = _setup(tmp_path, tiny_space, 1, monkeypatch)
    trial = study.ask()
    trial.set_user_attr(OWNER_ATTR, owner_tag())  # a live process of this host: watched, not reaped
    timer = threading.Timer(0.3, lambda: study.tell(trial, 0.5))
    timer.start()
    started = time.monotonic()
    assert worker._replace_dead_workers_trials(study, tracker, spec, None, {}) is False
    elapsed = time.monotonic() - started
    timer.join()
    assert 0.3 <= elapsed < 0.9, elapsed


def test_the_fork_server_imports_what_a_first_optimizer_step_would() -> None:
    """torch's optimizers import torch._dynamo on their first step (~1 s): every worker paid it
    in its first trial, and the final refits' helper process in its first refit."""
    check = "import sys; sys.exit(0 if 'torch._dynamo' in sys.modules else 3)"
    p = worker.worker_context().Process(target=exec, args=(check,))
    p.start()
    p.join(timeout=300)
    assert p.exitcode == 0


def test_a_spawned_worker_exits_quietly_on_ctrl_c(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(worker, "run_worker", interrupted)
    with pytest.raises(SystemExit) as stop:
        worker_process(None, None, 0)  # type: ignore[arg-type]
    assert stop.value.code == 130


class StubTrial:
    """Just what run_objective uses of a trial; the pruner always says prune."""

    def __init__(self, baseline: bool = False) -> None:
        self.user_attrs = {"baseline": baseline}
        self.reported: list[tuple[float, int]] = []

    def report(self, value: float, step: int) -> None:
        self.reported.append((value, step))

    def should_prune(self) -> bool:
        return True

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user_attrs[key] = value


def test_objective_prunes_after_the_warmup_and_never_the_baseline(folds: Folds, tiny_space: Path) -> None:
    config = SearchSpace.from_yaml(tiny_space).to_config({"lr": 0.01})
    metric = get_metric("accuracy", "classification")
    trial = StubTrial()
    with pytest.raises(TrialPruned) as pruned:
        run_objective(trial, config, folds, metric, seed=1, device="cpu", warmup=3)  # type: ignore[arg-type]
    assert pruned.value.epoch == 2 and [step for _, step in trial.reported] == [0, 1, 2]
    baseline = StubTrial(baseline=True)
    value, summary = run_objective(baseline, config, folds, metric, seed=1, device="cpu", warmup=3)  # type: ignore[arg-type]
    assert len(baseline.reported) == config.max_epochs and summary["value"] == value


def test_a_trial_out_of_time_completes_on_the_epochs_it_trained(folds: Folds, tiny_space: Path) -> None:
    """The search's end cuts a trial short: it is scored on the epochs it trained (its best
    common epoch so far), as if those were all it had, not pruned and lost."""
    from regtune.tuning.budget import OutOfTime

    config = SearchSpace.from_yaml(tiny_space).to_config({"lr": 0.01, "use_early_stopping": True})
    metric = get_metric("accuracy", "classification")

    def out_of_time_at_epoch_2(epoch: int, record: dict) -> None:
        if epoch == 2:
            raise OutOfTime(epoch)

    trial = StubTrial(baseline=False)
    trial.should_prune = lambda: False  # type: ignore[method-assign]
    value, summary = run_objective(trial, config, folds, metric, seed=1, device="cpu", warmup=3,  # type: ignore[arg-type]
                                   on_epoch=out_of_time_at_epoch_2)
    assert [step for _, step in trial.reported] == [0, 1]  # epoch 2 trained and scored, not reported
    assert summary["value"] == value and 0.0 <= value <= 1.0
    assert summary["epochs"] <= 3 < config.max_epochs


def test_objective_value_is_the_mean_over_folds(folds: Folds, tiny_space: Path) -> None:
    config = SearchSpace.from_yaml(tiny_space).to_config({"lr": 0.01, "use_early_stopping": True})
    metric = get_metric("accuracy", "classification")
    value, _ = run_objective(StubTrial(baseline=True), config, folds, metric, seed=5, device="cpu", warmup=3)  # type: ignore[arg-type]
    per_fold = []
    for k, (tr, va) in enumerate(folds.splits):
        est = make_estimator(config, "classification", image_shape=None, device="cpu", random_state=5 + k)
        for _ in est.fit_iter(folds.X[tr], folds.y[tr], validation_data=(folds.X[va], folds.y[va]),
                              score_fn=metric.epoch_fn):
            pass
        per_fold.append(est.history_[est.best_epoch_]["val_score"])
    assert len(per_fold) == 2 and value == pytest.approx(np.mean(per_fold), abs=1e-12)


def test_objective_refuses_a_non_finite_value(folds: Folds, tiny_space: Path) -> None:
    config = SearchSpace.from_yaml(tiny_space).to_config({"lr": 0.01})
    metric = get_metric("accuracy", "classification")
    nan_metric = type(metric)("accuracy", "classification", "maximize", lambda out, y: float("nan"), metric.final_fn)
    with pytest.raises(FloatingPointError, match="validation accuracy is nan"):
        run_objective(StubTrial(baseline=True), config, folds, nan_metric, seed=1, device="cpu", warmup=3)  # type: ignore[arg-type]


def test_a_worker_restores_the_callers_torch_threads(tmp_path: Path, tiny_space: Path, folds: Folds,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Trials of small networks train on one thread; the caller's setting comes back after."""
    study, spec, tracker = _setup(tmp_path, tiny_space, 2, monkeypatch)
    seen = []
    real = worker.run_objective

    def objective(*args: Any, **kwargs: Any) -> Any:
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(worker, "run_objective", objective)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run_worker(spec, folds, 0, study)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 1] and tracker.closed == 1


def test_a_reaped_trials_run_gets_back_every_epoch_optuna_has(tmp_path: Path) -> None:
    """A worker killed with epochs still queued for MLflow: whoever reaps its trial restores
    the curve (and the params) from Optuna's record before closing the run."""
    from regtune.tracking.tracker import MLflowTracker

    def tracker() -> MLflowTracker:  # one per process; flush_interval=0: only explicit writes
        return MLflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "e", artifact_root=tmp_path / "mlruns",
                             flush_interval=0)

    dead = tracker()
    parent = dead.start_study_run("s", {})
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    trial.suggest_float("lr", 1e-3, 1e-1, log=True)
    run_id = dead.start_trial_run(parent, trial.number, {**trial.params, "seed": 0, "trial_seed": 7})
    trial.set_user_attr("mlflow_run_id", run_id)
    trial.set_user_attr("seed", 7)
    for step in range(6):
        dead.log_epoch(run_id, step, {"train_loss": 1.0, "val_score": step / 10})
        trial.report(step / 10, step)
        if step == 1:
            dead.flush()
    del dead  # kill -9: epochs 2-5 and nothing else reached the store

    reaper = tracker()
    frozen = study.trials[0]
    worker.close_reaped_runs(reaper, parent, [frozen])
    run = reaper.run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["state"] == "FAIL"
    history = reaper.metric_history(run_id, worker.REPORTED_METRIC)
    assert sorted(m.step for m in history) == sorted(frozen.intermediate_values) == list(range(6))
    assert {m.step: m.value for m in history} == pytest.approx(frozen.intermediate_values)
    assert run.data.params == {"lr": str(frozen.params["lr"]), "seed": "0", "trial_seed": "7"}


def test_a_trial_reaped_before_it_recorded_its_run_id_still_gets_its_run_closed(tmp_path: Path) -> None:
    """A relayed worker records the run id a few epochs in; killed before that, its trial has
    no ``mlflow_run_id``: the reaper finds the run by trial number, restores and closes it."""
    from regtune.tracking.tracker import MLflowTracker

    tracker = MLflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "e", artifact_root=tmp_path / "mlruns",
                            flush_interval=0)
    parent = tracker.start_study_run("s", {})
    study = optuna.create_study(direction="maximize")
    study.tell(study.ask(), 0.5)  # another trial's run must not be taken for this one
    tracker.start_trial_run(parent, 0, {})
    trial = study.ask()
    run_id = tracker.start_trial_run(parent, trial.number, {})
    trial.report(0.3, 0)
    worker.close_reaped_runs(tracker, parent, [study.trials[1]])
    run = tracker.run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["state"] == "FAIL"
    assert [m.step for m in tracker.metric_history(run_id, worker.REPORTED_METRIC)] == [0]


def test_a_worker_killed_between_closing_the_run_and_telling_optuna_leaves_no_finished_run(
        tmp_path: Path) -> None:
    """A worker ends the MLflow run first, then tells Optuna: killed in between, the run says
    COMPLETE while Optuna reaps the trial as FAIL. The reaper makes the run agree with Optuna
    (seen in CI: a killed worker's trial FAIL, its run FINISHED)."""
    from regtune.tracking.tracker import MLflowTracker

    tracker = MLflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "e", artifact_root=tmp_path / "mlruns",
                            flush_interval=0)
    parent = tracker.start_study_run("s", {})
    study = optuna.create_study(direction="maximize")
    done = study.ask()
    done_run = tracker.start_trial_run(parent, done.number, {})
    tracker.finish_trial(done_run, "COMPLETE", metrics={"val_score": 0.9})
    study.tell(done, 0.9)
    trial = study.ask()
    run_id = tracker.start_trial_run(parent, trial.number, {})
    trial.set_user_attr("mlflow_run_id", run_id)
    trial.report(0.8, 0)
    tracker.finish_trial(run_id, "COMPLETE", metrics={"val_score": 0.8})  # ... and killed before tell
    worker.close_reaped_runs(tracker, parent, [study.trials[1]])
    run = tracker.run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["state"] == "FAIL"
    assert "worker stopped" in run.data.tags["fail_reason"]
    untouched = tracker.run(done_run)  # a trial that was not reaped keeps its end
    assert untouched.info.status == "FINISHED" and untouched.data.tags["state"] == "COMPLETE"
