"""Does tuning regularization pay? regtune's tuned net against defaults and a hand-written search.

    python benchmarks/generalization.py [--quick] [--budget 90] [--seeds 3] [--settings a,b] [--resume]

Per dataset setting and seed, every contender trains on the same training rows and is scored
once on the same held-out test rows (20 %, stratified, fixed: ``random_state=0``); the seed
changes only the contenders' own randomness (search, initialization, batches). The two searches
get the same wall budget (``--budget`` seconds, then one refit each):

- regtune: ``regtune.tuning.tuner.tune`` with the product defaults (space ``default``, TPE, Hyperband,
  ``cv="auto"``), in-memory storage, no MLflow.
- Optuna + skorch: a hand-written TPE search over learning rate, weight decay (AdamW), dropout
  and width of a 2-layer MLP, 60 epochs, one hold-out validation split, then a refit.
- defaults: ``MLPClassifier``/``MLPRegressor``, ``HistGradientBoosting*``,
  ``LogisticRegression``/``Ridge`` (scaled features), and the untuned, unregularized net of
  the search space's baseline (its default architecture and optimizer, every regularizer off).

Scores: accuracy (classification) and R^2 (diabetes). Results are saved after every contender,
so a long run killed midway keeps what finished; ``--resume`` skips what is already saved.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
import traceback
import warnings
from typing import Any

import numpy as np
import optuna
import torch
from _common import RESULTS, load, machine_info, markdown_table, save
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from regtune import RegularizedNetClassifier, RegularizedNetRegressor
from regtune.config import no_regularization
from regtune.data.loading import Dataset, load_dataset
from regtune.space.space import SearchSpace
from regtune.tuning.tuner import TuneSettings, tune

NAME = "generalization"
# setting -> (built-in dataset, share of the training rows kept)
SETTINGS: dict[str, tuple[str, float]] = {
    "breast_cancer": ("breast_cancer", 1.0),
    "wine": ("wine", 1.0),
    "digits": ("digits", 1.0),
    "diabetes": ("diabetes", 1.0),
    "digits 10%": ("digits", 0.10),
    "digits 25%": ("digits", 0.25),
}
CONTENDERS = ("regtune", "optuna+skorch", "untuned net", "MLP default", "HGB default", "linear default")
SKORCH_EPOCHS = 60


def split(name: str, share: float) -> tuple[Dataset, Any, Any]:
    """Fixed test split (and fixed training subsample); the same for every seed and contender."""
    ds = load_dataset(name)
    strat = ds.y if ds.task == "classification" else None
    X_tr, X_te, y_tr, y_te = train_test_split(ds.X, ds.y, test_size=0.2, random_state=0, stratify=strat)
    if share < 1:
        strat = y_tr if ds.task == "classification" else None
        X_tr, _, y_tr, _ = train_test_split(X_tr, y_tr, train_size=share, random_state=0, stratify=strat)
    return dataclasses.replace(ds, X=X_tr, y=y_tr), X_te, y_te


def score(task: str, y_true: Any, y_pred: Any) -> float:
    return float(accuracy_score(y_true, y_pred) if task == "classification" else r2_score(y_true, y_pred))


REGTUNE_OPTIONS: dict[str, Any] = {}  # --regtune-cv / --regtune-space override the product defaults


def run_regtune(train: Dataset, X_te: Any, y_te: Any, seed: int, budget: float) -> dict[str, Any]:
    settings = TuneSettings(
        **REGTUNE_OPTIONS, n_trials=500, timeout=budget, tracking_uri="off", storage=":memory:", test_size=0.0, seed=seed,
        progress=False, log_model=False, device="cpu",
    )
    result = tune(train, settings=settings)
    X = result.preprocessor.transform(X_te) if result.preprocessor is not None else X_te.to_numpy(np.float32)
    pred = result.best_estimator.predict(X)
    return {"score": score(train.task, y_te, pred), "n_trials": sum(result.counts.values()),
            "counts": result.counts, "best_params": result.best_params, "val": result.best_value}


class _MLP(nn.Sequential):
    def __init__(self, d: int, width: int, dropout: float, n_out: int) -> None:
        super().__init__(nn.Linear(d, width), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, n_out))


def run_optuna_skorch(train: Dataset, X_te: Any, y_te: Any, seed: int, budget: float) -> dict[str, Any]:
    """What a practitioner writes by hand: TPE over lr, weight decay, dropout, width; one split."""
    from skorch import NeuralNetClassifier, NeuralNetRegressor

    clf = train.task == "classification"
    scaler = StandardScaler().fit(train.X.to_numpy(np.float64))
    X = scaler.transform(train.X.to_numpy(np.float64)).astype(np.float32)
    Xt = scaler.transform(X_te.to_numpy(np.float64)).astype(np.float32)
    if clf:
        classes, y = np.unique(train.y.to_numpy(), return_inverse=True)
        y = y.astype(np.int64)
    else:
        y_raw = train.y.to_numpy(np.float64)
        mean, std = y_raw.mean(), y_raw.std()
        y = ((y_raw - mean) / std).astype(np.float32).reshape(-1, 1)
    idx = np.arange(len(y))
    tr, va = train_test_split(idx, test_size=0.2, random_state=seed, stratify=y if clf else None)

    def build(p: dict[str, Any]) -> Any:
        cls = NeuralNetClassifier if clf else NeuralNetRegressor
        return cls(
            _MLP, module__d=X.shape[1], module__width=p["width"], module__dropout=p["dropout"],
            module__n_out=len(classes) if clf else 1, criterion=nn.CrossEntropyLoss if clf else nn.MSELoss,
            optimizer=torch.optim.AdamW, optimizer__weight_decay=p["weight_decay"], lr=p["lr"], batch_size=64,
            max_epochs=SKORCH_EPOCHS, train_split=None, iterator_train__shuffle=True, device="cpu", verbose=0,
            callbacks__print_log=None,
        )

    def predict(net: Any, data: np.ndarray) -> np.ndarray:
        out = net.predict(data)
        return classes[out] if clf else out.ravel() * std + mean

    def objective(trial: optuna.Trial) -> float:
        p = {"lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
             "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
             "dropout": trial.suggest_float("dropout", 0.0, 0.5),
             "width": trial.suggest_int("width", 32, 512, log=True)}
        torch.manual_seed(seed * 1000 + trial.number)
        net = build(p).fit(X[tr], y[tr])
        y_va = classes[y[va]] if clf else y[va].ravel() * std + mean
        return score(train.task, y_va, predict(net, X[va]))

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, timeout=budget)
    torch.manual_seed(seed)
    best = build(study.best_params).fit(X, y)
    return {"score": score(train.task, y_te, predict(best, Xt)), "n_trials": len(study.trials),
            "best_params": study.best_params, "val": study.best_value}


def run_untuned(train: Dataset, X_te: Any, y_te: Any, seed: int, budget: float) -> dict[str, Any]:
    """The search space's own baseline: its default architecture and optimizer, no regularizer."""
    space = SearchSpace.from_yaml(REGTUNE_OPTIONS.get("space", "default"))
    config = no_regularization(space.to_config(space.baseline_params()))
    cls = RegularizedNetClassifier if train.task == "classification" else RegularizedNetRegressor
    net = cls(**config.to_dict(), device="cpu", random_state=seed)
    net.fit(train.X.to_numpy(np.float32), train.y.to_numpy())
    return {"score": score(train.task, y_te, net.predict(X_te.to_numpy(np.float32))),
            "config": {k: v for k, v in config.to_dict().items() if k in ("hidden_layer_sizes", "max_epochs",
                                                                          "batch_size", "lr")}}


