"""``--cohort K``: trials trained as one batched network are ordinary Optuna trials and MLflow runs.

Tiny studies on iris (networks of 16 units, 6 epochs); MLflow only where the runs are checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from cohort_helpers import COHORT_SPACE
from mlflow import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner

from regtune.cli.app import app, main
from regtune.config import RegConfig
from regtune.data.loading import load_dataset
from regtune.exceptions import TuneError
from regtune.metrics import get_metric
from regtune.space.space import SearchSpace
from regtune.tuning.cohort import (
    AUTO_ATTR,
    choose_cohort_size,
    fixed_params,
    pick_cohort_size,
    run_cohort_objective,
)
from regtune.tuning.prepare import prepare
from regtune.tuning.settings import TuneSettings
from regtune.tuning.trial import TrialPruned, run_objective
from regtune.tuning.tuner import tune
from regtune.tuning.worker import COHORT_ATTR


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
        shared = {(t.params["activation"], t.params.get("use_dropout"), t.params.get("dropout")) for t in cohort}
        assert len(shared) == 1
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


def test_config_fields_a_cohort_varies_come_from_the_table() -> None:
    from regtune.nn.cohort import member_fields, shared_fields
    from regtune.regularizer_table import REGULARIZERS

    assert set(member_fields()) <= set(RegConfig.__dataclass_fields__)
    assert not set(member_fields()) & set(shared_fields())
    for spec in REGULARIZERS:  # a "member" regularizer's fields vary, a "shared" one's are shared
        if spec.cohort is not None:
            assert set(spec.fields) <= set(member_fields() if spec.cohort == "member" else shared_fields()), spec.name


def test_choose_cohort_size_measures_each_k_and_keeps_alone_unless_a_cohort_pays() -> None:
    folds = prepare(load_dataset("iris"), TuneSettings(cv=2, seed=1))[0]
    config = RegConfig(hidden_layer_sizes=(16,), batch_size=32, max_epochs=6, dropout=0.1, input_noise=0.1)
    k, rates = choose_cohort_size(config, folds, device="cpu", seed=3, sizes=(1, 2, 4), epochs=1)
    assert 1 in rates and set(rates) <= {1, 2, 4} and all(r > 0 for r in rates.values())
    assert k in rates and (k == 1 or rates[k] >= 1.1 * rates[1])


def test_pick_cohort_size_keeps_the_fastest_k_only_where_it_pays() -> None:
    assert pick_cohort_size({1: 10.0, 2: 18.0, 4: 30.0}) == 4
    assert pick_cohort_size({1: 10.0, 2: 30.0, 4: 20.0}) == 2
    assert pick_cohort_size({1: 10.0, 2: 10.5, 4: 9.0}) == 1  # 5% is within timing noise: alone


def test_cohort_auto_records_its_choice_and_trains_as_chosen(cohort_space: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import regtune.tuning.cohort as cohort

    short = {**cohort.choose_cohort_size.__kwdefaults__, "sizes": (1, 2, 4), "epochs": 1}
    monkeypatch.setattr(cohort.choose_cohort_size, "__kwdefaults__", short)
    result = tune("iris", n_trials=6, cohort="auto", **_offline(cohort_space))
    chosen = result.study.user_attrs[AUTO_ATTR]
    rates = {int(k): r for k, r in chosen["trial_epochs_per_s"].items()}
    assert 1 in rates and chosen["k"] == pick_cohort_size(rates) and max(rates) <= 6  # never larger than the study
    members = [t for t in result.study.trials if COHORT_ATTR in t.user_attrs]
    assert bool(members) == (chosen["k"] > 1)
    assert all(int(t.user_attrs[COHORT_ATTR].split("x")[1]) <= chosen["k"] for t in members)
    assert all(t.state == TrialState.COMPLETE for t in result.study.trials)


def test_a_cohort_that_is_neither_auto_nor_a_count_is_a_clear_error() -> None:
    with pytest.raises(TuneError, match="'auto'"):
        TuneSettings(cohort="many")
    TuneSettings(cohort="auto")


def test_cli_cohort_auto_tags_the_parent_run_and_a_bad_value_is_one_line(
        cohort_space: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import regtune.tuning.cohort as cohort

    short = {**cohort.choose_cohort_size.__kwdefaults__, "sizes": (1, 2), "epochs": 1}
    monkeypatch.setattr(cohort.choose_cohort_size, "__kwdefaults__", short)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    journal = str(tmp_path / "s.journal")
    out = CliRunner().invoke(app, ["tune", "iris", "--space", str(cohort_space), "--trials", "4", "--cohort", "auto",
                                   "--storage", journal, "--study", "s", "--tracking-uri", uri, "--quiet",
                                   "--pruner", "none", "--ensemble", "1"])
    assert out.exit_code == 0, out.output
    study = optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(journal)))
    parent = MlflowClient(uri).get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.data.tags[AUTO_ATTR] == str(study.user_attrs[AUTO_ATTR]["k"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(["tune", "iris", "--cohort", "many", "--tracking-uri", "off"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "cohort='many'" in err and "'auto'" in err


def test_a_tabm_leader_trains_alone_and_a_plain_one_keeps_its_cohort_plain(tmp_path: Path) -> None:
    """``tabm`` is structural: a cohort fixes the leader's; a TabM trial (tabm > 1) trains alone."""
    space = tmp_path / "tabm.yaml"
    space.write_text(COHORT_SPACE.replace("params:\n", "params:\n  tabm: {type: categorical, choices: [1, 3], "
                                                       "default: 1}\n"))
    result = tune("iris", n_trials=8, cohort=4, **_offline(space, seed=2))  # seed 2 samples tabm=3 once
    trials = result.study.trials
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert {t.params.get("tabm", 1) for t in trials} == {1, 3}
    members = [t for t in trials if COHORT_ATTR in t.user_attrs]
    assert members and all(t.params.get("tabm", 1) == 1 for t in members)
    assert all(COHORT_ATTR not in t.user_attrs for t in trials if t.params.get("tabm") == 3)
