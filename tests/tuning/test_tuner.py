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

import regtune.tuning.final as final
import regtune.tuning.tuner as tuner
from regtune.data.loading import load_dataset
from regtune.data.split import split_dataset
from regtune.exceptions import DataError, RegConfigError, TrackingError, TuneError
from regtune.space.space import SearchSpace, SearchSpaceError
from regtune.tracking.tracker import MLflowTracker
from regtune.tuning.final import TuneResult
from regtune.tuning.prepare import prepare
from regtune.tuning.queue import OWNER_ATTR, owner_tag
from regtune.tuning.settings import TuneSettings
from regtune.tuning.storage import StudyError, make_storage
from regtune.tuning.trial import make_estimator
from regtune.tuning.tuner import tune

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
    # This process is worker 0 and trains at once; the spawned worker joins once it has booted
    # (on a tiny study it may find the queue empty).
    owners = {t.user_attrs["regtune.owner"] for t in trials}
    assert owner_tag() in owners and len(owners) <= 2, owners
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


def _space_with_priors(tmp_path: Path, tiny_space: Path, extra: str = "") -> Path:
    path = tmp_path / "priors.yaml"
    path.write_text(tiny_space.read_text() + extra + """\
priors:
  - {lr: 0.03, use_dropout: true, dropout: 0.1, use_early_stopping: true}
  - {use_l2: true, l2: 1.0e-4}
""")
    return path


def test_the_trials_after_the_baseline_carry_exactly_the_priors(offline: Offline, tmp_path: Path,
                                                                tiny_space: Path) -> None:
    space_path = _space_with_priors(tmp_path, tiny_space)
    priors = SearchSpace.from_yaml(space_path).prior_params()
    result = tune("iris", n_trials=5, **offline(space=str(space_path), sampler="random"))
    trials = result.study.trials
    assert trials[0].user_attrs["baseline"] is True
    assert [t.params for t in trials[1:3]] == priors
    assert [t.user_attrs.get("prior") for t in trials] == [None, 0, 1, None, None]
    assert all(t.params not in priors for t in trials[3:])  # then the sampler takes over
    short = tune("iris", n_trials=2, **offline(space=str(space_path), study_name="short"))
    assert [t.params for t in short.study.trials] == [SearchSpace.from_yaml(space_path).baseline_params(), priors[0]]


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_a_refit_trains_to_its_trials_best_epoch_on_the_trials_horizon(schedule: str) -> None:
    """A scheduled refit stops at the trial's best epoch but keeps max_epochs, so the annealing
    follows the trial's curve instead of a compressed one; a constant rate needs no horizon."""
    config = SearchSpace.from_yaml("minimal").to_config({}).replace(
        hidden_layer_sizes=(8,), max_epochs=12, early_stopping=True, lr_schedule=schedule)
    trial = optuna.trial.create_trial(value=0.9, user_attrs={"best_epoch": 2.0})
    settings = TuneSettings(cv=1, seed=0)
    est = final.refit(config, trial, prepare(load_dataset("iris"), settings)[0], settings)
    assert est.n_iter_ == 3 and not est.early_stopping
    assert est.max_epochs == (3 if schedule == "constant" else 12)


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
        ({"device": "cuda:3"}, RegConfigError, "CUDA is not available"),
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
    [("pool.run_worker", KeyboardInterrupt, "KILLED"), ("pool.run_worker", RuntimeError, "FAILED"),
     ("final.refit", RuntimeError, "FAILED")],
)
def test_the_parent_run_never_stays_running(workdir: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                            where: str, raised: type[BaseException], status: str) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise raised("boom")

    monkeypatch.setattr(f"regtune.tuning.{where}", boom)
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
            TuneSettings(**bad)
    TuneSettings(test_size=0.0, timeout=1.5)


@pytest.fixture(autouse=True)
def _reset_mlflow_uri() -> Iterator[None]:
    yield
    mlflow.set_tracking_uri(None)