def _sklearn(make: Any):  # noqa: ANN202
    def run(train: Dataset, X_te: Any, y_te: Any, seed: int, budget: float) -> dict[str, Any]:
        model = make(train.task == "classification", seed).fit(train.X.to_numpy(np.float64), train.y.to_numpy())
        return {"score": score(train.task, y_te, model.predict(X_te.to_numpy(np.float64)))}

    return run


RUNNERS = {
    "regtune": run_regtune,
    "optuna+skorch": run_optuna_skorch,
    "untuned net": run_untuned,
    "MLP default": _sklearn(lambda clf, seed: make_pipeline(
        StandardScaler(), MLPClassifier(random_state=seed) if clf else MLPRegressor(random_state=seed))),
    "HGB default": _sklearn(lambda clf, seed: (HistGradientBoostingClassifier if clf else
                                               HistGradientBoostingRegressor)(random_state=seed)),
    "linear default": _sklearn(lambda clf, seed: make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=1000) if clf else Ridge())),
}


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for setting in SETTINGS:
        for name in CONTENDERS:
            scores = [r["score"] for r in runs if r["setting"] == setting and r["contender"] == name and "score" in r]
            if scores:
                secs = [r["seconds"] for r in runs if r["setting"] == setting and r["contender"] == name and "score" in r]
                out.setdefault(setting, {})[name] = {
                    "mean": float(np.mean(scores)), "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
                    "min": float(np.min(scores)), "max": float(np.max(scores)), "n": len(scores),
                    "seconds": float(np.mean(secs)),
                }
    return out


