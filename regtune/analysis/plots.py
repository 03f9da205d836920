"""PNG plots of a report. Matplotlib is imported here, inside functions, never by ``import regtune``."""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from regtune.analysis.effects import switches_in
from regtune.config import REGULARIZER_OFF
from regtune.metrics import format_score

if TYPE_CHECKING:
    from regtune.analysis.study_data import StudyData

__all__ = ["MAX_LOG_TICKS", "save_plots"]

_DPI = 110
_LOG_SCALE = set(switches_in("penalty", "noise"))  # strengths that span decades


def _pyplot() -> Any:
    """pyplot on the Agg backend, unless the caller (a notebook) already chose one."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_plots(data: StudyData, tables: dict[str, pd.DataFrame], out: Path) -> dict[str, Path]:
    """Draw every plot the study has data for into ``out``; returns the files by plot name."""
    plt = _pyplot()
    with plt.rc_context(), plt.style.context("ggplot"):  # Optuna's plots set ggplot globally
        return _save_all(plt, data, tables, out)


def _save_all(plt: Any, data: StudyData, tables: dict[str, pd.DataFrame], out: Path) -> dict[str, Path]:
    from regtune.analysis.study_data import searched

    drawn: dict[str, Path] = {}
    plots = {
        "with_without": lambda: _with_without(plt, tables["summary"], data.study.user_attrs.get("metric", "score")),
        "learning_curves": lambda: _learning_curves(plt, data, tables["summary"]),
        "optimization_history": lambda: _optuna_plot("plot_optimization_history", data.study),
        "param_importances": lambda: _importances(data, tables["importances"]),
        "effects": lambda: _effects(plt, tables["trials"], searched(data.space)),
    }
    for name, draw in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning, matplotlib layout notes
            fig = draw()
            if fig is None:
                continue
            path = out / f"{name}.png"
            fig.savefig(path, dpi=_DPI, bbox_inches="tight")
        plt.close(fig)
        drawn[name] = path
    return drawn


def _optuna_plot(name: str, study: Any, **kwargs: Any) -> Any:
    import optuna.visualization.matplotlib as ovm

    ax = getattr(ovm, name)(study, **kwargs)
    fig = ax.figure
    fig.set_size_inches(7, 4.5)
    return fig


def _importances(data: StudyData, table: pd.DataFrame) -> Any:
    from regtune.analysis.effects import importance_evaluator

    if not len(table):
        return None
    return _optuna_plot("plot_param_importances", data.study, evaluator=importance_evaluator())


def _with_without(plt: Any, summary: pd.DataFrame, metric: str) -> Any:
    fig, ax = plt.subplots(figsize=(6, 4))
    parts, width = ("train", "val", "test"), 0.38
    for i, (_, row) in enumerate(summary.iterrows()):
        xs = [j + (i - 0.5) * width for j in range(len(parts))]
        bars = ax.bar(xs, [row[p] for p in parts], width, label=f"{row['model']} ({row['regularizers']})")
        ax.bar_label(bars, labels=[format_score(v, missing="") for v in bars.datavalues], fontsize=8)
    ax.set_xticks(range(len(parts)), ["train", "validation", "test"])
    values = summary[list(parts)].to_numpy(dtype=float)
    finite = values[~pd.isna(values)]
    if len(finite):
        low, high = float(finite.min()), float(finite.max())
        pad = max(0.05 * (high - low), 0.02 * abs(high) or 0.01)
        ax.set_ylim(low - 4 * pad, high + 2 * pad)
    ax.set_ylabel(metric)
    ax.set_title("With vs without regularization")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    return fig


def _learning_curves(plt: Any, data: StudyData, summary: pd.DataFrame) -> Any:
    """Per-epoch train and validation loss of the baseline and the best trial (from MLflow)."""
    runs = {}
    for _, row in summary.iterrows():
        curves = {key: data.metric_history(row["mlflow_run_id"], key) for key in ("train_loss", "val_loss")}
        if any(curves.values()):
            runs[row["model"]] = curves
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (model, curves), color in zip(runs.items(), ("tab:gray", "tab:blue"), strict=False):
        for key, style in (("train_loss", "--"), ("val_loss", "-")):
            if curves[key]:
                steps, values = zip(*curves[key], strict=True)
                ax.plot(steps, values, style, color=color, label=f"{model} {key.replace('_', ' ')}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (mean over folds)")
    ax.set_title("Learning curves: baseline vs best")
    ax.legend(fontsize=8)
    return fig


MAX_LOG_TICKS = 4  # labels on a log axis; 10^-7 .. 10^-3 with every decade labelled runs into itself


def _log_axis(ax: Any) -> None:
    """A log x axis with at most :data:`MAX_LOG_TICKS` labels, evenly spread, no minor labels.

    Left to itself matplotlib labels every decade and, on a range narrower than two decades, the
    minor ticks too (``2x10^-5``, ``3x10^-5``, ``4x10^-5`` ...), and in a small panel the labels
    run into each other. Ticks here are powers of ten (1 to 9 times one on narrow ranges), each
    at least a quarter of the axis away from the last.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ax.set_xscale("log")
    low, high = (math.log10(v) for v in ax.get_xlim())
    span = max(high - low, 1e-9)
    mantissas = (1,) if span >= 2 else range(1, 10)
    candidates = sorted(math.log10(m) + e for e in range(math.floor(low), math.ceil(high) + 1) for m in mantissas)
    ticks: list[float] = []
    for t in candidates:
        if low <= t <= high and (not ticks or t - ticks[-1] >= span / MAX_LOG_TICKS):
            ticks.append(t)
    if not ticks:  # a range within one step of 1..9: label its middle
        ticks = [float(math.log10(float(f"{10 ** ((low + high) / 2):.1e}")))]
    ax.xaxis.set_major_locator(FixedLocator([10 ** t for t in ticks]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _power_of_ten(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _power_of_ten(value: float) -> str:
    """``2e-05`` as mathtext ``2x10^-5`` (``10^-5`` for 1e-05)."""
    mantissa, exponent = f"{value:.1e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    power = f"10^{{{int(exponent)}}}"
    return f"${power}$" if mantissa == "1" else f"${mantissa}\\times{power}$"


def _effects(plt: Any, trials: pd.DataFrame, techniques: list[str]) -> Any:
    """Validation score against each numeric regularizer's strength, complete trials only."""
    done = trials[(trials["state"] == "COMPLETE") & trials["value"].notna()] if len(trials) else trials
    numeric = [k for k in techniques if isinstance(REGULARIZER_OFF[k], float) and k in done]
    numeric = [k for k in numeric if (done[k] != REGULARIZER_OFF[k]).any()]
    if not numeric:
        return None
    cols = min(3, len(numeric))
    rows = math.ceil(len(numeric) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    baseline = done.loc[done["baseline"], "value"]
    for ax, key in zip(axes.flat, numeric, strict=False):
        on = done[done[key] != REGULARIZER_OFF[key]]
        ax.scatter(on[key], on["value"], s=22, alpha=0.8, label="on")
        off = done[done[key] == REGULARIZER_OFF[key]]
        if len(off):
            ax.axhline(off["value"].mean(), color="tab:gray", linestyle="--", linewidth=1, label="off (mean)")
        if len(baseline):
            ax.axhline(float(baseline.iloc[0]), color="tab:red", linestyle=":", linewidth=1, label="baseline")
        if key in _LOG_SCALE:
            _log_axis(ax)
        ax.set_xlabel(key)
        ax.set_ylabel("validation score")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(numeric):]:
        ax.set_visible(False)
    fig.suptitle("Regularization strength vs validation score")
    fig.tight_layout()
    return fig
