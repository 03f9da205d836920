"""How honest the study's choice is: the winner's optimism and whether its lead is real.

The best of many noisy trial scores is biased upward (each score is measured on the same rows
it was selected on), and the search cannot rank trials whose scores differ by less than their
own noise. Both show here: the winner's validation score against its test score on the held-
out test part (optimism), the spread of the top trials, the best trial's fold standard error,
and how many trials lie within one such standard error of the best, which the search could
not tell apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["FOLD_SCORES_ATTR", "TOP", "selection_lines", "selection_metrics", "selection_summary"]

FOLD_SCORES_ATTR = "fold_scores"  # the trial's user attr: each fold's score (tuning.trial.run_objective)
TOP = 5  # the top trials whose spread is shown


def selection_summary(study: optuna.Study, *, test_score: float | None = None, top: int = TOP,
                      trials: Sequence[FrozenTrial] | None = None) -> dict[str, Any]:
    """The selection's honesty figures (JSON values; ``None`` where there is nothing to go on).

    ``optimism`` is how much better the winner looked on validation than on the test part:
    validation minus test for a score to maximize, test minus validation for a loss, so a
    positive number always means "looked better than it is". ``best_se`` is the standard
    deviation of the best trial's fold scores over the square root of their count (``None``
    with one validation split); ``within_one_se`` counts the complete trials, the best
    included, within one ``best_se`` of the best value.
    """
    complete = [t for t in (trials if trials is not None else study.get_trials(deepcopy=False))
                if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    ranked = sorted(complete, key=lambda t: -t.value if maximize else t.value)
    out: dict[str, Any] = {"n_complete": len(ranked), "best_trial": None, "best_value": None, "test": None,
                           "optimism": None, "top": 0, "top_mean": None, "top_std": None, "best_se": None,
                           "n_folds": None, "within_one_se": None}
    if not ranked:
        return out
    best = ranked[0]
    head = np.array([t.value for t in ranked[:top]], dtype=float)
    out.update(best_trial=best.number, best_value=float(best.value), top=len(head), top_mean=float(head.mean()),
               top_std=float(head.std(ddof=1)) if len(head) > 1 else None)
    if test_score is not None and math.isfinite(test_score):
        out["test"] = float(test_score)
        out["optimism"] = float(best.value - test_score) if maximize else float(test_score - best.value)
    se, n_folds = _fold_se(best)
    if se is not None:
        out.update(best_se=se, n_folds=n_folds, within_one_se=sum(abs(t.value - best.value) <= se for t in ranked))
    return out


def _fold_se(trial: FrozenTrial) -> tuple[float | None, int | None]:
    """The standard error of the trial's fold mean: from its fold scores, else (a study rebuilt
    from MLflow) from the ``fold_sd`` its run logged and its ``n_folds``."""
    folds = [float(s) for s in trial.user_attrs.get(FOLD_SCORES_ATTR) or []]
    if len(folds) > 1:
        return float(np.std(folds, ddof=1) / math.sqrt(len(folds))), len(folds)
    sd, n = trial.user_attrs.get("fold_sd"), trial.user_attrs.get("n_folds")
    if sd is not None and n and n > 1 and math.isfinite(sd):
        return float(sd) / math.sqrt(n), int(n)
    return None, None


def selection_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """The figures MLflow logs on the study's parent run (``selection_*``; only those known)."""
    keys = ("optimism", "top_mean", "top_std", "best_se", "within_one_se", "top")
    return {f"selection_{k}": float(summary[k]) for k in keys if summary.get(k) is not None}


def selection_lines(summary: Mapping[str, Any], fmt: Any = "{:.4g}".format) -> list[str]:
    """The selection in words, for the console summary and the report (``fmt`` formats a score)."""
    if summary.get("best_value") is None:
        return []
    lines = []
    if summary.get("optimism") is not None:
        lines.append(f"the winner's validation score {fmt(summary['best_value'])} vs its test score "
                     f"{fmt(summary['test'])}: optimism {summary['optimism']:+.4f} (validation minus test)")
    if summary.get("top_std") is not None:
        lines.append(f"top {int(summary['top'])} trials: validation {fmt(summary['top_mean'])} ± {summary['top_std']:.4f}")
    if summary.get("best_se") is not None:
        n = int(summary["within_one_se"])
        lines.append(f"best trial's standard error over its {int(summary['n_folds'])} folds: {summary['best_se']:.4f}; "
                     + (f"the search could not tell {n} trials apart (within one standard error of the best)"
                        if n > 1 else "no other trial is within one standard error of the best"))
    else:
        lines.append("one validation split: no fold standard error to tell trials apart by (use cv >= 2 for it)")
    return lines
