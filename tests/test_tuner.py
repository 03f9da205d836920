"""``tune()`` end to end on tiny data: the baseline, pruning, the MLflow run tree, resume,
parallel workers, metrics, failing trials, CV folds, seeds and bad settings.

Every study trains networks of 8-16 units for at most 8 epochs on iris or diabetes. MLflow
runs against a SQLite file under ``tmp_path`` (copied from a template, because creating
MLflow's schema costs seconds) and its artifacts land in ``tmp_path/mlruns``.
"""

from __future__ import annotations

import shutil
import sqlite3
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState
from sklearn.metrics import accuracy_score

import regtune.tuning.tuner as tuner
from regtune.data.loading import load_dataset
from regtune.data.split import split_dataset
from regtune.exceptions import DataError
from regtune.space.space import SearchSpace, SearchSpaceError
from regtune.tracking.tracker import MLflowTracker, TrackingError
from regtune.tuning.storage import StudyError
from regtune.tuning.trial import make_estimator
from regtune.tuning.tuner import TuneError, TuneResult, TuneSettings, prepare, tune

# lr 1e6 with SGD makes the loss NaN within two epochs: those trials must fail alone.
DIVERGING = """\
fixed: {architecture: mlp, hidden_layer_sizes: [16], batch_size: 32, max_epochs: 6, optimizer: sgd}
params:
  lr: {type: categorical, choices: [0.01, 0.03, 1.0e6], default: 0.01}
"""
ALWAYS_DIVERGING = """\
fixed: {architecture: mlp, hidden_layer_sizes: [16], batch_size: 32, max_epochs: 6, optimizer: sgd, lr: 1.0e6}
regularizers:
  l2:
    l2: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}
"""


@pytest.fixture(scope="module")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MLflowTracker(f"sqlite:///{db}", experiment=None)
    return db


def _workdir(path: Path, template: Path, space: Path) -> dict[str, Any]:
    """MLflow and Optuna stores in ``path``, and the settings that point at them."""
    shutil.copy(template, path / "mlflow.db")
    return {"tracking_uri": f"sqlite:///{path}/mlflow.db", "storage": str(path / "regtune.journal"),
            "space": str(space), "progress": False}


