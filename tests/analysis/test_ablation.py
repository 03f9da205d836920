"""``regtune ablate``: the best configuration retrained with each regularizer removed in turn."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from study_helpers import FinishedStudy

from regtune.analysis.ablation import FULL, ablate, ablation_variants
from regtune.analysis.study_data import ReportError
from regtune.cli.app import main
from regtune.config import REGULARIZER_OFF, RegConfig

SEEDS = 2


@pytest.fixture(scope="module")
def table(finished_study: FinishedStudy) -> pd.DataFrame:
    return ablate(finished_study.name, seeds=SEEDS, storage=finished_study.storage, tracking_uri=finished_study.tracking_uri,
                  progress=False)


def test_variants_switch_off_one_regularizer_each() -> None:
    config = RegConfig(l2=1e-3, dropout=0.2, batch_norm="after_activation", early_stopping=True)
    variants = dict(ablation_variants(config))
    assert list(variants) == [FULL, "l2", "dropout", "batch_norm", "early_stopping"]
    for name, variant in variants.items():
        if name != FULL:
            assert getattr(variant, name) == REGULARIZER_OFF[name]
            assert variant.active_regularizers() == [r for r in config.active_regularizers() if r != name]


def test_one_row_per_active_regularizer_plus_the_full_config(finished_study: FinishedStudy, table: pd.DataFrame) -> None:
    active = finished_study.result.best_config.active_regularizers()
    assert len(active) >= 2
    assert table["removed"].tolist() == [FULL, *active]
    assert (table["seeds"] == SEEDS).all()
    seeds = table[[f"seed_{s}" for s in range(SEEDS)]]
    assert seeds.notna().all().all() and seeds.stack().between(0, 1).all()
    assert table["test_mean"].tolist() == pytest.approx(seeds.mean(axis=1).tolist())
    assert table["test_std"].tolist() == pytest.approx(seeds.std(axis=1, ddof=1).tolist())
    full = table.loc[0, "test_mean"]
    assert table["delta_vs_full"].tolist() == pytest.approx((table["test_mean"] - full).tolist())


def test_seed_zero_of_the_full_config_is_the_tuners_refit(finished_study: FinishedStudy, table: pd.DataFrame) -> None:
    assert table.loc[0, "seed_0"] == pytest.approx(finished_study.result.scores.loc["best", "test"])


def test_ablation_is_logged_to_the_parent_run(finished_study: FinishedStudy, table: pd.DataFrame) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(finished_study.tracking_uri)
    files = {Path(f.path).name for f in client.list_artifacts(finished_study.parent_run_id, "ablation")}
    assert files == {"ablation.csv", "ablation.md"}
    csv = Path(client.download_artifacts(finished_study.parent_run_id, "ablation/ablation.csv", str(finished_study.root)))
    pd.testing.assert_frame_equal(pd.read_csv(csv, keep_default_na=False, na_values=[""]).drop(columns="value_in_best"),
                                  table.drop(columns="value_in_best"), check_dtype=False)
    metrics = client.get_run(finished_study.parent_run_id).data.metrics
    assert metrics["ablation/full_test_mean"] == pytest.approx(table.loc[0, "test_mean"])
    for name in table["removed"][1:]:
        assert f"ablation/no_{name}_delta" in metrics


def test_cli_ablate_prints_a_row_per_technique(finished_study: FinishedStudy, capsys) -> None:
    main(["ablate", "--study", finished_study.name, "--seeds", "1", "--storage", finished_study.storage, "--tracking-uri",
          finished_study.tracking_uri, "--quiet"])
    out = capsys.readouterr().out
    assert "ablation of best trial" in out and "delta vs full" in out
    for name in [FULL, *finished_study.result.best_config.active_regularizers()]:
        assert name in out


def test_seeds_must_be_positive(finished_study: FinishedStudy) -> None:
    with pytest.raises(ReportError, match="seeds=0"):
        ablate(finished_study.name, seeds=0, storage=finished_study.storage, tracking_uri=finished_study.tracking_uri)


# ---------------------------------------------------------------- issue 11, item 1: the study's own target


@pytest.fixture(scope="module")
def target_first(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A study tuned on a CSV whose target (``species``) is its first column, not its last
    (the issue's penguins repro, on iris: the ``minimal`` space, no MLflow)."""
    from sklearn.datasets import load_iris

    from regtune.tuning.tuner import tune

    root = tmp_path_factory.mktemp("target-first")
    frame = load_iris(as_frame=True).frame
    names = pd.Series(["setosa", "versicolor", "virginica"])[frame.pop("target")].to_numpy()
    frame.insert(0, "species", names)
    csv = root / "data" / "flowers.csv"
    csv.parent.mkdir()
    frame.to_csv(csv, index=False)
    storage = str(root / "regtune.journal")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        result = tune(str(csv), target="species", n_trials=3, space="minimal", cv=1, pruner="none",
                      storage=storage, study_name="flowers", tracking_uri="off", progress=False, log_model=False)
    return {"root": root, "csv": csv, "storage": storage, "result": result, "frame": frame}


