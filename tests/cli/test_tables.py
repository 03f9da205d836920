"""Tests for regtune.cli.tables: ``regtune best``'s table names the metric, the runs to open and
prints each setting readably; a study with no complete trial is one clear error."""

from __future__ import annotations

import optuna
import pytest
from rich.console import Console

from regtune.cli.tables import print_best


def _study(name: str) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name=name, direction="maximize")


def _printed(study: optuna.Study) -> str:
    console = Console(record=True, width=200)
    print_best(study, console)
    return console.export_text()


def test_best_names_the_metric_the_runs_and_prints_settings_readably() -> None:
    study = _study("s1")
    study.set_user_attr("metric", "f1")
    study.set_user_attr("mlflow_parent_run_id", "parent123")
    space = {"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)}
    for value, lr in ((0.8, 0.1), (0.91234, 0.0012345678)):
        study.enqueue_trial({"lr": lr})
        trial = study.ask(space)
        trial.set_user_attr("mlflow_run_id", f"run{trial.number}")
        study.tell(trial, value)
    text = _printed(study)
    assert "study s1: best trial 1" in text
    assert "value (f1 (macro))" in text and "0.9123" in text
    assert "run1" in text and "run0" not in text and "parent123" in text
    assert "regtune predict DATA --run parent123" in text
    assert "0.001235" in text  # 4 significant digits


def test_whole_number_settings_print_as_integers_and_no_parent_means_no_predict_line() -> None:
    study = _study("s2")
    study.enqueue_trial({"batch_size": 64.0, "lr": 0.01})
    trial = study.ask({"batch_size": optuna.distributions.FloatDistribution(16, 256),
                       "lr": optuna.distributions.FloatDistribution(1e-4, 1.0)})
    study.tell(trial, 0.5)
    text = _printed(study)
    assert "batch_size" in text and " 64 " in text and "64.0" not in text
    assert "value (" not in text and "0.5000" in text  # no metric recorded: the value unlabelled
    assert "predict" not in text and "mlflow run (study" not in text


def test_a_study_without_a_complete_trial_is_one_clear_error() -> None:
    study = _study("empty")
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    with pytest.raises(ValueError, match=r"study 'empty' has no complete trial yet"):
        print_best(study, Console(record=True))
