"""``--cohort K``: trials trained as one batched network are ordinary Optuna trials and MLflow runs.

Tiny studies on iris (networks of 16 units, 6 epochs); MLflow only where the runs are checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner

from regtune.cli.app import app
from regtune.config import RegConfig
from regtune.data.loading import load_dataset
from regtune.exceptions import TuneError
from regtune.metrics import get_metric
from regtune.space.space import SearchSpace
from regtune.tuning.cohort import fixed_params, run_cohort_objective
from regtune.tuning.prepare import prepare
from regtune.tuning.settings import TuneSettings
from regtune.tuning.trial import TrialPruned, run_objective
from regtune.tuning.tuner import tune
from regtune.tuning.worker import COHORT_ATTR

# Structure: the activation; per member: lr, L2, weight decay, label smoothing, early stopping.
# Dropout is there so that some trials cannot join a cohort and must train alone.
COHORT_SPACE = """\
fixed: {architecture: mlp, hidden_layer_sizes: [16], batch_size: 32, max_epochs: 6, optimizer: adamw, patience: 2}
params:
  lr: {type: float, low: 1.0e-3, high: 5.0e-2, log: true, default: 1.0e-2}
  activation: {type: categorical, choices: [relu, tanh], default: relu}
regularizers:
  l2:
    l2: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}
  weight_decay:
    weight_decay: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}
  label_smoothing:
    label_smoothing: {type: float, low: 0.01, high: 0.3}
  dropout:
    dropout: {type: float, low: 0.05, high: 0.3}
  early_stopping:
"""


@pytest.fixture
def cohort_space(tmp_path: Path) -> Path:
    path = tmp_path / "cohort.yaml"
    path.write_text(COHORT_SPACE)
    return path


def _offline(space: Path, **options: Any) -> dict[str, Any]:
    return {"tracking_uri": "off", "storage": ":memory:", "space": str(space), "progress": False,
            "log_model": False, "cv": 2, "pruner": "none", "seed": 1, **options}


def test_cohort_members_score_as_their_trials_trained_alone(cohort_space: Path) -> None:
    result = tune("iris", n_trials=9, cohort=4, **_offline(cohort_space))
    trials = result.study.trials
    members = [t for t in trials if COHORT_ATTR in t.user_attrs]
    assert len(members) >= 2, [t.params for t in trials]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    space = SearchSpace.from_yaml(cohort_space).for_task("classification")
    folds = prepare(load_dataset("iris"), TuneSettings(cv=2, seed=1))[0]
    metric = get_metric(None, "classification")
    by_cohort: dict[str, list] = {}
    for t in members:
        by_cohort.setdefault(t.user_attrs[COHORT_ATTR], []).append(t)
    for cohort in by_cohort.values():  # members share the structure, differ in the rest
        shared = {t.params["activation"] for t in cohort}
        assert len(shared) == 1 and not any(t.params.get("use_dropout") for t in cohort)
        assert len({t.params["lr"] for t in cohort}) == len(cohort)
    for t in members:
        solo = optuna.trial.FixedTrial(t.params)
        value, summary = run_objective(solo, space.to_config(t.params), folds, metric, seed=t.user_attrs["seed"],
                                       device="cpu", warmup=3)
        assert t.value == pytest.approx(value, abs=1e-6), t.number
        assert t.user_attrs["best_epoch"] == summary["best_epoch"]
        assert t.user_attrs["fold_scores"] == pytest.approx(solo.user_attrs["fold_scores"], abs=1e-6)


def test_cohort_1_runs_every_trial_alone_as_before(cohort_space: Path) -> None:
    alone = tune("iris", n_trials=5, **_offline(cohort_space))
    one = tune("iris", n_trials=5, cohort=1, **_offline(cohort_space))
    assert [t.params for t in one.study.trials] == [t.params for t in alone.study.trials]
    assert [t.value for t in one.study.trials] == [t.value for t in alone.study.trials]
    assert not any(COHORT_ATTR in t.user_attrs for t in one.study.trials)


class _PruneTrialOne(optuna.pruners.BasePruner):
    """Prunes trial 1 from its second epoch on, nothing else."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number == 1 and max(trial.intermediate_values, default=-1) >= 1