# ---------------------------------------------------------------- issue 11: resume and join safely


def _journal_settings(path: Path, tiny_space: Path, **options: Any) -> dict[str, Any]:
    """A persistent study (journal file) without MLflow: fast, and resumable."""
    return {"storage": str(path / "regtune.journal"), "tracking_uri": "off", "space": str(tiny_space),
            "progress": False, "log_model": False, "cv": 1, "pruner": "none", **options}


def _two_target_csv(path: Path) -> Path:
    """iris with the class first and a second categorical column that could be a target too."""
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    frame.insert(0, "species", frame.pop("target").map({0: "setosa", 1: "versicolor", 2: "virginica"}))
    frame["long"] = np.where(frame["petal length (cm)"] > 4, "yes", "no")
    path.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path / "flowers.csv", index=False)
    return path / "flowers.csv"


@pytest.fixture(scope="module")
def created(tmp_path_factory: pytest.TempPathFactory, tiny_space: Path) -> dict[str, Any]:
    """One study on flowers.csv (target species, seed 0, one validation split); the refusal
    tests below try to join it with something else and must change nothing."""
    root = tmp_path_factory.mktemp("fingerprint")
    csv = _two_target_csv(root)
    settings = _journal_settings(root, tiny_space, study_name="flowers")
    tune(str(csv), target="species", n_trials=2, **settings)
    return {"csv": csv, "settings": settings, "root": root}


@pytest.mark.parametrize(
    ("change", "match"),
    [({"space": "minimal"}, "search space 'tiny'.*this run has search space 'minimal'.*the same --space"),
     ({"seed": 1}, "seed 0; this run has seed 1: use another --study, or the same --seed"),
     ({"cv": 2}, r"cv 1 \(1 folds\); this run has cv 2 \(2 folds\)"),
     ({"metric": "balanced_accuracy"}, "metric 'accuracy'; this run has metric 'balanced_accuracy'"),
     ({"target": "long"}, "target 'species'.*this run has .*target 'long'.*the same --target"),
     ({"module": "byo_modules:ResidualMLP"}, r"module built-in; this run has module byo_modules:ResidualMLP .*--model")],
)
def test_joining_a_study_with_other_settings_is_refused(created: dict[str, Any], change: dict, match: str) -> None:
    """Issue 11, item 3: another --space/--seed/--cv/--metric/--target/--model never continues a
    study (a worker elsewhere with another --seed would score trials on other splits)."""
    options = {**created["settings"], **change}
    target = options.pop("target", "species")
    with pytest.raises(StudyError, match=match):
        tune(str(created["csv"]), target=target, n_trials=4, **options)
    study = optuna.load_study(study_name="flowers", storage=make_storage(created["settings"]["storage"]))
    assert len(study.trials) == 2


