"""``regtune report`` on a real finished study: tables from its trials, PNGs, MLflow artifacts."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from study_helpers import FinishedStudy

from regtune.analysis.report import report, with_without
from regtune.analysis.study_data import load_study_data
from regtune.cli.app import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = {"with_without", "learning_curves", "optimization_history", "param_importances", "effects"}
TECHNIQUES = ["l1", "l2", "dropout", "batch_norm", "input_noise", "mixup_alpha", "early_stopping"]


@pytest.fixture(scope="module")
def reported(finished_study: FinishedStudy) -> tuple[dict[str, pd.DataFrame], Path]:
    out = finished_study.root / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(finished_study.root)
        tables = report(finished_study.name, storage=finished_study.storage,
                        tracking_uri=finished_study.tracking_uri, out_dir=out)
    return tables, out


def _client(finished_study: FinishedStudy):  # noqa: ANN202
    from mlflow.tracking import MlflowClient

    return MlflowClient(finished_study.tracking_uri)


def test_trials_table_holds_every_trial_with_its_mlflow_metrics(finished_study: FinishedStudy, reported) -> None:
    trials = reported[0]["trials"]
    study = finished_study.result.study
    assert list(trials["number"]) == [t.number for t in study.trials]
    assert list(trials["state"]) == [t.state.name for t in study.trials]
    complete = trials[trials["state"] == "COMPLETE"]
    assert np.allclose(complete["value"], [t.value for t in study.trials if t.state.name == "COMPLETE"])
    for col in ("train_score", "sparsity", "weight_norm", "n_params", "n_effective_params", "best_epoch", "seconds"):
        assert complete[col].notna().all(), col
    assert (complete["n_effective_params"] <= complete["n_params"]).all()
    assert trials.loc[trials["baseline"], "regularizers"].tolist() == ["none"]


def test_every_effect_table_is_filled_from_the_complete_trials(reported) -> None:
    tables = reported[0]
    n_complete = int((tables["trials"]["state"] == "COMPLETE").sum())
    on_off = tables["on_off"]
    assert sorted(on_off["technique"].unique()) == sorted(TECHNIQUES)
    for technique, rows in on_off.groupby("technique"):
        assert rows["trials"].sum() == n_complete, technique
        assert "on" in set(rows["setting"]), f"{technique} never on in a complete trial"
    assert tables["dropout"]["trials"].sum() == n_complete
    assert "off" in set(tables["dropout"]["strength"]) and len(tables["dropout"]) >= 2
    penalties = tables["penalties"]
    assert set(penalties["technique"]) == {"l1", "l2"}
    for _, rows in penalties.groupby("technique"):
        assert rows["trials"].sum() == n_complete
        on = rows[rows["strength"] != "off"]
        assert len(on) and on["strength"].str.fullmatch(r"1e-\d+\.\.1e-\d+").all()
        assert on[["sparsity_mean", "weight_norm_mean"]].notna().all().all()
    assert {"none"} < set(tables["batch_norm"]["placement"])
    assert tables["batch_norm"]["best_epoch_mean"].notna().all()
    assert set(tables["early_stopping"]["early_stopping"]) == {"on", "off"}
    assert tables["early_stopping"][["epochs_run_mean", "seconds_mean"]].notna().all().all()
    assert set(tables["augmentation_noise"]["technique"]) == {"input_noise", "mixup_alpha"}
    assert (tables["augmentation_noise"]["score_mean"].between(0, 1)).all()


def test_summary_shows_baseline_vs_best_with_the_tuners_test_scores(finished_study: FinishedStudy, reported) -> None:
    summary = reported[0]["summary"].set_index("model")
    logged = finished_study.result.scores
    for label in ("baseline", "best"):
        assert summary.loc[label, "test"] == pytest.approx(logged.loc[label, "test"])
        assert summary.loc[label, "train"] == pytest.approx(logged.loc[label, "train"])
        assert summary.loc[label, "gap"] == pytest.approx(summary.loc[label, "train"] - summary.loc[label, "test"])
    assert summary.loc["best", "trial"] == finished_study.result.study.best_trial.number
    assert summary.loc["baseline", "regularizers"] == "none"
    assert summary["source"].eq("tuner refit (MLflow)").all()


def test_refit_without_logged_scores_reproduces_the_tuners_numbers(finished_study: FinishedStudy) -> None:
    data = load_study_data(finished_study.name, storage=finished_study.storage, tracking_uri=finished_study.tracking_uri)
    refit = with_without(data, use_logged=False).set_index("model")
    assert refit.loc[["baseline", "best"], "source"].eq("refit by the report").all()
    if "ensemble" in refit.index:  # the report cannot refit an ensemble: it says where the row is from
        assert refit.loc["ensemble", "source"] == "tuner refit (MLflow)"
    for label in ("baseline", "best"):
        assert refit.loc[label, "test"] == pytest.approx(finished_study.result.scores.loc[label, "test"])


def test_model_size_and_pruning_summaries(finished_study: FinishedStudy, reported) -> None:
    tables = reported[0]
    size = tables["model_size"].set_index("model")
    assert size.loc["best", "trial"] == finished_study.result.study.best_trial.number
    assert 0 < size.loc["best", "n_effective_params"] <= size.loc["best", "n_params"]
    pruning = tables["pruning"].iloc[0]
    counts = finished_study.result.counts
    assert (pruning["complete"], pruning["pruned"], pruning["failed"]) == (counts["COMPLETE"], counts["PRUNED"],
                                                                            counts["FAIL"])
    trials = tables["trials"]
    pruned = trials[trials["state"] == "PRUNED"]
    assert pruning["epochs_saved_by_pruning"] == pytest.approx((8 - pruned["epochs_run"]).sum())
    assert pruning["epochs_trained"] == pytest.approx(trials["epochs_run"].sum())


def test_plots_are_pngs_and_the_report_is_logged_to_the_parent_run(finished_study: FinishedStudy, reported) -> None:
    import matplotlib.image

    out = reported[1]
    pngs = sorted(out.glob("*.png"))
    assert {p.stem for p in pngs} == PLOTS
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_MAGIC
        height, width, _ = matplotlib.image.imread(png).shape
        assert height > 200 and width > 300
    client = _client(finished_study)
    logged = {Path(f.path).name for f in client.list_artifacts(finished_study.parent_run_id, "report")}
    assert logged == {p.name for p in pngs} | {"report.md", "trials.csv"}
    copy = Path(client.download_artifacts(finished_study.parent_run_id, "report/effects.png", str(finished_study.root)))
    assert copy.read_bytes() == (out / "effects.png").read_bytes()


def test_report_md_has_every_section_and_links_its_images(reported) -> None:
    text = (reported[1] / "report.md").read_text(encoding="utf-8")
    for heading in ("## With vs without regularization", "## Optimization history", "## Parameter importances",
                    "### Dropout rate", "### L1 / L2 / weight decay strength", "### Batch-norm placement",
                    "### Early stopping", "### Augmentation and noise", "## Model size", "## Pruning"):
        assert heading in text
    for name in PLOTS:
        assert f"({name}.png)" in text
    assert "Not searched" not in text


def test_report_rebuilt_from_mlflow_alone_has_the_same_tables(finished_study: FinishedStudy, reported,
                                                               tmp_path: Path) -> None:
    tables = report(finished_study.name, storage=str(tmp_path / "gone.journal"), tracking_uri=finished_study.tracking_uri,
                    from_mlflow=True, out_dir=tmp_path / "out", log_artifacts=False)
    for key, expected in reported[0].items():
        pd.testing.assert_frame_equal(tables[key], expected, check_dtype=False, obj=key)
    assert "MLflow runs alone" in (tmp_path / "out" / "report.md").read_text(encoding="utf-8")


def test_cli_report_prints_the_comparison(finished_study: FinishedStudy, tmp_path: Path, capsys,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(finished_study.root)
    main(["report", "--study", finished_study.name, "--storage", finished_study.storage, "--tracking-uri",
          finished_study.tracking_uri, "--out", str(tmp_path / "cli")])
    out = capsys.readouterr().out
    assert "with vs without regularization" in out and "baseline" in out
    assert (tmp_path / "cli" / "report.md").is_file()
    with pytest.raises(SystemExit) as exc:
        main(["report", "--study", "no-such-study", "--storage", finished_study.storage])
    assert exc.value.code == 2
    assert "no study 'no-such-study'" in capsys.readouterr().err


def test_import_regtune_does_not_import_matplotlib() -> None:
    code = ("import sys, regtune, regtune.cli.app, regtune.analysis.report, regtune.analysis.ablation; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'; "
            "assert callable(regtune.report) and callable(regtune.ablate), 'regtune.report is not callable'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_thin_cells_carry_their_count_and_a_caveat(reported) -> None:
    """Issue 11: on/off means and importances from cells of one or two trials are noise; the
    report shows n for every row and says so under any table that has such a row."""
    tables, out = reported
    text = (out / "report.md").read_text(encoding="utf-8")
    n_complete = int((tables["trials"]["state"] == "COMPLETE").sum())
    assert f"from n = {n_complete} complete trials" in text
    assert "mostly noise" in text  # fewer than 10 complete trials behind the importances
    on_off = tables["on_off"]
    assert (on_off["trials"] < 3).any(), "the 7-trial study should have thin on/off cells"
    section = text.split("### Each regularizer on vs off")[1].split("###")[0]
    assert "Column `trials` is n" in section
    assert "Caveat:" in section and "fewer than 3 trials" in section and "noise, not evidence" in section


def test_few_trials_caveat_only_for_thin_rows() -> None:
    from regtune.analysis.report import few_trials_caveat

    thin = pd.DataFrame({"setting": ["off", "on"], "score_mean": [0.9, 0.95], "trials": [6, 1]})
    assert "1 of 2 rows" in few_trials_caveat(thin) and "smallest n = 1" in few_trials_caveat(thin)
    assert few_trials_caveat(thin.assign(trials=[6, 3])) == ""
    assert few_trials_caveat(pd.DataFrame()) == ""


# ---------------------------------------------------------------- issue 11: output


def test_scores_print_in_one_fixed_format_and_gaps_signed(reported) -> None:
    """The summary printed ``1`` next to ``0.9722`` and a gap of ``0.02228``."""
    from regtune.analysis.effects import markdown_table

    summary = pd.DataFrame({"model": ["baseline", "best"], "trial": [0, 3], "train": [1.0, 0.99444],
                            "val": [0.9722, 0.97], "test": [0.95, math.nan], "gap": [0.02228, -0.0125]})
    rows = markdown_table(summary).splitlines()[2:]
    assert rows[0] == "| baseline | 0 | 1.0000 | 0.9722 | 0.9500 | +0.0223 |"
    assert rows[1] == "| best | 3 | 0.9944 | 0.9700 |  | -0.0125 |"
    effects = pd.DataFrame({"setting": ["off", "on"], "score_mean": [0.9, 1.0], "score_std": [0.01, math.nan],
                            "trials": [4, 1], "gap_mean": [0.05, 0.0], "sparsity_mean": [0.12345, 0.5]})
    assert markdown_table(effects).splitlines()[3] == "| on | 1.0000 |  | 1 | +0.0000 | 0.5 |"

    tables, out = reported
    text = (out / "report.md").read_text(encoding="utf-8")
    section = text.split("## With vs without regularization")[1].split("##")[0]
    cells = [c.strip() for line in section.splitlines() if line.startswith("| baseline") or line.startswith("| best")
             for c in line.strip("|").split("|")]
    scores = [c for c in cells if c and c[0] in "+-0123456789" and "." in c]
    assert scores and all(len(c.split(".")[1]) == 4 for c in scores), cells


def test_a_failed_report_leaves_no_folder(tmp_path: Path, tiny_space: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A study tuned on arrays without a test part has no logged test scores, so the report refits
    and needs the rows; it failed ("pass --data PATH") and left an empty folder behind."""
    from regtune.exceptions import ReportError
    from regtune.tuning.tuner import tune

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = tune(rng.normal(size=(60, 2)), np.arange(60) % 2, space=str(tiny_space), n_trials=2, cv=1,
                  test_size=0.0, tracking_uri=uri, progress=False, log_model=False)
    with pytest.raises(ReportError, match="pass --data"):
        report(result.study_name, tracking_uri=uri, out_dir=tmp_path / "report")
    assert not (tmp_path / "report").exists()
