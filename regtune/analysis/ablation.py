"""``ablate()``: retrain the best configuration with each of its regularizers removed in turn.

Search scores are validation scores of the configurations the sampler happened to try; an
ablation answers the narrower question "does this regularizer still help, given the others?"
on the test split the search never saw, with several seeds so a delta can be told from noise.
"""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import pandas as pd

from regtune.analysis.study_data import ReportError, load_study_data, prepare_data
from regtune.config import REGULARIZER_OFF, RegConfig
from regtune.tracking.tracker import DEFAULT_EXPERIMENT

if TYPE_CHECKING:
    from regtune.tracking.tracker import StudyTracker

__all__ = ["FULL", "ablate", "ablation_variants", "print_ablation"]

FULL = "none (full config)"


def ablation_variants(config: RegConfig) -> list[tuple[str, RegConfig]]:
    """The full configuration, then one with each active regularizer switched off."""
    return [(FULL, config)] + [(name, config.replace(**{name: REGULARIZER_OFF[name]}))
                               for name in config.active_regularizers()]


def ablate(
    study: str | optuna.Study, seeds: int = 3, *, storage: str | None = None, tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT, from_mlflow: bool = False, data: str | None = None, device: str | None = None,
    progress: bool = True, console: Any = None, log: bool = True,
) -> pd.DataFrame:
    """Test score of the best configuration and of each one-regularizer-removed variant.

    Every variant is trained ``seeds`` times on the study's whole train part (seed ``i`` is the
    tuner's refit seed of the best trial shifted by ``i``, so seed 0 repeats the tuner's refit)
    and scored on its test split. Returns one row per variant: the removed technique, its
    value in the best configuration, test mean and std over seeds, delta vs the full
    configuration, and the per-seed scores. Logged to the study's MLflow parent run as
    ``ablation/ablation.csv``, ``ablation/ablation.md`` and ``ablation/*`` metrics.
    """
    if not isinstance(seeds, int) or seeds < 1:
        raise ReportError(f"seeds={seeds!r} must be a whole number >= 1")
    sd = load_study_data(study, storage=storage, tracking_uri=tracking_uri, experiment=experiment,
                         from_mlflow=from_mlflow)
    try:
        best = sd.study.best_trial
    except ValueError:
        raise ReportError(f"study {sd.study.study_name!r} has no complete trial yet; nothing to ablate") from None
    folds, X_test, y_test, metric, settings = prepare_data(sd, data, device)
    if X_test is None:
        raise ReportError(f"study {sd.study.study_name!r} ran without a test split (test_size=0); "
                          "an ablation needs one")
    config = sd.space.to_config(best.params)
    variants = ablation_variants(config)
    with tempfile.TemporaryDirectory(prefix="regtune-ablate-") as tmp:
        settings = replace(settings, module=_module_code(sd, settings.module, tmp))
        scores = _train_all(variants, best, folds, X_test, y_test, metric, settings, seeds, progress, console)
    table = _table(config, variants, scores)
    table.attrs.update(metric=metric.name, direction=metric.direction, study=sd.study.study_name,
                       best_trial=sd.logged_number(best))
    if log and sd.tracker is not None and sd.parent_run_id:
        _log(sd.tracker, sd.parent_run_id, table)
    return table


def _module_code(sd: Any, module: Any, tmp: str) -> Any:
    """The study's network: its ``file.py:Name`` where that file still is, else the copy of the
    file logged with the study's model (as ``regtune predict`` uses it), so an ablation needs
    no ``--model`` file at hand."""
    if not isinstance(module, str) or ":" not in module:
        return module
    target, _, name = module.rpartition(":")
    if not target.endswith(".py") or Path(target).is_file():
        return module
    code = None
    model_uri = sd.tracker.run_tag(sd.parent_run_id, "regtune.model_uri") if sd.tracker and sd.parent_run_id else None
    if model_uri:
        code = sd.tracker.download_artifacts(f"{model_uri}/artifacts/regtune_model/code", tmp)
    # saved under the private name it was imported by (regtune.nn.models.file_module_name)
    stem = re.sub(r"\W", "_", Path(target).stem)
    copies = [code / Path(target).name, *sorted(code.glob(f"regtune_user_*_{stem}.py"))] if code is not None else []
    copy = next((c for c in copies if c.is_file()), None)
    if copy is None:
        raise ReportError(f"study {sd.study.study_name!r} trained the network {module!r}, but {target!r} is not "
                          "there and the study's MLflow run holds no copy of it; run regtune ablate from the "
                          "folder the study was tuned in, or pass --tracking-uri for the study's MLflow store")
    return f"{copy}:{name}"


