"""Honest selection: does scoring trials at one common epoch, with folds chosen by the budget, pay?

    python benchmarks/selection_ab.py [--datasets pima,oj,biopsy,concrete] [--seeds 3] [--budget 30]
                                      [--variants current,new] [--output latest]

Variants (the same budget, seeds and fixed test split as ``generalization.py``; its protocol):

- ``current``: ``cv`` as ``"auto"`` resolved before this change (5 folds under 500 rows in the
  search part, 3 under 1,000, else one split) and each fold scored at its own best epoch.
- ``new``: ``cv="auto"`` with the timeout (``regtune.data.split.auto_plan``: the most folds and
  repeats that still fit ``AUTO_MIN_TRIALS`` trials) and every fold scored at the one epoch
  count the refit trains (``regtune.tuning.trial.common_epoch_score``).
- ``common``: the folds of ``current``, the score of ``new``: what the score alone does
  (``--variants current,common --output scoring``).
- ``cvK`` / ``cvRxK``: ``new`` with a fixed ``cv`` (e.g. ``cv3``, ``cv2x3``): folds above the
  row rule's 1,000 rows (``--variants new,cv3 --output large``).

Per run: the test score of the refit winner, the winner's validation score (``best_score_``) and
its optimism (validation minus test), the folds used, trials run, and the share of ``max_epochs``
an average trial trained (which calibrates ``regtune.tuning.budget.EPOCH_SHARE``). For
``current``, the winner's common-epoch score is recorded too (``val_common``). Runs alternate
A/B per dataset and seed. One thread, like ``generalization.py``. Results:
``results/selection_ab/<output>.json``; a table on stdout.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import argparse  # noqa: E402
import warnings  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import load, machine_info, markdown_table, result_path, save  # noqa: E402
from datasets import fit_tuned, split, test_score  # noqa: E402
from datasets import load as load_table  # noqa: E402

import regtune.tuning.trial as trial_module  # noqa: E402
from regtune.data.split import AUTO_CV  # noqa: E402
from regtune.tuning.trial import FoldScore  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
NAME = "selection_ab"
COMMON_EPOCH = trial_module.common_epoch_score


def own_best_epoch(histories: Any, best_epochs: Any, early_stopping: bool) -> FoldScore:
    """The trial score before this change: each fold at its own best epoch."""
    scores = tuple(float(h[b]["val_score"]) for h, b in zip(histories, best_epochs, strict=True))
    return FoldScore(float(np.mean(scores)), round(float(np.mean(best_epochs))), scores)


def run(name: str, variant: str, seed: int, budget: float) -> dict[str, Any]:
    table = load_table(name)
    X_tr, X_te, y_tr, y_te, _ = split(table)
    clf = table.spec.task == "classification"
    n_search = len(y_tr)
    cv: Any = "auto"
    if variant in ("current", "common"):
        cv = next((k for limit, k in AUTO_CV if n_search < limit), 1)
    elif variant.startswith("cv"):  # a fixed plan: "cv3" is cv=3, "cv2x3" two repeats of 3 folds
        cv = variant[2:]
    trial_module.common_epoch_score = own_best_epoch if variant == "current" else COMMON_EPOCH
    model, est, seconds = fit_tuned(X_tr, y_tr, clf, timeout=budget, n_trials=1000, tracking_uri="off", device="cpu",
                                    random_state=seed, cv=cv)
    test = test_score(y_te, model.predict(X_te), clf)
    study = est.study_
    ran = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED", "FAIL")]
    complete = [t for t in ran if t.state.name == "COMPLETE"]
    best = study.best_trial
    max_epochs = max((len(t.intermediate_values) for t in ran), default=1)
    fp = study.user_attrs.get("regtune.fingerprint", {})
    selection = getattr(est, "selection_", {}) or {}
    return {"dataset": name, "variant": variant, "seed": seed, "test": test, "val": float(est.best_score_),
            "optimism": float(est.best_score_) - test,
            "val_own_best": best.user_attrs.get("fold_best_score"), "folds": fp.get("folds"),
            "n_trials": len(ran), "n_complete": len(complete),
            "epoch_share": float(np.mean([len(t.intermediate_values) for t in ran]) / max_epochs),
            "within_1se": selection.get("within_one_se"), "seconds": seconds, "load1": load()[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default="pima,oj,biopsy,concrete")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--variants", default="current,new")
    parser.add_argument("--output", default="latest", help="results/selection_ab/<output>.json")
    args = parser.parse_args()
    variants = tuple(args.variants.split(","))
    runs = []
    for name in args.datasets.split(","):
        for seed in range(args.seeds):
            order = variants if seed % 2 == 0 else variants[::-1]
            for variant in order:
                rec = run(name, variant, seed, args.budget)
                runs.append(rec)
                print(f"{name} seed {seed} {variant}: test {rec['test']:.4f} val {rec['val']:.4f} "
                      f"folds {rec['folds']} trials {rec['n_trials']} ({rec['seconds']:.0f} s)", flush=True)
                save(result_path(NAME, args.output), {"benchmark": NAME, "budget": args.budget,
                                                      "variants": variants, "machine": machine_info(), "runs": runs})
    rows = []
    for name in args.datasets.split(","):
        for variant in variants:
            rs = [r for r in runs if r["dataset"] == name and r["variant"] == variant]
            t, o = np.array([r["test"] for r in rs]), np.array([r["optimism"] for r in rs])
            rows.append([name, variant, f"{t.mean():.4f} ± {t.std(ddof=1):.4f}", f"{o.mean():+.4f} ± {o.std(ddof=1):.4f}",
                         ",".join(str(r["folds"]) for r in rs), f"{np.mean([r['n_trials'] for r in rs]):.0f}",
                         f"{np.mean([r['epoch_share'] for r in rs]):.2f}"])
    print(markdown_table(["dataset", "variant", "test", "optimism (val - test)", "folds", "trials", "epoch share"],
                         rows))


if __name__ == "__main__":
    main()
