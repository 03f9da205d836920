"""``report()``: what regularization did in a finished study, as tables, plots and a markdown file.

Every table comes from one trials frame (:mod:`regtune.study_data`), built the same way whether
the study is read from its Optuna storage or rebuilt from MLflow alone (``from_mlflow=True``),
so a report survives the loss of the Optuna storage.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pandas as pd
from optuna.trial import TrialState

from regtune.analysis.effects import (
    NOISE_AND_AUGMENTATION,
    PENALTIES,
    effect_tables,
    importance_table,
    markdown_table,
    model_size_table,
    pruning_table,
)
from regtune.analysis.study_data import (
    ReportError,
    StudyData,
    load_study_data,
    prepare_data,
    searched,
    trials_table,
)
from regtune.config import REGULARIZER_OFF, no_regularization
from regtune.metrics import METRICS, format_score
from regtune.tracking.masking import mask_secrets
from regtune.tracking.tracker import DEFAULT_EXPERIMENT
from regtune.tuning.queue import AS_WRITTEN_ATTR
from regtune.tuning.selection import selection_lines, selection_summary

if TYPE_CHECKING:
    from regtune.data.loading import Dataset

__all__ = ["FEW_TRIALS", "ReportError", "as_written_line", "default_out_dir", "few_trials_caveat", "markdown_table",
           "render_markdown", "report", "selection_record", "selection_table", "with_without"]

FEW_TRIALS = 3  # a table cell (a mean over its trials) with fewer is noise, not evidence
FEW_FOR_IMPORTANCE = 10  # fANOVA's forest over fewer complete trials ranks noise


def with_without(data: StudyData, *, dataset: str | Dataset | None = None, device: str | None = None,
                 use_logged: bool = True) -> pd.DataFrame:
    """Baseline (no regularization) vs best trial (and the user's network as written, and the
    ensemble of a study tuned with ``--ensemble K``): train, validation and test score, and the gap.

    Test scores are the tuner's refit, logged on the parent run; without them (or with
    ``use_logged=False``) both models are refit here on the study's split, seeded as the tuner
    seeds them, which reproduces the tuner's numbers.
    """
    study = data.study
    best = study.best_trial
    baseline = next((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                     if t.user_attrs.get("baseline")), None)
    best_config = data.space.to_config(best.params)
    models = {"baseline": (baseline, data.space.to_config(baseline.params) if baseline else
                           no_regularization(best_config)), "best": (best, best_config)}
    written = next((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                    if t.user_attrs.get(AS_WRITTEN_ATTR)), None)
    if written is not None:  # the user's network as written: did the search beat it?
        models["as_written"] = (written, data.space.to_config(written.params))
    logged = data.parent.data.metrics if data.parent is not None else {}
    if use_logged and all(f"{label}_{col}" in logged for label in models for col in ("train", "test")):
        scores = {label: (logged[f"{label}_train"], logged[f"{label}_test"]) for label in models}
        source = "tuner refit (MLflow)"
    else:
        from regtune.tuning.final import refit

        folds, X_test, y_test, metric, settings = prepare_data(data, dataset, device)
        scores = {}
        for label, (trial, config) in models.items():
            est = refit(config, trial, folds, settings)
            test = metric.final_fn(est, X_test, y_test) if X_test is not None else math.nan
            scores[label] = (metric.final_fn(est, folds.X, folds.y), test)
        source = "refit by the report"
    rows = []
    for label, (trial, config) in models.items():
        train, test = scores[label]
        rows.append({"model": label, "trial": data.logged_number(trial) if trial else None,
                     "regularizers": ", ".join(config.active_regularizers()) or "none", "train": train,
                     "val": trial.value if trial else math.nan, "test": test, "gap": train - test,
                     "source": source, "mlflow_run_id": trial.user_attrs.get("mlflow_run_id") if trial else None})
    if all(f"ensemble_{col}" in logged for col in ("train", "val", "test")):  # tuned with --ensemble K
        rows.append({"model": "ensemble", "trial": None, "regularizers": data.parent.data.tags.get("regtune.ensemble", ""),
                     "train": logged["ensemble_train"], "val": logged["ensemble_val"], "test": logged["ensemble_test"],
                     "gap": logged["ensemble_train"] - logged["ensemble_test"], "source": "tuner refit (MLflow)",
                     "mlflow_run_id": None})
    return pd.DataFrame(rows)


def as_written_line(scores: pd.DataFrame, direction: str) -> str | None:
    """Whether the search's best beat the user's network as written (the ``as_written`` row of
    the scores), on validation and test; ``None`` without that row."""
    if "as_written" not in scores.index or "best" not in scores.index:
        return None
    best, mine = scores.loc["best"], scores.loc["as_written"]
    head = f"your network as written (trial {_number(mine['trial'])}, its own regularization): "
    if mine["trial"] == best["trial"]:
        return head + "it is the search's best trial"
    sign = 1 if direction == "maximize" else -1
    parts = []
    for col, name in (("val", "validation"), ("test", "test")):
        if not (math.isnan(best[col]) or math.isnan(mine[col])):
            verdict = "beaten" if sign * (best[col] - mine[col]) > 0 else "not beaten"
            parts.append(f"{name} {format_score(best[col])} (best) vs {format_score(mine[col])}: {verdict}")
    return head + "; ".join(parts)


def _number(value: object) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else str(int(value))


# ---------------------------------------------------------------- the report


def selection_table(data: StudyData, summary: pd.DataFrame) -> pd.DataFrame:
    """One row: how honest the choice of the best trial is (:func:`selection_summary`), its
    optimism measured against the best model's test score in ``summary``."""
    test = summary.set_index("model")["test"].get("best", math.nan)
    return pd.DataFrame([selection_summary(data.study, test_score=float(test))])


