"""Which final model generalizes best after the same search: the best trial, a greedy ensemble
of the top trials, or the best configuration refit with several seeds?

    python benchmarks/final_model_ab.py [--datasets titanic,pima,...] [--seeds 2] [--budget 30]

One search per dataset and seed: ``RegTuneClassifier/Regressor(timeout=budget, ensemble=5)``
with the default space (what ``generalization.py`` runs, plus the top trials' out-of-fold
predictions kept). From that one search, three final models are scored on the benchmark's
fixed test split:

- ``best``: ``best_estimator_``, the best trial refit on the training part (what regtune
  returns by default);
- ``greedy5``: ``ensemble_``, greedy ensemble selection (Caruana et al. 2004) over the top 5
  trials' out-of-fold predictions, each selected trial refit;
- ``seeds5``: the best trial's configuration refit 5 times with different seeds, its
  probabilities (classes) or predictions (regression) averaged: a deep ensemble of one
  configuration (Lakshminarayanan et al. 2017), which lowers the variance of the refit
  without trusting the ranking of more trials.

Everything runs on one thread. Results: ``results/final_model_ab/<output>.json``; table on stdout.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from _common import load, machine_info, result_path, save  # noqa: E402
from datasets import fit_tuned, split, test_score  # noqa: E402
from datasets import load as load_table  # noqa: E402
from sklearn.base import clone  # noqa: E402

torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore")

NAME = "final_model_ab"
DATASETS = ("titanic", "pima", "biopsy", "credit", "oj", "attrition", "concrete", "ames", "wage", "saratoga")
N_SEEDS = 5


def one(name: str, seed: int, budget: float) -> dict[str, Any]:
    table = load_table(name)
    X_tr, X_te, y_tr, y_te, _ = split(table)
    clf = table.spec.task == "classification"
    pipe, est, search = fit_tuned(X_tr, y_tr, clf, timeout=budget, n_trials=1000, tracking_uri="off", device="cpu",
                                  random_state=seed, ensemble=5)
    prep = pipe[0]
    F_tr, F_te = est._features(prep.transform(X_tr)), est._features(prep.transform(X_te))

    def score(y_true: Any, pred: Any) -> float:
        return test_score(y_true, pred, clf)

    best = est.best_estimator_
    row = {"dataset": name, "seed": seed, "search_s": search, "load": load()[0],
           "trials": int(sum(t.state.name in ("COMPLETE", "PRUNED", "FAIL") for t in est.study_.trials)),
           "best": float(score(y_te, best.predict(F_te)))}
    row["greedy5"] = float(score(y_te, est.ensemble_.predict(F_te))) if est.ensemble_ is not None else row["best"]
    start = time.perf_counter()
    members = [best] + [clone(best).set_params(random_state=1000 * seed + k).fit(F_tr, y_tr)
                        for k in range(1, N_SEEDS)]
    row["seeds5_refit_s"] = time.perf_counter() - start
    if clf:
        proba = np.mean([m.predict_proba(F_te) for m in members], axis=0)
        row["seeds5"] = float(score(y_te, best.classes_[proba.argmax(axis=1)]))
    else:
        row["seeds5"] = float(score(y_te, np.mean([m.predict(F_te) for m in members], axis=0)))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=lambda s: s.split(","), default=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--output", default="latest", help="results/final_model_ab/<output>.json")
    args = parser.parse_args()
    rows = []
    for name in args.datasets:
        for seed in range(args.seeds):
            row = one(name, seed, args.budget)
            rows.append(row)
            print(f"{name} s{seed} best {row['best']:.4f} greedy5 {row['greedy5']:.4f} seeds5 {row['seeds5']:.4f} "
                  f"trials {row['trials']} search {row['search_s']:.0f} s, 4 seed refits {row['seeds5_refit_s']:.1f} s",
                  flush=True)
            save(result_path(NAME, args.output),
                 {"benchmark": NAME, "budget": args.budget, "machine": machine_info(), "rows": rows})
    frame = pd.DataFrame(rows)
    table = frame.groupby("dataset")[["best", "greedy5", "seeds5"]].mean()
    print(table.round(4).to_markdown())
    for col in ("greedy5", "seeds5"):
        diff = table[col] - table["best"]
        print(f"{col} vs best: above on {(diff > 0).sum()}, equal {(diff == 0).sum()}, below {(diff < 0).sum()} "
              f"of {len(diff)}; mean {diff.mean():+.4f}")


if __name__ == "__main__":
    main()