def test_a_pruned_member_leaves_the_batch_and_the_others_finish(cohort_space: Path) -> None:
    space = SearchSpace.from_yaml(cohort_space).for_task("classification")
    folds = prepare(load_dataset("iris"), TuneSettings(cv=2, seed=1))[0]
    study = optuna.create_study(direction="maximize", pruner=_PruneTrialOne())
    base = {**space.baseline_params(), "use_early_stopping": False}
    for lr in (1e-3, 1e-2, 3e-2):
        study.enqueue_trial({**base, "lr": lr})
    trials = [study.ask() for _ in range(3)]
    configs = [space.sample(t) for t in trials]
    epochs: dict[int, list[int]] = {0: [], 1: [], 2: []}
    ended: dict[int, Any] = {}
    run_cohort_objective(trials, configs, folds, get_metric(None, "classification"), seeds=[5, 6, 7], device="cpu",
                         warmup=0, on_epoch=lambda k, epoch, record: epochs[k].append(epoch),
                         on_end=ended.__setitem__)
    assert isinstance(ended[1], TrialPruned) and ended[1].epoch == 1
    assert epochs[1] == [0, 1]  # it left the batch: no epoch after the one it was pruned at
    assert epochs[0] == epochs[2] == list(range(6))
    assert all(isinstance(ended[k], tuple) for k in (0, 2))


def test_ctrl_c_mid_cohort_leaves_no_trial_running(cohort_space: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A member that ended keeps its state; the others and the claimed trials not started yet
    fail uncounted (``interrupted``), as a trial trained alone does on Ctrl-C."""
    import regtune.tuning.worker as worker

    def interrupted(trials: Any, configs: Any, folds: Any, metric: Any, *, on_end: Any, **kwargs: Any) -> None:
        on_end(1, TrialPruned(0))
        raise KeyboardInterrupt

    monkeypatch.setattr(worker, "run_cohort_objective", interrupted)
    journal = tmp_path / "s.journal"
    with pytest.raises(KeyboardInterrupt):
        tune("iris", n_trials=6, cohort=4, **_offline(cohort_space, storage=str(journal), study_name="s"))
    study = optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))))
    states = {t.number: t.state for t in study.trials}
    assert TrialState.RUNNING not in states.values(), states
    assert states[1] == TrialState.PRUNED
    stopped = [t for t in study.trials if t.state == TrialState.FAIL]
    assert stopped and all(t.user_attrs.get("interrupted") and "fail_reason" not in t.user_attrs for t in stopped)


def test_fixed_params_keep_the_structure_and_free_what_members_vary(cohort_space: Path) -> None:
    space = SearchSpace.from_yaml(cohort_space)
    leader = {"lr": 0.01, "activation": "tanh", "use_l2": True, "l2": 1e-4, "use_dropout": False,
              "use_weight_decay": False, "use_label_smoothing": True, "label_smoothing": 0.1,
              "use_early_stopping": True}
    assert fixed_params(space, leader) == {"activation": "tanh", "use_dropout": False}


def test_a_cohort_below_one_is_a_clear_error() -> None:
    with pytest.raises(TuneError, match="cohort=0"):
        TuneSettings(cohort=0)


def test_cli_cohort_trains_members_with_their_own_mlflow_runs(cohort_space: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = CliRunner().invoke(app, ["tune", "iris", "--space", str(cohort_space), "--trials", "6", "--cohort", "4",
                                   "--storage", str(tmp_path / "s.journal"), "--tracking-uri", uri, "--quiet",
                                   "--pruner", "none", "--seed", "1"])
    assert out.exit_code == 0, out.output
    study = optuna.load_study(study_name=optuna.study.get_all_study_names(
        optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "s.journal"))))[0],
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "s.journal"))))
    members = [t for t in study.trials if COHORT_ATTR in t.user_attrs]
    assert all(t.state == TrialState.COMPLETE for t in members)
    assert [t.number for t in members if t.user_attrs[COHORT_ATTR] == "0x4"] == [0, 1, 2, 3]  # the baseline leads
    client = MlflowClient(uri)
    for t in members:
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        assert run.info.status == "FINISHED" and run.data.tags["state"] == "COMPLETE"
        assert run.data.tags["regtune.cohort"] == t.user_attrs[COHORT_ATTR]
        assert float(run.data.params["trial_seed"]) == t.user_attrs["seed"] and run.data.params["seed"] == "1"
        curve = client.get_metric_history(run.info.run_id, "val_score")
        assert len(curve) == len(t.intermediate_values) >= 1


def test_config_fields_a_cohort_varies_exist() -> None:
    from regtune.nn.cohort import VARYING

    assert set(VARYING) <= set(RegConfig.__dataclass_fields__)