def selection_record(tables: dict[str, pd.DataFrame]) -> dict[str, object]:
    """The ``selection`` table's row as :func:`selection_lines` reads it (NaN: ``None``)."""
    if "selection" not in tables or not len(tables["selection"]):
        return {}
    row = tables["selection"].iloc[0].to_dict()
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def default_out_dir(study_name: str) -> Path:
    return Path("reports") / "".join(c if c.isalnum() or c in "-_." else "_" for c in study_name)


def report(
    study: str | optuna.Study, *, storage: str | None = None, tracking_uri: str | None = None,
    out_dir: str | Path | None = None, experiment: str = DEFAULT_EXPERIMENT, from_mlflow: bool = False,
    data: str | Dataset | None = None, device: str | None = None, log_artifacts: bool = True,
) -> dict[str, pd.DataFrame]:
    """Write ``report.md``, ``trials.csv`` and PNG plots on what regularization did in ``study``.

    Files go to ``out_dir`` (default ``reports/<study>``) and, when the study logged to MLflow,
    under ``report/`` in the artifacts of its parent run. Returns the report's tables by name:
    ``summary`` (baseline vs best), ``selection`` (the winner's optimism and the spread of the
    top trials), ``trials``, ``importances``, ``on_off``, ``dropout``,
    ``penalties``, ``batch_norm``, ``early_stopping``, ``augmentation_noise``, ``model_size``
    and ``pruning``. ``data`` points at the dataset when a refit needs it and the study only
    recorded a file name (or is the :class:`~regtune.data.loading.Dataset` itself). Nothing is
    written unless the report is complete: a failure leaves no folder behind.
    """
    from regtune.analysis.plots import save_plots

    sd = load_study_data(study, storage=storage, tracking_uri=tracking_uri, experiment=experiment,
                         from_mlflow=from_mlflow)
    name = sd.study.study_name
    if not sd.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise ReportError(f"study {name!r} has no complete trial yet; nothing to report")
    out = Path(out_dir) if out_dir is not None else default_out_dir(name)
    trials = trials_table(sd)
    tables: dict[str, pd.DataFrame] = {"summary": with_without(sd, dataset=data, device=device), "trials": trials}
    tables["selection"] = selection_table(sd, tables["summary"])
    tables["importances"], importance_note = importance_table(sd.study)
    tables.update(effect_tables(trials, searched(sd.space)))
    numbers = tables["summary"].set_index("model")["trial"]
    tables["model_size"] = model_size_table(trials, numbers["best"], numbers["baseline"])
    tables["pruning"] = pruning_table(trials)
    with _new_folder(out):
        images = save_plots(sd, tables, out)
        (out / "report.md").write_text(render_markdown(sd, tables, images, importance_note), encoding="utf-8")
        trials.to_csv(out / "trials.csv", index=False)
    if log_artifacts and sd.tracker is not None and sd.parent_run_id:
        for path in (out / "report.md", out / "trials.csv", *images.values()):
            sd.tracker.log_artifact(sd.parent_run_id, path, "report")
    return tables


@contextmanager
def _new_folder(out: Path) -> Iterator[None]:
    """``out`` created for the block, and removed again (with what it holds) if the block fails
    and the folder did not exist before."""
    existed = out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        if not existed:
            shutil.rmtree(out, ignore_errors=True)
        raise


_SECTIONS = (
    ("on_off", "Each regularizer on vs off", "Validation score of the complete trials with the technique on and off."),
    ("dropout", "Dropout rate", "Validation score by dropout rate; gap = train score - validation score."),
    ("penalties", "L1 / L2 / weight decay strength", "Log-spaced strength bins vs validation score, weight "
     "sparsity (share of |w| < 1e-3) and weight norm."),
    ("batch_norm", "Batch-norm placement", "Validation score and epochs to converge (best epoch)."),
    ("early_stopping", "Early stopping", "Epochs run vs validation score vs training time."),
    ("augmentation_noise", "Augmentation and noise", "Validation score with each technique on and off."),
)


_FIELDS = {
    "on_off": set(REGULARIZER_OFF), "dropout": {"dropout"}, "penalties": set(PENALTIES), "batch_norm": {"batch_norm"},
    "early_stopping": {"early_stopping"}, "augmentation_noise": set(NOISE_AND_AUGMENTATION),
}