def _train_all(variants: list[tuple[str, RegConfig]], best: optuna.trial.FrozenTrial, folds: Any, X_test: Any,
               y_test: Any, metric: Any, settings: Any, seeds: int, progress: bool, console: Any) -> np.ndarray:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from regtune.tuning.final import refit

    scores = np.full((len(variants), seeds), math.nan)
    bar = Progress(TextColumn("[bold]ablation"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[what]}"), TimeElapsedColumn(), console=console, disable=not progress)
    with bar:
        task = bar.add_task("ablate", total=scores.size, what="")
        for i, (name, config) in enumerate(variants):
            for s in range(seeds):
                bar.update(task, what=f"without {name}, seed {s}" if name != FULL else f"full config, seed {s}")
                est = refit(config, best, folds, replace(settings, seed=settings.seed + s))
                scores[i, s] = metric.final_fn(est, X_test, y_test)
                bar.advance(task)
    return scores


def _table(config: RegConfig, variants: list[tuple[str, RegConfig]], scores: np.ndarray) -> pd.DataFrame:
    full = float(scores[0].mean())
    rows = []
    for (name, _), row in zip(variants, scores, strict=True):
        rows.append({
            "removed": name,
            "value_in_best": "" if name == FULL else _short(getattr(config, name)),
            "test_mean": float(row.mean()),
            "test_std": float(row.std(ddof=1)) if len(row) > 1 else math.nan,
            "delta_vs_full": float(row.mean()) - full,
            "seeds": len(row),
            **{f"seed_{s}": float(v) for s, v in enumerate(row)},
        })
    return pd.DataFrame(rows)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _log(tracker: StudyTracker, run_id: str, table: pd.DataFrame) -> None:
    import tempfile

    from regtune.analysis.effects import markdown_table

    metrics = {}
    for _, row in table.iterrows():
        key = "full" if row["removed"] == FULL else f"no_{row['removed']}"
        metrics[f"ablation/{key}_test_mean"] = row["test_mean"]
        metrics[f"ablation/{key}_test_std"] = row["test_std"]
        if key != "full":
            metrics[f"ablation/{key}_delta"] = row["delta_vs_full"]
    tracker.log_metrics(run_id, metrics)
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "ablation.csv"
        table.to_csv(csv, index=False)
        tracker.log_artifact(run_id, csv, "ablation")
    tracker.log_text(run_id, _markdown(table, markdown_table), "ablation/ablation.md")


def _markdown(table: pd.DataFrame, markdown_table: Any) -> str:
    better = "higher" if table.attrs.get("direction") == "maximize" else "lower"
    return (f"# Ablation: {table.attrs.get('study', '')}, best trial {table.attrs.get('best_trial', '')}\n\n"
            f"Test {table.attrs.get('metric', 'score')} ({better} is better) of the best configuration and of "
            f"each variant with one regularizer switched off, over {int(table['seeds'].iloc[0])} seeds.\n\n"
            f"{markdown_table(table)}\n")


def print_ablation(table: pd.DataFrame, console: Any) -> None:
    """The ablation as a rich table: what was removed, test mean and std, delta vs full."""
    from rich.table import Table

    better = "higher" if table.attrs.get("direction") == "maximize" else "lower"
    out = Table(title=f"ablation of best trial {table.attrs.get('best_trial', '')}: test "
                      f"{table.attrs.get('metric', 'score')} ({better} is better), {int(table['seeds'].iloc[0])} seeds")
    for col in ("technique removed", "its value", "test mean", "test std", "delta vs full"):
        out.add_column(col, justify="left" if col in ("technique removed", "its value") else "right")
    for _, row in table.iterrows():
        delta = "" if row["removed"] == FULL else f"{row['delta_vs_full']:+.4f}"
        std = "" if math.isnan(row["test_std"]) else f"{row['test_std']:.4f}"
        out.add_row(row["removed"], row["value_in_best"], f"{row['test_mean']:.4f}", std, delta)
    console.print(out)