@pytest.fixture
def workdir(tmp_path: Path, mlflow_template: Path, tiny_space: Path,
            monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.chdir(tmp_path)  # MLflow puts artifacts in ./mlruns
    return _workdir(tmp_path, mlflow_template, tiny_space)


Offline = Callable[..., dict[str, Any]]


@pytest.fixture
def offline(tiny_space: Path) -> Offline:
    """Settings for a study that needs neither MLflow nor a file, with ``options`` on top."""
    def settings(**options: Any) -> dict[str, Any]:
        return {"tracking_uri": "off", "storage": ":memory:", "space": str(tiny_space),
                "progress": False, "log_model": False, "cv": 1, "pruner": "none", **options}

    return settings


# ---------------------------------------------------------------- one shared study

N_TRIALS = 10


@pytest.fixture(scope="module")
def study_run(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path,
              tiny_space: Path) -> tuple[TuneResult, dict]:
    """Ten trials with the Hyperband pruner, two folds, MLflow on, the model logged."""
    path = tmp_path_factory.mktemp("study")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(path)
        settings = _workdir(path, mlflow_template, tiny_space)
        result = tune("iris", n_trials=N_TRIALS, cv=2, pruner="hyperband", seed=0, **settings)
    return result, settings


def test_baseline_is_trial_zero_complete_and_unregularized(study_run: tuple[TuneResult, dict]) -> None:
    result, settings = study_run
    space = SearchSpace.from_yaml(settings["space"])
    baseline = result.study.trials[0]
    assert baseline.user_attrs["baseline"] is True and baseline.state == TrialState.COMPLETE
    config = space.to_config(baseline.params)
    assert config.active_regularizers() == []
    assert config.lr == 2e-2 and config.hidden_layer_sizes == (16,) and config.optimizer == "adam"  # the defaults
    assert sum(t.user_attrs.get("baseline", False) for t in result.study.trials) == 1
    assert result.scores.loc["baseline", "trial"] == 0
    assert result.scores.loc["baseline", "regularizers"] == "none"


def test_pruning_waits_for_the_warmup_and_spares_the_baseline(study_run: tuple[TuneResult, dict]) -> None:
    result, _ = study_run
    trials = result.study.trials
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "ten trials with Hyperband should prune some"
    warmup = tuner._warmup(8)
    assert all(len(t.intermediate_values) >= warmup for t in pruned)
    assert all(t.state == TrialState.COMPLETE and len(t.intermediate_values) == 8 for t in trials[:1])
    assert sum(result.counts.values()) == N_TRIALS
    assert result.counts == {"COMPLETE": N_TRIALS - len(pruned), "PRUNED": len(pruned), "FAIL": 0}


def test_pruner_none_prunes_nothing(offline: Offline) -> None:
    result = tune("iris", n_trials=6, **offline(cv=2))
    assert [t.state for t in result.study.trials] == [TrialState.COMPLETE] * 6


def test_mlflow_run_tree(study_run: tuple[TuneResult, dict]) -> None:
    result, settings = study_run
    client = MlflowClient(settings["tracking_uri"])
    runs = client.search_runs([result.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("regtune.run_type") == "study"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.parent_run_id]
    assert [p.info.run_id for p in parents] == [result.parent_run_id]
    assert len(children) == N_TRIALS == len(runs) - 1
    by_number = {t.number: t for t in result.study.trials}
    for child in children:
        trial = by_number[int(child.data.tags["regtune.trial_number"])]
        assert trial.user_attrs["mlflow_run_id"] == child.info.run_id
        assert child.data.tags["state"] == trial.state.name
        assert child.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_score")]
        assert steps == list(range(len(trial.intermediate_values)))
        if trial.state == TrialState.PRUNED:
            assert int(child.data.tags["pruned_epoch"]) == len(trial.intermediate_values) - 1
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_value"] == pytest.approx(result.best_value)
    assert parent.data.metrics["best_test"] == pytest.approx(result.scores.loc["best", "test"])
    assert "baseline_test" in parent.data.metrics
    assert parent.data.tags["best_run_id"] == result.study.best_trial.user_attrs["mlflow_run_id"]
    assert [a.path for a in client.list_artifacts(result.parent_run_id, "search_space")] == ["search_space/tiny.yaml"]


def test_logged_model_predicts_the_test_rows(study_run: tuple[TuneResult, dict]) -> None:
    result, settings = study_run
    mlflow.set_tracking_uri(settings["tracking_uri"])
    try:
        model = mlflow.pyfunc.load_model(result.model_uri)
    finally:
        mlflow.set_tracking_uri(None)
    data = load_dataset("iris")
    split = split_dataset(data.X, data.y, task=data.task, test_size=0.2, val_size=0.2, random_state=0)
    predicted = np.asarray(model.predict(split.X_test))
    expected = result.best_estimator.predict(result.preprocessor.transform(split.X_test))
    np.testing.assert_array_equal(predicted, expected)
    assert accuracy_score(split.y_test, predicted) == pytest.approx(result.scores.loc["best", "test"])


def test_scores_table(study_run: tuple[TuneResult, dict]) -> None:
    result, _ = study_run
    scores = result.scores
    assert list(scores.index) == ["baseline", "best"]
    assert scores.loc["best", "trial"] == result.study.best_trial.number
    assert scores.loc["best", "val"] == pytest.approx(result.best_value)
    for label in scores.index:
        row = scores.loc[label]
        assert row["gap"] == pytest.approx(row["train"] - row["test"])
        assert 0 <= row["test"] <= 1


# ---------------------------------------------------------------- resume and parallel


def test_resume_tops_up_the_same_study_and_parent_run(workdir: dict[str, Any]) -> None:
    first = tune("iris", n_trials=3, cv=1, pruner="none", **workdir)
    before = [(t.number, t.params, t.value, t.state) for t in first.study.trials]
    second = tune("iris", n_trials=5, cv=1, pruner="none", **workdir)
    trials = second.study.trials
    assert len(trials) == 5 and [(t.number, t.params, t.value, t.state) for t in trials[:3]] == before
    assert second.parent_run_id == first.parent_run_id
    client = MlflowClient(workdir["tracking_uri"])
    tracker = MLflowTracker(workdir["tracking_uri"], experiment="regtune")
    children = tracker.child_runs(second.parent_run_id)
    assert sorted(int(r.data.tags["regtune.trial_number"]) for r in children) == list(range(5))
    # Nothing left to do: the same study, the same summary, no new run, no second model.
    third = tune("iris", n_trials=5, cv=1, pruner="none", **workdir)
    assert len(third.study.trials) == 5 and len(tracker.child_runs(third.parent_run_id)) == 5
    assert third.parent_run_id == first.parent_run_id
    assert third.counts == second.counts and sum(third.counts.values()) == 5
    assert third.best_params == second.best_params and third.best_value == second.best_value
    assert third.scores.equals(second.scores)
    assert third.model_uri == second.model_uri
    assert client.get_run(third.parent_run_id).info.status == "FINISHED"
    assert len(client.search_runs([third.experiment_id])) == 6


def test_parallel_workers_run_every_trial_exactly_once(workdir: dict[str, Any]) -> None:
    result = tune("iris", n_trials=10, cv=2, pruner="none", n_jobs=2, log_model=False, **workdir)
    trials = result.study.trials
    assert len(trials) == 10 and all(t.state == TrialState.COMPLETE for t in trials)
    owners = {t.user_attrs["regtune.owner"] for t in trials}
    assert len(owners) == 2, f"both workers should have run trials, got {owners}"
    client = MlflowClient(workdir["tracking_uri"])
    children = client.search_runs([result.experiment_id], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")
    numbers = sorted(int(r.data.tags["regtune.trial_number"]) for r in children)
    assert numbers == list(range(10))
    assert {r.info.status for r in children} == {"FINISHED"}
    assert {r.info.run_id for r in children} == {t.user_attrs["mlflow_run_id"] for t in trials}


# ---------------------------------------------------------------- metrics, tasks, folds


@pytest.mark.parametrize(
    ("data", "metric", "direction"),
    [("iris", "accuracy", "maximize"), ("iris", "log_loss", "minimize"),
     ("iris", "balanced_accuracy", "maximize"), ("iris", "f1", "maximize"),
     ("diabetes", "rmse", "minimize"), ("diabetes", "r2", "maximize")],
)
def test_metrics_set_the_direction(offline: Offline, data: str, metric: str, direction: str) -> None:
    result = tune(data, n_trials=2, metric=metric, **offline())
    assert result.study.direction.name.lower() == direction
    assert result.metric.name == metric and result.study_name.endswith(f"-{metric}")
    assert np.isfinite(result.best_value) and np.isfinite(result.scores.loc["best", "test"])
    if metric == "rmse":  # in the target's own units: diabetes' std is about 77
        assert 30 < result.best_value < 120


@pytest.mark.parametrize(("data", "metric"), [("diabetes", "accuracy"), ("iris", "r2"), ("iris", "auc")])
def test_a_metric_of_the_wrong_task_is_a_clear_error(offline: Offline, data: str, metric: str) -> None:
    with pytest.raises(ValueError, match=f"metric='{metric}'"):
        tune(data, n_trials=2, metric=metric, **offline())


def test_regression_predictions_come_back_in_target_units(offline: Offline) -> None:
    result = tune("diabetes", n_trials=2, metric="rmse", **offline())
    data = load_dataset("diabetes")
    y = data.y.to_numpy(float)
    predicted = result.best_estimator.predict(result.preprocessor.transform(data.X))
    assert abs(predicted.mean() - y.mean()) < 0.15 * y.std()
    assert 0.3 * y.std() < predicted.std() < 1.5 * y.std()
    assert result.best_estimator._y_mean_[0] == pytest.approx(y.mean(), rel=0.1)


@pytest.mark.parametrize(("cv", "n_folds"), [(1, 1), (3, 3), ("auto", 5)])
def test_cv_builds_the_folds(cv: int | str, n_folds: int) -> None:
    folds = prepare(load_dataset("iris"), TuneSettings(cv=cv))[0]
    assert len(folds.splits) == n_folds and len(folds.y) == 120
    for train, val in folds.splits:
        assert not set(train) & set(val) and len(train) + len(val) == 120
    if n_folds > 1:  # every row validates exactly once
        assert sorted(np.concatenate([val for _, val in folds.splits]).tolist()) == list(range(120))
    else:
        assert len(folds.splits[0][1]) == 30  # val_size 0.2 of all rows = 0.25 of the train part


def test_trials_reproduce_from_their_params_and_seed(offline: Offline) -> None:
    """The value is the mean over the 3 folds, and retraining from what was logged gets it back."""
    options = offline(cv=3, seed=3)
    result = tune("iris", n_trials=3, **options)
    space = SearchSpace.from_yaml(options["space"])
    folds = prepare(load_dataset("iris"), TuneSettings(cv=3, seed=3))[0]
    trial = result.study.trials[-1]
    config = space.to_config(trial.params)
    per_fold = []
    for k, (train, val) in enumerate(folds.splits):
        est = make_estimator(config, "classification", image_shape=None, device="auto",
                             random_state=trial.user_attrs["seed"] + k)
        for _ in est.fit_iter(folds.X[train], folds.y[train], validation_data=(folds.X[val], folds.y[val]),
                              score_fn=result.metric.epoch_fn):
            pass
        per_fold.append(est.history_[est.best_epoch_]["val_score"])
    assert len(per_fold) == 3
    assert trial.value == pytest.approx(float(np.mean(per_fold)), abs=1e-9)


def test_the_same_seed_gives_the_same_study(offline: Offline) -> None:
    def run(seed: int) -> list[tuple]:
        result = tune("iris", n_trials=4, **offline(seed=seed, pruner="median"))
        return [(t.params, t.value, t.state) for t in result.study.trials]

    first = run(0)
    assert run(0) == first
    assert [p for p, _, _ in run(1)][1:] != [p for p, _, _ in first][1:]


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "gp"])
def test_every_sampler_runs_the_minimal_space(offline: Offline, sampler: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("error", message=".*independent sampling.*")
        options = offline(sampler=sampler, pruner="median")
        result = tune("iris", n_trials=4, **{**options, "space": "minimal"})
    assert len(result.study.trials) == 4
    assert result.counts["FAIL"] == 0 and result.counts["COMPLETE"] >= 1


# ---------------------------------------------------------------- failing trials


def test_a_diverging_trial_fails_and_the_study_goes_on(workdir: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "diverging.yaml").write_text(DIVERGING)
    settings = {**workdir, "space": str(tmp_path / "diverging.yaml")}
    result = tune("iris", n_trials=6, cv=1, pruner="none", sampler="random", seed=0, log_model=False, **settings)
    trials = result.study.trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all(t.params["lr"] == 1e6 for t in failed)
    assert all("diverged" in t.user_attrs["fail_reason"] for t in failed)
    assert [t.state for t in trials if t.params["lr"] != 1e6] == [TrialState.COMPLETE] * (6 - len(failed))
    assert result.counts["FAIL"] == len(failed)
    client = MlflowClient(workdir["tracking_uri"])
    for trial in failed:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "FAILED" and run.data.tags["state"] == "FAIL"
        assert run.data.tags["fail_reason"] == trial.user_attrs["fail_reason"]


def test_a_study_whose_every_trial_fails_is_a_clear_error(workdir: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "always.yaml").write_text(ALWAYS_DIVERGING)
    settings = {**workdir, "space": str(tmp_path / "always.yaml")}
    with pytest.raises(StudyError, match=r"none of its 3 trials completed \(3 failed.*diverged"):
        tune("iris", n_trials=3, cv=1, pruner="none", **settings)
    client = MlflowClient(workdir["tracking_uri"])
    statuses = sorted((r.data.tags["regtune.run_type"], r.info.status) for r in client.search_runs(["1"]))
    assert statuses == [("study", "FAILED")] + [("trial", "FAILED")] * 3


# ---------------------------------------------------------------- errors leave nothing behind


def _stored_runs(tmp_path: Path) -> int:
    if not (tmp_path / "mlflow.db").exists():
        return 0
    with sqlite3.connect(tmp_path / "mlflow.db") as con:
        return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


def _stored_studies(tmp_path: Path) -> list[str]:
    journal = tmp_path / "regtune.journal"
    if not journal.exists():
        return []
    return optuna.study.get_all_study_names(optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))))


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"sampler": "bayes"}, TuneError, "sampler 'bayes' is unknown"),
        ({"pruner": "asha"}, TuneError, "pruner 'asha' is unknown"),
        ({"n_trials": 0}, TuneError, "trials=0"),
        ({"metric": "rmse"}, ValueError, "metric='rmse' is for regression"),
        ({"data": "no_such.csv"}, DataError, "does not exist"),
        ({"space": "typo.yaml"}, SearchSpaceError, "line 3: params.lr.hihg"),
        ({"storage": "postgresql://u:secret@127.0.0.1:1/db"}, StudyError, "cannot reach storage"),
        ({"tracking_uri": "sqlite:///{tmp}/a_file/mlflow.db"}, TrackingError, "cannot be used"),
        ({"storage": ":memory:", "n_jobs": 2}, TuneError, "lives in one process"),
        ({"device": "cuda:3"}, TuneError, "CUDA is not available"),
        ({"cv": 0}, TuneError, "cv=0"),
    ],
)
def test_bad_settings_create_nothing(workdir: dict[str, Any], tmp_path: Path, options: dict,
                                     error: type[Exception], match: str) -> None:
    (tmp_path / "typo.yaml").write_text("fixed: {max_epochs: 4}\nparams:\n  lr: {type: float, low: 0.001, hihg: 0.1}\n")
    (tmp_path / "a_file").write_text("not a directory")
    (tmp_path / "mlflow.db").unlink()
    options = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in options.items()}
    data = options.pop("data", "iris")
    with pytest.raises(error, match=match) as err:
        tune(data, **{**workdir, "n_trials": 2, **options})
    assert "secret" not in str(err.value)
    assert _stored_studies(tmp_path) == [] and _stored_runs(tmp_path) == 0
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "regtune.journal").exists()


