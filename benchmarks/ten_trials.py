"""Is a 10-trial study already as good as the best untuned default?

    python benchmarks/ten_trials.py [--seeds 3] [--datasets titanic,...] [--trials 10]

``RegTuneClassifier/Regressor(n_trials=10)`` with the default space (the baseline, then the
shipped priors, then the sampler) and every other default (``cv="auto"``, ensemble of up to 5),
no timeout, on the unseen datasets of ``generalization.py`` with its fixed test split. Its test
score is compared with the untuned columns of ``results/generalization/latest.json`` (HistGB,
logistic / ridge, sklearn MLP, RealMLP-TD: mean over their seeds) on the same split. One thread.
Results: ``results/ten_trials/<output>.json``; a table on stdout.
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
import optuna  # noqa: E402
import torch  # noqa: E402
from _common import load, machine_info, markdown_table, read, result_path, save  # noqa: E402
from datasets import DATASETS, fit_tuned, split, test_score  # noqa: E402
from datasets import load as load_table  # noqa: E402

torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore")

NAME = "ten_trials"
DEFAULTS = ("hgb", "linear", "mlp")  # the scikit-learn defaults of generalization.py


def run(name: str, seed: int, n_trials: int) -> dict[str, Any]:
    table = load_table(name)
    X_tr, X_te, y_tr, y_te, fingerprint = split(table)
    clf = table.spec.task == "classification"
    model, _, seconds = fit_tuned(X_tr, y_tr, clf, n_trials=n_trials, tracking_uri="off", device="cpu",
                                  random_state=seed)
    test = test_score(y_te, model.predict(X_te), clf)
    return {"dataset": name, "seed": seed, "test": test, "seconds": seconds, "split": fingerprint,
            "load1": load()[0]}


def references(fingerprints: dict[str, str]) -> dict[str, dict[str, float]]:
    """Mean test score of each untuned column per dataset, from generalization/latest.json."""
    saved = read(result_path("generalization"))
    out: dict[str, dict[str, list[float]]] = {}
    for r in saved["runs"]:
        if "score" in r and r.get("split") == fingerprints.get(r["dataset"]) and r["method"] in (*DEFAULTS, "realmlp"):
            out.setdefault(r["dataset"], {}).setdefault(r["method"], []).append(r["score"])
    return {d: {m: float(np.mean(v)) for m, v in ms.items()} for d, ms in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    unseen = [name for name, spec in DATASETS.items() if not spec.seen]
    parser.add_argument("--datasets", type=lambda s: s.split(","), default=unseen)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--output", default="latest", help="results/ten_trials/<output>.json")
    args = parser.parse_args()
    rows = []
    for seed in range(args.seeds):
        for name in args.datasets:
            row = run(name, seed, args.trials)
            rows.append(row)
            print(f"seed {seed} {name:<10} test {row['test']:.4f} ({row['seconds']:.0f} s)", flush=True)
            save(result_path(NAME, args.output),
                 {"benchmark": NAME, "trials": args.trials, "machine": machine_info(), "rows": rows})
    refs = references({r["dataset"]: r["split"] for r in rows})
    table, above = [], {"best default": 0, "realmlp": 0}
    for name in args.datasets:
        ours = float(np.mean([r["test"] for r in rows if r["dataset"] == name]))
        ref = refs.get(name, {})
        best = max((ref[m] for m in DEFAULTS if m in ref), default=float("nan"))
        above["best default"] += ours > best
        above["realmlp"] += ours > ref.get("realmlp", float("nan"))
        table.append([name, f"{ours:.4f}", f"{best:.4f}", f"{ours - best:+.4f}", f"{ref.get('realmlp', float('nan')):.4f}",
                      f"{np.mean([r['seconds'] for r in rows if r['dataset'] == name]):.0f}"])
    print(markdown_table(["dataset", f"regtune {args.trials} trials", "best sklearn default", "diff", "RealMLP-TD",
                          "seconds"], table))
    print(f"above the best sklearn default on {above['best default']} of {len(args.datasets)}; "
          f"above RealMLP-TD on {above['realmlp']} of {len(args.datasets)}")


if __name__ == "__main__":
    main()
