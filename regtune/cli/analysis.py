"""``regtune report`` and ``regtune ablate``: registered on the main app by :mod:`regtune.cli`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from regtune.tracking.tracker import DEFAULT_EXPERIMENT, DEFAULT_TRACKING_URI
from regtune.tuning.settings import DEFAULT_STORAGE

__all__ = ["register"]

_STUDY = typer.Option(..., help="Study name (see `regtune tune` output).")
_STORAGE = typer.Option(None, help=f"Optuna storage URL or journal file (default ./{DEFAULT_STORAGE}).")
_TRACKING = typer.Option(None, help=f"MLflow tracking URI (default {DEFAULT_TRACKING_URI}).")
_EXPERIMENT = typer.Option(DEFAULT_EXPERIMENT, help="MLflow experiment (used with --from-mlflow).")
_DATA = typer.Option(None, help="Dataset file, when a refit needs it and the study ran on a CSV/Parquet file.")
_DEVICE = typer.Option(None, help="Device for refits (default: the study's).")
_OUT = typer.Option(None, help="Output directory (default reports/<study>).")
_FROM_MLFLOW = typer.Option(False, "--from-mlflow", help="Rebuild the study from its MLflow runs instead of "
                            "the Optuna storage (when that is gone).")
_SEEDS = typer.Option(3, min=1, help="Retrains per configuration, each with its own seed.")
_QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar.")


def _console():  # noqa: ANN202
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 140)


def register(app: typer.Typer) -> None:
    """Add the analysis commands to ``app``."""

    @app.command()
    def report(
        study: str = _STUDY,
        storage: str | None = _STORAGE,
        tracking_uri: str | None = _TRACKING,
        out: Path | None = _OUT,
        from_mlflow: bool = _FROM_MLFLOW,
        experiment: str = _EXPERIMENT,
        data: str | None = _DATA,
        device: str | None = _DEVICE,
    ) -> None:
        """Write a report on what regularization did: markdown, PNG plots, MLflow artifacts."""
        from regtune.analysis.report import default_out_dir
        from regtune.analysis.report import report as make_report

        out_dir = out or default_out_dir(study)
        tables = make_report(study, storage=storage, tracking_uri=tracking_uri, out_dir=out_dir,
                             experiment=experiment, from_mlflow=from_mlflow, data=data, device=device)
        console = _console()
        _print_summary(tables, console)
        logged = "; logged under report/ in the study's MLflow parent run" if tables["summary"]["mlflow_run_id"].any() else ""
        console.print(f"wrote {out_dir / 'report.md'} and {len(list(out_dir.glob('*.png')))} plots{logged}",
                      highlight=False)

    @app.command()
    def ablate(
        study: str = _STUDY,
        seeds: int = _SEEDS,
        storage: str | None = _STORAGE,
        tracking_uri: str | None = _TRACKING,
        from_mlflow: bool = _FROM_MLFLOW,
        experiment: str = _EXPERIMENT,
        data: str | None = _DATA,
        device: str | None = _DEVICE,
        quiet: bool = _QUIET,
    ) -> None:
        """Retrain the best configuration with each of its regularizers removed in turn; test each."""
        from regtune.analysis.ablation import ablate as run_ablation
        from regtune.analysis.ablation import print_ablation

        console = _console()
        table = run_ablation(study, seeds=seeds, storage=storage, tracking_uri=tracking_uri,
                             from_mlflow=from_mlflow, experiment=experiment, data=data, device=device,
                             progress=not quiet, console=console)
        print_ablation(table, console)


def _print_summary(tables, console) -> None:  # noqa: ANN001
    import pandas as pd
    from rich.table import Table

    from regtune.analysis.report import selection_record
    from regtune.metrics import format_gap, format_score
    from regtune.tuning.selection import selection_lines

    summary = tables["summary"]
    table = Table(title="with vs without regularization")
    for col in ("model", "trial", "regularizers", "train", "val", "test", "gap"):
        table.add_column(col, justify="left" if col in ("model", "regularizers") else "right")
    for _, row in summary.iterrows():
        trial = "-" if pd.isna(row["trial"]) else f"{row['trial']:.0f}"
        table.add_row(row["model"], trial, row["regularizers"], *(format_score(row[c]) for c in ("train", "val", "test")),
                      format_gap(row["gap"]))
    console.print(table)
    for line in selection_lines(selection_record(tables), format_score):
        console.print(f"selection: {line}", highlight=False)
    pruning = tables["pruning"].iloc[0]
    console.print(f"trials: {pruning['complete']:.0f} complete, {pruning['pruned']:.0f} pruned, "
                  f"{pruning['failed']:.0f} failed; "
                  f"{pruning['epochs_trained']:.0f} epochs trained, {pruning['epochs_saved_by_pruning']:.0f} "
                  "saved by pruning", highlight=False)