# ---------------------------------------------------------------- the parent run always ends


@pytest.mark.parametrize(
    ("where", "raised", "status"),
    [("run_worker", KeyboardInterrupt, "KILLED"), ("run_worker", RuntimeError, "FAILED"),
     ("refit", RuntimeError, "FAILED")],
)
def test_the_parent_run_never_stays_running(workdir: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                            where: str, raised: type[BaseException], status: str) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise raised("boom")

    monkeypatch.setattr(tuner, where, boom)
    with pytest.raises(raised):
        tune("iris", n_trials=2, cv=1, **workdir)
    runs = MlflowClient(workdir["tracking_uri"]).search_runs(["1"], "tags.`regtune.run_type` = 'study'")
    assert [r.info.status for r in runs] == [status]


def test_an_interrupted_study_resumes_to_the_asked_count(workdir: dict[str, Any],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import regtune.tuning.worker as worker

    real, calls = worker.run_objective, []

    def interrupt_third(trial: optuna.Trial, *args: Any, **kwargs: Any) -> Any:
        calls.append(trial.number)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(trial, *args, **kwargs)

    monkeypatch.setattr(worker, "run_objective", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        tune("iris", n_trials=4, cv=1, pruner="none", log_model=False, **workdir)
    client = MlflowClient(workdir["tracking_uri"])
    statuses = sorted((r.data.tags["regtune.run_type"], r.info.status) for r in client.search_runs(["1"]))
    assert statuses == [("study", "KILLED"), ("trial", "FINISHED"), ("trial", "FINISHED"), ("trial", "KILLED")]
    result = tune("iris", n_trials=4, cv=1, pruner="none", log_model=False, **workdir)
    states = [t.state for t in result.study.trials]
    assert states == [TrialState.COMPLETE] * 2 + [TrialState.FAIL] + [TrialState.COMPLETE] * 2
    assert result.counts == {"COMPLETE": 4, "PRUNED": 0, "FAIL": 1}
    assert client.get_run(result.parent_run_id).info.status == "FINISHED"


def test_settings_are_checked() -> None:
    for bad in ({"n_trials": True}, {"timeout": -1}, {"test_size": 1.0}, {"val_size": 0.9},
                {"seed": -1}, {"retry_failed": -1}, {"heartbeat_interval": 0}, {"experiment": " "}):
        with pytest.raises(TuneError):
            TuneSettings(**bad).check()
    TuneSettings(test_size=0.0, timeout=1.5).check()


@pytest.fixture(autouse=True)
def _reset_mlflow_uri() -> Iterator[None]:
    yield
    mlflow.set_tracking_uri(None)
