"""Console tables for ``regtune tune`` and ``regtune best``."""

from __future__ import annotations

import math
from typing import Any

import optuna
from rich.console import Console
from rich.table import Table

from regtune.analysis.report import as_written_line
from regtune.metrics import METRICS, format_gap, format_score
from regtune.tracking.masking import mask_secrets
from regtune.tuning.selection import selection_lines

__all__ = ["print_best", "print_tune_summary"]


def _fmt(value: Any) -> str:
    """A setting or count: whole numbers as integers, other floats to 4 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"  # e.g. no test part, or no complete baseline trial
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() and abs(value) < 1e12 else f"{value:.4g}"
    return str(value)


def print_tune_summary(result: Any, console: Console) -> None:
    """Baseline vs best side by side, the chosen regularization, and where to look in MLflow."""
    scores = result.scores
    table = Table(title=f"study {result.study_name}: {result.metric.label}, baseline vs best")
    for col in ("model", "trial", "train", "val (search)", "test", "gap (train-test)", "epochs", "regularizers"):
        table.add_column(col, justify="left" if col in ("model", "regularizers") else "right")
    for label, row in scores.iterrows():
        table.add_row(str(label), _fmt(row["trial"]), format_score(row["train"]), format_score(row["val"]),
                      format_score(row["test"]), format_gap(row["gap"]), _fmt(row["epochs"]), row["regularizers"])
    console.print(table)
    line = as_written_line(scores, result.metric.direction)
    if line:
        console.print(line, highlight=False)
    settings = Table(title="best regularization settings")
    settings.add_column("setting")
    settings.add_column("value", justify="right")
    base = result.best_config.__class__()
    for key, value in result.best_config.to_dict().items():
        if value != getattr(base, key) or key in result.best_config.active_regularizers():
            settings.add_row(key, _fmt(value))
    console.print(settings)
    counts = result.counts
    console.print(
        f"trials: {counts.get('COMPLETE', 0)} complete, {counts.get('PRUNED', 0)} pruned, "
        f"{counts.get('FAIL', 0)} failed"
    )
    for line in selection_lines(result.selection, format_score):
        console.print(f"selection: {line}", highlight=False)
    for note in getattr(result, "notes", ()):
        console.print(f"note: {note}", highlight=False)
    if not result.parent_run_id:  # --tracking-uri off: no run to browse or predict with
        console.print(f"MLflow: off (nothing logged); the study keeps every trial: regtune best --study "
                      f"{result.study_name}", highlight=False)
        return
    console.print(
        f"MLflow: {mask_secrets(result.tracking_uri)}  experiment {result.experiment_id}  "
        f"parent run {result.parent_run_id}\n"
        f"  browse: regtune ui    predict: regtune predict DATA --run {result.parent_run_id}",
        highlight=False,
    )
    if result.registered_version is not None:
        console.print(f"registered model: {result.registered_model} version {result.registered_version} "
                      f"(models:/{result.registered_model}/{result.registered_version})", highlight=False, markup=False)


def print_best(study: optuna.Study, console: Console) -> None:
    """The best trial's value, parameters and MLflow run id."""
    try:
        best = study.best_trial
    except ValueError:
        raise ValueError(f"study {study.study_name!r} has no complete trial yet") from None
    table = Table(title=f"study {study.study_name}: best trial {best.number}")
    table.add_column("key")
    table.add_column("value", justify="right")
    metric = METRICS.get(study.user_attrs.get("metric", ""))
    table.add_row(f"value ({metric.label})" if metric else "value", format_score(best.value))
    table.add_row("mlflow run (this trial)", str(best.user_attrs.get("mlflow_run_id", "")))
    parent = study.user_attrs.get("mlflow_parent_run_id")
    if parent:
        table.add_row("mlflow run (study, model)", str(parent))
    for key, value in best.params.items():
        table.add_row(key, _fmt(value))
    console.print(table)
    if parent:  # the trial's run holds curves, not a model: predict takes the study's run
        console.print(f"predict with the study's refit best model: regtune predict DATA --run {parent}", highlight=False)