def test_the_same_file_name_with_other_content_is_refused(tmp_path: Path, tiny_space: Path,
                                                          monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Issue 11, item 3: iris's study must not continue on another table saved as iris.csv."""
    from regtune.cli.app import main

    monkeypatch.chdir(tmp_path)
    csv = tmp_path / "iris.csv"
    load_dataset("iris").X.assign(target=load_dataset("iris").y).to_csv(csv, index=False)
    args = ["tune", str(csv), "--space", str(tiny_space), "--trials", "2", "--cv", "1", "--pruner", "none",
            "--tracking-uri", "off", "--quiet"]
    main(args)
    load_dataset("wine").X.iloc[:, :4].assign(target=load_dataset("wine").y).to_csv(csv, index=False)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "was created for data hash" in err[0] and "(iris.csv, 150 rows)" in err[0]
    assert "(iris.csv, 178 rows)" in err[0] and "use another --study" in err[0]


def _interrupt_call(monkeypatch: pytest.MonkeyPatch, which: int) -> None:
    """Ctrl-C in the ``which``-th trial (1-based) this process runs."""
    import regtune.tuning.worker as worker

    real, calls = worker.run_objective, []

    def interrupt(trial: optuna.Trial, *args: Any, **kwargs: Any) -> Any:
        calls.append(trial.number)
        if len(calls) == which:
            raise KeyboardInterrupt
        return real(trial, *args, **kwargs)

    monkeypatch.setattr(worker, "run_objective", interrupt)


def test_a_baseline_interrupted_in_trial_0_is_run_again_on_resume(tmp_path: Path, tiny_space: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11, item 4: Ctrl-C during the baseline; the rerun must have one, and say its scores."""
    settings = _journal_settings(tmp_path, tiny_space)
    with monkeypatch.context() as patch:
        _interrupt_call(patch, 1)
        with pytest.raises(KeyboardInterrupt):
            tune("iris", n_trials=3, **settings)
    result = tune("iris", n_trials=3, **settings)
    baselines = [t for t in result.study.trials if t.user_attrs.get("baseline")]
    assert [t.state for t in baselines] == [TrialState.FAIL, TrialState.COMPLETE]
    assert baselines[1].params == baselines[0].system_attrs["fixed_params"]
    assert result.counts == {"COMPLETE": 3, "PRUNED": 0, "FAIL": 1}
    assert result.scores.loc["baseline", "trial"] == baselines[1].number
    assert np.isfinite(result.scores.loc["baseline", "val"])


def test_a_lower_trials_count_on_resume_is_honoured(tmp_path: Path, tiny_space: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Issue 11, item 6: 5 trials asked, Ctrl-C in the second, resumed with --trials 3."""
    settings = _journal_settings(tmp_path, tiny_space)
    with monkeypatch.context() as patch:
        _interrupt_call(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            tune("iris", n_trials=5, **settings)
    with caplog.at_level("WARNING", logger="regtune"):
        result = tune("iris", n_trials=3, **settings)
    # Trial 0 complete, trial 1 interrupted (not counted), 2-4 queued: two of them run.
    assert result.counts == {"COMPLETE": 3, "PRUNED": 0, "FAIL": 1}
    assert [t.number for t in result.study.trials if t.state == TrialState.WAITING] == [4]
    lines = [r.getMessage() for r in caplog.records if r.name == "regtune"]
    assert lines == ["study 'iris-tiny-accuracy' holds 4 trials but --trials 3 asks for fewer: 1 queued trial is "
                     "left unrun (run with --trials 4 to run it)"]


def test_jobs_waits_for_a_trial_running_in_another_process(tmp_path: Path, tiny_space: Path) -> None:
    """Issue 11, item 5: with nothing queued, --jobs 2 used to finish at once, beside a trial
    still running elsewhere. It must wait, and replace the trial if its worker dies."""
    import socket
    import subprocess
    import sys
    import threading
    import time

    from regtune.tuning.queue import pop_waiting_trial

    settings = _journal_settings(tmp_path, tiny_space, study_name="s")
    tune("iris", n_trials=2, **settings)
    storage = make_storage(settings["storage"])
    optuna.load_study(study_name="s", storage=storage).enqueue_trial({})
    study_id = storage.get_study_id_from_name("s")
    trial_id = pop_waiting_trial(storage, study_id)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    storage.set_trial_user_attr(trial_id, OWNER_ATTR, f"{socket.gethostname()}:{other.pid}")

    def other_worker_dies() -> None:
        time.sleep(3)
        other.kill()
        other.wait()

    threading.Thread(target=other_worker_dies, daemon=True).start()
    start = time.monotonic()
    try:
        result = tune("iris", n_trials=3, n_jobs=2, **settings)
    finally:
        other.kill()
        other.wait()
    assert time.monotonic() - start >= 3, "finished while another process still ran a trial"
    assert result.counts == {"COMPLETE": 3, "PRUNED": 0, "FAIL": 1}
    assert not [t for t in result.study.trials if t.state == TrialState.RUNNING]


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie nobody reaps counts as exited)."""
    import os

    if Path("/proc/self/stat").exists():
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except FileNotFoundError:
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
def test_killing_a_jobs_2_parent_stops_its_workers(tmp_path: Path) -> None:
    """Issue 11, item 5: after kill -9 of a --jobs 2 run, its worker processes must not train
    on as orphans; they fail their trials as a Ctrl-C would and exit within seconds."""
    import signal

    from worker_helpers import load_trials, start_worker, wait_for, write_space

    space = write_space(tmp_path / "tiny.yaml", max_epochs=5000)  # trials of minutes: orphans would go on
    journal = tmp_path / "regtune.journal"
    parent = start_worker(["tune", "iris", "--space", space, "--cv", "1", "--trials", 6, "--pruner", "none",
                           "--study", "s", "--tracking-uri", "off", "--quiet", "--jobs", 2], tmp_path, "parent")

    def both_training() -> set[int] | None:
        if parent.proc.poll() is not None:
            raise AssertionError(f"the run ended before it could be killed: {parent.describe()}")
        owners = {int(t.user_attrs[OWNER_ATTR].rpartition(":")[2]) for t in load_trials(journal, "s") or []
                  if t.state.name == "RUNNING" and OWNER_ATTR in t.user_attrs and t.intermediate_values}
        return owners if len(owners) == 2 else None

    owners = wait_for(both_training, timeout=180, what="two worker processes training")
    workers = owners - {parent.pid}  # the parent may be worker 0 and train too
    assert workers, owners
    parent.proc.send_signal(signal.SIGKILL)
    parent.wait(timeout=30)
    wait_for(lambda: all(_gone(pid) for pid in workers), timeout=15, what=f"orphaned workers {workers} to exit")
    # The killed parent's own trial stays RUNNING (the next run reaps it); the worker failed its own.
    mine = [t for t in load_trials(journal, "s") or [] if t.user_attrs.get(OWNER_ATTR, "").endswith(
        tuple(f":{pid}" for pid in workers))]
    assert mine and all(t.state.name != "RUNNING" for t in mine), [(t.number, t.state.name) for t in mine]
    assert any(t.user_attrs.get("interrupted") for t in mine)


def test_a_run_that_refits_while_another_run_finishes_writes_no_stale_summary(
        workdir: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17 item 5: two runs on one study share one MLflow parent run. Run A (3 trials)
    refits while run B (8 trials) searches, refits and writes; A must not then overwrite the
    summary with its older best, and its own summary must say the study's best is B's."""
    settings = {**workdir, "cv": 1, "pruner": "none", "seed": 3, "ensemble": 1}
    real_refit, other = final.refit, {}

    def refit_after_the_other_run(*args: Any, **kwargs: Any) -> Any:
        if not other:  # A's first refit: run B to its end on the same journal meanwhile
            other["started"] = True
            other["b"] = tune("iris", n_trials=8, **settings)
        return real_refit(*args, **kwargs)

    monkeypatch.setattr(final, "refit", refit_after_the_other_run)
    a = tune("iris", n_trials=3, **settings)
    b = other["b"]
    study = optuna.load_study(study_name=a.study_name, storage=make_storage(workdir["storage"]))
    best = study.best_trial
    assert best.number >= 3, "precondition: run B found the study's best (pick another seed)"
    assert a.parent_run_id == b.parent_run_id
    run = MlflowClient(workdir["tracking_uri"]).get_run(a.parent_run_id)
    assert run.data.tags["best_trial"] == str(best.number)
    assert run.data.metrics["best_value"] == pytest.approx(best.value)
    assert run.data.metrics["n_complete"] == 8
    assert run.data.tags["regtune.model_key"].startswith(f"trial {best.number},")
    assert run.data.tags["regtune.model_uri"] == b.model_uri and a.model_uri is None
    assert a.counts["COMPLETE"] == 8 and any(f"trial {best.number}" in n for n in a.notes)