def test_ablate_retrains_on_the_studys_target_not_the_last_column(target_first: dict) -> None:
    table = ablate("flowers", seeds=1, storage=target_first["storage"], tracking_uri="off", progress=False,
                   data=str(target_first["csv"]))
    tuned = target_first["result"].scores.loc["best", "test"]
    assert table.attrs["metric"] == "accuracy"
    assert table.loc[0, "test_mean"] == pytest.approx(tuned, abs=0.034)  # seed 0 is the tuner's refit
    assert table.loc[0, "test_mean"] > 0.6  # chance is 1/3


def test_ablate_reads_the_file_the_study_recorded_from_any_directory(target_first: dict, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no flowers.csv here: the study knows where it read it
    table = ablate("flowers", seeds=1, storage=target_first["storage"], tracking_uri="off", progress=False)
    assert table.loc[0, "test_mean"] == pytest.approx(target_first["result"].scores.loc["best", "test"], abs=0.034)


def test_ablate_refuses_other_data_for_the_study(target_first: dict, tmp_path: Path, capsys) -> None:
    other = tmp_path / "flowers.csv"
    target_first["frame"].iloc[::-1].iloc[5:].to_csv(other, index=False)
    with pytest.raises(SystemExit) as exc:
        main(["ablate", "--study", "flowers", "--seeds", "1", "--storage", target_first["storage"],
              "--tracking-uri", "off", "--data", str(other), "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not the data study 'flowers' was tuned on" in err[0] and "--data" in err[0]


USER_NET = '''\
import torch
from torch import nn


class AblateNet(nn.Module):
    def __init__(self, n_features, n_outputs, dropout=0.0):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_features, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, n_outputs))

    def forward(self, x):
        return self.body(x)
'''


def test_ablate_trains_the_network_logged_with_the_studys_model(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17 item 11: with the --model file gone, ablate uses the copy logged with the model."""
    import sys

    from regtune.tracking.tracker import MLflowTracker
    from regtune.tuning.tuner import tune

    tuned_in = tmp_path / "project"
    tuned_in.mkdir()
    (tuned_in / "ablate_user_net.py").write_text(USER_NET, encoding="utf-8")
    uri, storage = f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "regtune.journal")
    MLflowTracker(uri, experiment=None)
    monkeypatch.chdir(tuned_in)
    tune("iris", n_trials=3, space="minimal", cv=1, pruner="none", storage=storage, study_name="byo",
         tracking_uri=uri, progress=False, module="ablate_user_net.py:AblateNet")
    (tuned_in / "ablate_user_net.py").unlink()
    sys.modules.pop("ablate_user_net", None)  # a fresh `regtune ablate` process has not imported it
    table = ablate("byo", seeds=1, storage=storage, tracking_uri=uri, progress=False)
    assert table.loc[0, "test_mean"] > 0.6  # chance is 1/3
