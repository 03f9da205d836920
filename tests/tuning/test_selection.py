"""Honest selection (issue 12 item 5): repeated CV, budget-aware ``cv="auto"``, trial scores
at one common epoch, and the winner's optimism and the top trials' spread in every output."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from optuna.distributions import FloatDistribution

from regtune.cli.app import main
from regtune.data.loading import load_dataset
from regtune.data.split import (
    AUTO_MIN_TRIALS,
    auto_plan,
    cv_splits,
    network_fits,
    parse_cv,
    resolve_plan,
)
from regtune.exceptions import DataError
from regtune.space.space import SearchSpace
from regtune.tuning.prepare import prepare
from regtune.tuning.selection import selection_lines, selection_metrics, selection_summary
from regtune.tuning.settings import TuneSettings
from regtune.tuning.trial import common_epoch_score

# --- repeated k-fold ---------------------------------------------------------------------------


def test_repeated_cv_splits_are_disjoint_seeded_and_stratified() -> None:
    y = np.array([0] * 30 + [1] * 12 + [2] * 18)
    splits = cv_splits(y, task="classification", cv="2x3", random_state=7, val_share=0.25)
    assert len(splits) == 6
    for repeat in (splits[:3], splits[3:]):
        vals = [val for _, val in repeat]
        assert sorted(np.concatenate(vals).tolist()) == list(range(len(y)))  # each row validated once a repeat
        for train, val in repeat:
            assert not set(train) & set(val) and len(train) + len(val) == len(y)
            assert np.bincount(y[val], minlength=3).tolist() == [10, 4, 6]  # stratified: a third of each class
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(splits[:3], splits[3:], strict=True))  # reshuffled
    again = cv_splits(y, task="classification", cv="2x3", random_state=7, val_share=0.25)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again, strict=True))
    other = cv_splits(y, task="classification", cv="2x3", random_state=8, val_share=0.25)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(splits, other, strict=True))
    regression = cv_splits(np.linspace(0, 1, 20), task="regression", cv="3x2", random_state=0, val_share=0.25)
    assert len(regression) == 6


@pytest.mark.parametrize(("cv", "parsed"), [("2x3", "2x3"), ("1x4", 4), ("3", 3), (" AUTO ", "auto"), (1, 1)])
def test_cv_accepts_repeats_of_folds(cv: object, parsed: object) -> None:
    assert parse_cv(cv) == parsed


@pytest.mark.parametrize("cv", ["0x3", "2x1", "x3", "two", 0, True, 2.5, "2x"])
def test_a_malformed_cv_says_what_it_takes(cv: object) -> None:
    with pytest.raises(DataError, match=r"'RxK' for R repeats of K >= 2 folds \(e.g. '2x3'\)"):
        parse_cv(cv)


def test_repeats_too_many_folds_for_the_rows_say_what_fits() -> None:
    with pytest.raises(DataError, match=r"cv=2x5: .* 6 rows, too few for 5 folds .*use cv=2xK with K between 2 and 3"):
        resolve_plan("2x5", np.arange(6.0), "regression")


def test_cli_and_estimators_take_repeats(capsys: pytest.CaptureFixture[str]) -> None:
    from regtune import RegTuneClassifier

    with pytest.raises(SystemExit) as stop:
        main(["tune", "iris", "--cv", "2x1"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--cv '2x1' must be 'auto' or a whole number of folds, or RxK" in err and "Traceback" not in err
    RegTuneClassifier(cv="2x3")._settings()  # accepted
    with pytest.raises(Exception, match="cv='3y2'"):
        RegTuneClassifier(cv="3y2")._settings()


# --- cv="auto" weighs the budget ---------------------------------------------------------------


def test_auto_takes_more_folds_when_the_budget_allows_and_fewer_when_it_does_not() -> None:
    assert auto_plan(400) == (1, 5)  # no timeout: the rows decide
    assert auto_plan(400, fits=1e6) == (2, 5)
    five = network_fits(1, 5, 0.25) * AUTO_MIN_TRIALS
    assert auto_plan(400, fits=five) == (1, 5)  # 20 trials of 5 folds fit, not of 2x5
    assert auto_plan(400, fits=five - 1) == (1, 3)
    assert auto_plan(400, fits=AUTO_MIN_TRIALS * network_fits(1, 2, 0.25)) == (1, 2)
    assert auto_plan(400, fits=1) == (1, 1)  # not even 20 trials of 2 folds: one split
    assert auto_plan(800, fits=1e6) == (2, 3)
    assert auto_plan(5000, fits=1e6) == (1, 1)  # one split holds enough rows to rank trials
    splits = cv_splits(np.arange(400.0), task="regression", cv="auto", random_state=0, val_share=0.25, fits=1e6)
    assert len(splits) == 10


def test_the_tuner_times_the_baseline_to_choose_the_folds(tiny_space: Path) -> None:
    space = SearchSpace.from_yaml(str(tiny_space))
    baseline = space.to_config(space.baseline_params())
    iris = load_dataset("iris")  # 120 rows in the search part: 5 folds by the rows
    settings = TuneSettings(cv="auto", timeout=1e6, device="cpu")
    folds = prepare(iris, settings, baseline=baseline, deadline=time.time() + 1e6)[0]
    assert (folds.repeats, len(folds.splits), folds.plan) == (2, 10, "2x5")
    folds = prepare(iris, settings, baseline=baseline, deadline=time.time() + 0.01)[0]
    assert len(folds.splits) == 1 and folds.plan == "1"
    assert len(prepare(iris, TuneSettings(cv="auto"))[0].splits) == 5  # no timeout: the rows alone


# --- a trial's score: every fold at one epoch ---------------------------------------------------


def _history(losses: list[float], scores: list[float]) -> list[dict[str, float]]:
    return [{"epoch": i, "val_loss": v, "val_score": s} for i, (v, s) in enumerate(zip(losses, scores, strict=True))]


def test_folds_are_scored_at_the_epoch_of_the_lowest_mean_loss() -> None:
    early = _history([1.0, 0.5, 0.6, 0.7], [0.5, 0.9, 0.8, 0.7])  # its own best: epoch 1, 0.9
    late = _history([1.0, 0.8, 0.7, 0.4], [0.5, 0.6, 0.7, 0.95])  # its own best: epoch 3, 0.95
    scored = common_epoch_score([early, late], [1, 3], early_stopping=True)
    # mean loss per epoch 1.0, 0.65, 0.65, 0.55: epoch 3, where the first fold scores 0.7
    assert scored.epoch == 3 and scored.fold_scores == (0.7, 0.95)
    assert scored.value == pytest.approx(0.825) and scored.value < (0.9 + 0.95) / 2
    stopped = _history([1.0, 0.2], [0.5, 0.9])  # stopped at epoch 1: counts with its last record after it
    scored = common_epoch_score([stopped, late], [1, 3], early_stopping=True)
    assert scored.epoch == 3 and scored.fold_scores == (0.9, 0.95)
    scored = common_epoch_score([early, late], [3, 3], early_stopping=False)  # trained to the end
    assert scored.epoch == 3 and scored.value == pytest.approx((0.7 + 0.95) / 2)


# --- the selection's honesty --------------------------------------------------------------------


def _study(tmp_path: Path, direction: str, values: list[float], folds: list[list[float]] | None = None) -> optuna.Study:
    tmp_path.mkdir(exist_ok=True)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "s.journal")))
    study = optuna.create_study(storage=storage, study_name=f"hand-{direction}", direction=direction)
    for i, value in enumerate(values):
        attrs = {"fold_scores": folds[i]} if folds and i < len(folds) else {}
        study.add_trial(optuna.trial.create_trial(params={"lr": 0.01}, distributions={"lr": FloatDistribution(1e-4, 1)},
                                                  value=value, user_attrs=attrs))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED))
    return study


def test_optimism_and_spread_of_a_hand_made_study(tmp_path: Path) -> None:
    best_folds = [0.80, 0.90, 0.85, 0.95, 0.75]  # mean 0.85, sd 0.0791: se 0.0354
    values = [0.85, 0.84, 0.83, 0.80, 0.79, 0.60, 0.70]
    study = _study(tmp_path, "maximize", values, [best_folds])
    summary = selection_summary(study, test_score=0.78)
    se = float(np.std(best_folds, ddof=1) / math.sqrt(5))
    top = np.array(sorted(values, reverse=True)[:5])
    assert summary["best_trial"] == 0 and summary["optimism"] == pytest.approx(0.85 - 0.78)
    assert summary["top"] == 5 and summary["top_mean"] == pytest.approx(top.mean())
    assert summary["top_std"] == pytest.approx(top.std(ddof=1))
    assert summary["best_se"] == pytest.approx(se) and summary["n_folds"] == 5
    assert summary["within_one_se"] == 3  # 0.85, 0.84, 0.83 (0.80 is 0.05 away)
    assert summary["n_complete"] == 7
    lines = "\n".join(selection_lines(summary))
    assert "optimism +0.07" in lines and "could not tell 3 trials apart" in lines
    assert selection_metrics(summary)["selection_within_one_se"] == 3.0

    loss = selection_summary(_study(tmp_path / "m", "minimize", [0.5, 0.6], [[0.4, 0.6]]), test_score=0.7)
    assert loss["optimism"] == pytest.approx(0.2)  # the loss looked 0.2 lower on validation than on test
    one_split = selection_summary(_study(tmp_path / "o", "maximize", [0.9, 0.8]))
    assert one_split["best_se"] is None and one_split["optimism"] is None
    assert "one validation split" in "\n".join(selection_lines(one_split))


def test_the_summary_the_report_and_mlflow_show_the_selection(tmp_path: Path, tiny_space: Path,
                                                              capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    try:
        main(["tune", "iris", "--space", str(tiny_space), "--trials", "4", "--cv", "2x2", "-q", "--pruner", "none",
              "--tracking-uri", uri, "--study", "sel"])
    except SystemExit as stop:
        assert stop.code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert re.search(r"selection: the winner's validation score [01]\.\d{4} vs its test score [01]\.\d{4}: "
                     r"optimism [+-]", out), out
    assert re.search(r"selection: best trial's standard error over its 4 folds", out), out
    parent = out.split("parent run ")[1].split()[0]
    run = MlflowClient(uri).get_run(parent)
    data = run.data
    assert {"selection_optimism", "selection_top_mean", "selection_best_se", "selection_within_one_se"} <= set(data.metrics)
    assert data.metrics["selection_optimism"] == pytest.approx(data.metrics["best_val"] - data.metrics["best_test"])
    assert data.tags["regtune.folds"] == "2x2"

    try:
        main(["report", "--study", "sel", "--tracking-uri", uri, "--out", str(tmp_path / "rep")])
    except SystemExit as stop:
        assert stop.code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "selection: best trial's standard error over its 4 folds" in out
    markdown = (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    assert "## How honest the selection is" in markdown and "optimism" in markdown


def test_estimators_expose_the_selection(tiny_space: Path) -> None:
    from sklearn.datasets import load_iris

    from regtune import RegTuneClassifier

    X, y = load_iris(return_X_y=True)
    search = RegTuneClassifier(space=str(tiny_space), n_trials=3, cv=2, tracking_uri="off", device="cpu",
                               random_state=0).fit(X, y)
    assert search.selection_["n_folds"] == 2 and search.selection_["optimism"] is None
    assert search.selection_["best_value"] == pytest.approx(search.best_score_)
    assert 1 <= search.selection_["within_one_se"] <= search.selection_["n_complete"]


def test_a_resumed_study_keeps_the_folds_the_budget_chose(tmp_path: Path, tiny_space: Path) -> None:
    """The time left differs on every run; ``cv="auto"`` must not choose other folds for a study
    that has trials already (the fingerprint would refuse the run)."""
    from regtune.tuning.tuner import tune

    options = dict(space=str(tiny_space), n_trials=2, cv="auto", storage=str(tmp_path / "s.journal"),
                   study_name="pinned", tracking_uri="off", progress=False, log_model=False, device="cpu",
                   pruner="none")
    first = tune("iris", timeout=1e5, **options)
    assert first.study.user_attrs["regtune.fingerprint"]["folds"] == "2x5"
    again = tune("iris", timeout=3, **options)  # alone, 3 s would choose fewer folds
    assert again.selection["n_folds"] == 10 and len(again.study.trials) == 2
