"""Per-technique effect tables, pruning and model-size summaries, all from one trials frame.

The frame is :func:`regtune.analysis.study_data.trials_table`'s, so the tables are the same whether the
study came from its Optuna storage or from MLflow alone.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from regtune.config import BATCH_NORM, REGULARIZER_OFF
from regtune.metrics import format_gap, format_score
from regtune.regularizer_table import REGULARIZERS

__all__ = ["GAP_COLUMNS", "NOISE_AND_AUGMENTATION", "PENALTIES", "SCORE_COLUMNS", "effect_tables",
           "importance_evaluator", "importance_table", "markdown_table", "model_size_table", "pruning_table",
           "switches_in"]


def switches_in(*categories: str) -> tuple[str, ...]:
    """The switch fields of the regularizers in ``categories``, in table order."""
    return tuple(spec.switch for spec in REGULARIZERS if spec.category in categories)


NOISE_AND_AUGMENTATION = switches_in("data", "noise")
PENALTIES = switches_in("penalty")
MIN_TRIALS_FOR_IMPORTANCE = 3


def effect_tables(trials: pd.DataFrame, techniques: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Per-technique tables over the complete trials of ``trials`` (a :func:`trials_table`).

    ``techniques`` are the regularizer switch fields the space searched; by default every one
    that is on in some trial. A table for a technique that was not searched is empty.
    """
    done = _complete(trials)
    if techniques is None:
        techniques = [k for k, off in REGULARIZER_OFF.items() if k in trials and (trials[k] != off).any()]
    on = set(techniques)
    penalties = [p for p in PENALTIES if p in on]
    noise = [n for n in NOISE_AND_AUGMENTATION if n in on]
    tables = {
        "on_off": _concat([_stats(done, _on_off(done, k), technique=k) for k in techniques]),
        "dropout": _stats(done, _bins(done["dropout"], _LINEAR), extra=("train_score",), gap=True)
        if "dropout" in on else _empty(),
        "penalties": _concat([_stats(done, _bins(done[k], None), technique=k, extra=("sparsity", "weight_norm"))
                              for k in penalties]),
        "batch_norm": _stats(done, _placement(done["batch_norm"]), extra=("best_epoch", "epochs_run"))
        if "batch_norm" in on else _empty(),
        "early_stopping": _stats(done, _on_off(done, "early_stopping").rename("early_stopping"),
                                 extra=("epochs_run", "best_epoch", "seconds"))
        if "early_stopping" in on else _empty(),
        "augmentation_noise": _concat([_stats(done, _on_off(done, k), technique=k) for k in noise]),
    }
    return tables


def pruning_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials by state, epochs trained, and the epochs pruning saved (``max_epochs`` - epochs run)."""
    state = trials["state"] if len(trials) else pd.Series(dtype=str)
    pruned = trials[state == "PRUNED"]
    saved = float((pruned["max_epochs"] - pruned["epochs_run"]).clip(lower=0).sum()) if len(pruned) else 0.0
    trained = float(trials["epochs_run"].sum()) if len(trials) else 0.0
    return pd.DataFrame([{
        "trials": len(trials), "complete": int((state == "COMPLETE").sum()), "pruned": len(pruned),
        "failed": int((state == "FAIL").sum()), "epochs_trained": trained, "epochs_saved_by_pruning": saved,
        "saved_share": saved / (trained + saved) if trained + saved else 0.0,
    }])


def model_size_table(trials: pd.DataFrame, best: int, baseline: int | None) -> pd.DataFrame:
    """Parameter counts of the best (and baseline) trial's networks; effective = |w| >= 1e-3."""
    cols = ["n_params", "n_effective_params", "sparsity", "weight_norm", "top_singular_value"]
    rows = []
    for label, number in (("best", best), ("baseline", baseline)):
        match = trials[trials["number"] == number] if number is not None else trials.iloc[:0]
        if len(match):
            rows.append({"model": label, "trial": number, **match.iloc[0][cols].to_dict()})
    return pd.DataFrame(rows, columns=["model", "trial", *cols])


_LINEAR = np.round(np.arange(0.0, 1.01, 0.1), 1)


def _complete(trials: pd.DataFrame) -> pd.DataFrame:
    if not len(trials):
        return trials
    return trials[(trials["state"] == "COMPLETE") & trials["value"].notna()]