def table(summary: dict[str, Any]) -> str:
    rows = []
    for setting, by in summary.items():
        row: list[Any] = [setting]
        for name in CONTENDERS:
            s = by.get(name)
            row.append(f"{s['mean']:.3f} ± {s['std']:.3f}" if s else "")
        defaults = [by[n]["mean"] for n in ("MLP default", "HGB default", "linear default") if n in by]
        rt, sk = by.get("regtune"), by.get("optuna+skorch")
        row.append("yes" if rt and sk and rt["mean"] > sk["mean"] else "no" if rt and sk else "")
        row.append("yes" if rt and defaults and rt["mean"] >= max(defaults) else "no" if rt and defaults else "")
        rows.append(row)
    return markdown_table(["setting", *CONTENDERS, "beats search", "beats best default"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 s budget, 1 seed")
    parser.add_argument("--budget", type=float, default=None, help="seconds per search (default 90; quick 20)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds (default 3; quick 1)")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated subset of the settings")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: faster for these "
                        "small nets, see training_speed)")
    parser.add_argument("--regtune-cv", default=None, help="regtune's cv (default: the product's 'auto')")
    parser.add_argument("--regtune-space", default=None, help="regtune's search space (default: 'default')")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated subset")
    parser.add_argument("--resume", action="store_true", help="keep saved runs and skip them")
    parser.add_argument("--output", default=NAME, help="results file name under benchmarks/results/")
    args = parser.parse_args()
    budget = args.budget or (20.0 if args.quick else 90.0)
    seeds = args.seeds or (1 if args.quick else 3)
    settings = [s.strip() for s in args.settings.split(",")]
    contenders = [c.strip() for c in args.contenders.split(",")]
    if args.regtune_cv is not None:
        REGTUNE_OPTIONS["cv"] = "auto" if args.regtune_cv == "auto" else int(args.regtune_cv)
    if args.regtune_space is not None:
        REGTUNE_OPTIONS["space"] = args.regtune_space
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(args.threads)
    os.chdir(tempfile.mkdtemp(prefix="regtune-bench-"))  # tune() must never write into the checkout

    path = RESULTS / f"{args.output}.json"
    runs: list[dict[str, Any]] = []
    if args.resume and path.exists():
        runs = [r for r in json.loads(path.read_text()).get("runs", []) if "score" in r]
    payload: dict[str, Any] = {"benchmark": NAME, "budget_s": budget, "seeds": seeds, "settings": settings,
                               "threads": args.threads, "regtune_options": dict(REGTUNE_OPTIONS),
                               "machine": machine_info(), "runs": runs}
    done = {(r["setting"], r["seed"], r["contender"]) for r in runs}
    start = time.perf_counter()
    for seed in range(seeds):  # seed-major: a cut-short run still covers every setting
        for setting in settings:
            train, X_te, y_te = split(*SETTINGS[setting])
            for name in contenders:
                if (setting, seed, name) in done:
                    continue
                t0 = time.perf_counter()
                try:
                    rec = RUNNERS[name](train, X_te, y_te, seed, budget)
                except Exception as exc:  # one contender failing must not lose the others
                    rec = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
                rec.update(setting=setting, seed=seed, contender=name, seconds=time.perf_counter() - t0,
                           load1=load()[0], n_train=len(train.y))
                runs.append(rec)
                payload["summary"] = summarize(runs)
                payload["elapsed_s"] = time.perf_counter() - start
                save(args.output, payload)
                shown = f"{rec['score']:.4f}" if "score" in rec else rec["error"]
                print(f"seed {seed}  {setting:<14} {name:<15} {shown}  ({rec['seconds']:.0f} s, "
                      f"{rec.get('n_trials', '')} trials, load {rec['load1']})", flush=True)
    payload["machine"]["load_average_end"] = load()
    save(args.output, payload)
    print(f"\nTest score, mean ± std over seeds (budget {budget:.0f} s per search)")
    print(table(payload["summary"]))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