def render_markdown(data: StudyData, tables: dict[str, pd.DataFrame], images: dict[str, Path],
                    importance_note: str = "") -> str:
    """The report as markdown; images are linked by file name, next to ``report.md``."""
    attrs, study = data.study.user_attrs, data.study
    metric = attrs.get("metric", "score")
    metric = METRICS[metric].label if metric in METRICS else metric  # "f1 (macro)"
    searched_now = set(searched(data.space))
    lines = [f"# Regularization report: {study.study_name}", "",
             f"- dataset: {attrs.get('dataset', '?')}, metric: {metric} ({study.direction.name.lower()}), "
             f"search space: {data.space.name}",
             "- source: " + ("MLflow runs alone (study rebuilt without its Optuna storage)"
                             if data.source == "mlflow" else "Optuna storage")
             + (f"; MLflow {mask_secrets(data.tracking_uri or '')}, parent run `{data.parent_run_id}`"
                if data.parent is not None else "; no MLflow runs (weight statistics unavailable)"), ""]

    def image(key: str, alt: str) -> None:
        if key in images:
            lines.extend([f"![{alt}]({images[key].name})", ""])

    summary = tables["summary"]
    lines += ["## With vs without regularization", "",
              f"Baseline = trial with every regularizer off; best = best validation {metric}. "
              f"Gap = train - test. Test scores: {summary['source'].iloc[0]}.", "",
              markdown_table(summary.drop(columns=["source", "mlflow_run_id"])), ""]
    written = as_written_line(summary.set_index("model"), study.direction.name.lower())
    if written:
        lines += [written[0].upper() + written[1:] + ".", ""]
    image("with_without", "train, validation and test score, baseline vs best")
    if "selection" in tables and len(tables["selection"]):
        lines += ["## How honest the selection is", "",
                  "The best of many noisy validation scores is biased upward; trials within one standard error "
                  "of the best are a tie the search could not break.", ""]
        lines += [f"- {line}" for line in selection_lines(selection_record(tables), format_score)] + [""]
    image("learning_curves", "per-epoch losses of the baseline and the best trial")
    lines += ["## Optimization history", ""]
    image("optimization_history", "optimization history")
    trials = tables["trials"]
    n_complete = int((trials["state"] == "COMPLETE").sum()) if len(trials) else 0
    lines += ["## Parameter importances", "",
              f"fANOVA (seed 0) over the params every complete trial has, from n = {n_complete} complete trials.", ""]
    lines += [importance_note, ""] if importance_note else [markdown_table(tables["importances"]), ""]
    if not importance_note and n_complete < FEW_FOR_IMPORTANCE:
        lines += [f"Caveat: importances from fewer than {FEW_FOR_IMPORTANCE} complete trials (n = {n_complete}) are "
                  "mostly noise; do not rank the techniques by them.", ""]
    image("param_importances", "parameter importances")
    lines += ["## What each technique did", ""]
    for key, title, what in _SECTIONS:
        lines += [f"### {title}", ""]
        if len(tables[key]):
            lines += [what + " Column `trials` is n, the complete trials behind each row.", "",
                      markdown_table(tables[key]), ""]
            note = few_trials_caveat(tables[key])
            lines += [note, ""] if note else []
        else:
            lines += [f"Not searched by the space '{data.space.name}'." if not searched_now & _FIELDS[key] else
                      "No complete trial to compare.", ""]
    image("effects", "regularization strength vs validation score")
    lines += ["## Model size", "", "Parameters, and effective parameters (|w| >= 1e-3), of the trial's networks "
              "(mean over folds).", "", markdown_table(tables["model_size"]), "",
              "## Pruning", "", "Epochs saved = max_epochs - epochs run, summed over pruned trials.", "",
              markdown_table(tables["pruning"]), "",
              "## Trials", "", "All columns: `trials.csv`.", "", markdown_table(_trials_view(tables["trials"],
                                                                                          searched_now)), ""]
    return "\n".join(lines)


def few_trials_caveat(table: pd.DataFrame) -> str:
    """One caveat line when a row of an effect table averages fewer than :data:`FEW_TRIALS` trials."""
    if "trials" not in table or not len(table):
        return ""
    few = table["trials"] < FEW_TRIALS
    if not few.any():
        return ""
    smallest = int(table.loc[few, "trials"].min())
    return (f"Caveat: {int(few.sum())} of {len(table)} rows rest on fewer than {FEW_TRIALS} trials (smallest "
            f"n = {smallest}); their means and on/off differences are noise, not evidence.")


def _trials_view(trials: pd.DataFrame, techniques: set[str]) -> pd.DataFrame:
    cols = ["number", "state", "value", "train_score", "epochs_run", "best_epoch", "regularizers",
            *[k for k in REGULARIZER_OFF if k in techniques and k in trials]]
    return trials[[c for c in cols if c in trials]]