def _on_off(frame: pd.DataFrame, field_name: str) -> pd.Series:
    return (frame[field_name] != REGULARIZER_OFF[field_name]).map({True: "on", False: "off"}).rename("setting")


def _placement(values: pd.Series) -> pd.Series:
    return pd.Series(pd.Categorical(values, categories=list(BATCH_NORM), ordered=True), index=values.index,
                     name="placement")


def _bins(values: pd.Series, edges: np.ndarray | None) -> pd.Series:
    """``off`` for the off value, else linear bins (``edges``) or decades on a log scale."""
    labels = []
    for v in values:
        if v == 0:
            labels.append((-math.inf, "off"))
        elif edges is None:
            d = math.floor(math.log10(v))
            labels.append((d, f"1e{d}..1e{d + 1}"))
        else:
            i = max(1, int(np.searchsorted(edges, v, side="left")))
            labels.append((edges[i - 1], f"{edges[i - 1]:.1f}..{edges[i]:.1f}"))
    order = [label for _, label in sorted(set(labels))]
    return pd.Series(pd.Categorical([label for _, label in labels], categories=order, ordered=True),
                     index=values.index, name="strength")


def _stats(frame: pd.DataFrame, by: pd.Series, *, technique: str | None = None,
           extra: tuple[str, ...] = (), gap: bool = False) -> pd.DataFrame:
    """Score mean / std / count per group, and the means of ``extra`` columns."""
    if not len(frame):
        return _empty()
    groups = frame.groupby(by, observed=True, sort=True)
    out = groups["value"].agg(score_mean="mean", score_std="std", trials="count")
    for col in extra:
        out[f"{col}_mean"] = groups[col].mean()
    if gap:
        out["gap_mean"] = groups["train_score"].mean() - out["score_mean"]
    out = out.reset_index().rename(columns={by.name: by.name or "group"})
    if technique is not None:
        out.insert(0, "technique", technique)
    return out


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else _empty()


def _empty() -> pd.DataFrame:
    return pd.DataFrame()


# ---------------------------------------------------------------- with vs without, importances


def importance_table(study: optuna.Study) -> tuple[pd.DataFrame, str]:
    """fANOVA importances (seed 0, so reports are reproducible) and a note when there are none."""
    n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if n_complete < MIN_TRIALS_FOR_IMPORTANCE:
        return _empty(), (f"Parameter importances need at least {MIN_TRIALS_FOR_IMPORTANCE} complete trials; "
                          f"this study has {n_complete}.")
    try:
        values = optuna.importance.get_param_importances(study, evaluator=importance_evaluator())
    except (ValueError, RuntimeError) as err:
        return _empty(), f"Parameter importances could not be computed: {err}"
    if not values or not all(math.isfinite(v) for v in values.values()) or not any(values.values()):
        return _empty(), "Parameter importances are all zero: no param varied across the complete trials."
    frame = pd.DataFrame({"param": list(values), "importance": list(values.values())})
    return frame, ""


def importance_evaluator() -> optuna.importance.FanovaImportanceEvaluator:
    return optuna.importance.FanovaImportanceEvaluator(seed=0)


# Columns holding a score, or a difference of scores, in every report table.
SCORE_COLUMNS = frozenset({"train", "val", "test", "value", "train_score", "score_mean", "score_std",
                           "train_score_mean", "test_mean", "test_std"})
GAP_COLUMNS = frozenset({"gap", "gap_mean", "delta_vs_full"})


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table. Scores in one fixed format (4 decimals, gaps signed:
    :func:`~regtune.metrics.format_score`), whole numbers as integers, other floats to 4
    significant digits."""
    if not len(frame):
        return "_(no rows)_"
    cols = [str(c) for c in frame.columns]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
               for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v, c) for v, c in zip(row, cols, strict=True)) + " |")
    return "\n".join(lines)


def _cell(value: Any, column: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating, int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        if column in SCORE_COLUMNS:
            return format_score(value, missing="")
        if column in GAP_COLUMNS:
            return format_gap(value, missing="")
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return f"{value:.0f}" if value.is_integer() and abs(value) < 1e12 else f"{value:.4g}"
    return str(value).replace("|", "\\|")
