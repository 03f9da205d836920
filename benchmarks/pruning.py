"""Pruning: epochs saved by Hyperband and the median rule, and what it costs in best score.

    python benchmarks/pruning.py [--quick] [--seeds 3] [--trials 40] [--dataset digits] [--space default]
                                 [--pruners none,hyperband,median,sha] [--output latest]

For each seed, the same study (same sampler seed, same trial count, ``cv=1``) runs with
``pruner="hyperband"``, ``"median"``, ``"sha"`` and ``"none"`` (interleaved). Reported per run:
epochs trained over all trials (sum of ``len(trial.intermediate_values)``), best validation
score, test score of the refit best configuration, wall seconds. Epochs and scores do not
depend on the machine's load (one torch thread, seeded): only the wall seconds do.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from typing import Any

import numpy as np
import optuna
import torch
from _common import load, machine_info, markdown_table, result_path, save

from regtune.tuning.settings import TuneSettings
from regtune.tuning.tuner import tune

NAME = "pruning"
PRUNERS = ("none", "hyperband", "median", "sha")


def run(dataset: str, space: str, trials: int, pruner: str, seed: int) -> dict[str, Any]:
    settings = TuneSettings(space=space, n_trials=trials, pruner=pruner, cv=1, seed=seed, storage=":memory:",
                            tracking_uri="off", progress=False, log_model=False, device="cpu")
    t0 = time.perf_counter()
    result = tune(dataset, settings=settings)
    seconds = time.perf_counter() - t0
    study = result.study
    return {
        "epochs": sum(len(t.intermediate_values) for t in study.trials),
        "best_val": result.best_value,
        "test": float(result.scores.loc["best", "test"]),
        "seconds": seconds,
        "counts": result.counts,
        "load1": load()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 8 trials, space minimal")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--trials", type=int, default=None, help="default 40 (quick: 8)")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--space", default=None, help="search space (default 'default'; quick 'minimal')")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pruners", default="none,hyperband,median,sha", help="'none' first")
    parser.add_argument("--output", default="latest", help=f"results/{NAME}/<output>.json")
    args = parser.parse_args()
    pruners = tuple(p.strip() for p in args.pruners.split(","))
    seeds = args.seeds or (1 if args.quick else 3)
    trials = args.trials or (8 if args.quick else 40)
    space = args.space or ("minimal" if args.quick else "default")
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(args.threads)
    os.chdir(tempfile.mkdtemp(prefix="regtune-pruning-"))

    payload: dict[str, Any] = {"benchmark": NAME, "dataset": args.dataset, "space": space, "trials": trials,
                               "seeds": seeds, "pruners": list(pruners), "threads": args.threads, "machine": machine_info(), "runs": []}
    for seed in range(seeds):
        k = seed % len(pruners)
        order = pruners[k:] + pruners[:k]  # rotate who runs first
        for pruner in order:
            rec = {"seed": seed, "pruner": pruner, **run(args.dataset, space, trials, pruner, seed)}
            payload["runs"].append(rec)
            save(result_path(NAME, args.output), payload)
            print(f"seed {seed}  {pruner:<10} epochs {rec['epochs']:5d}  best val {rec['best_val']:.4f}  "
                  f"test {rec['test']:.4f}  {rec['seconds']:.0f} s  {rec['counts']}", flush=True)
    payload["summary"] = summarize(payload["runs"])
    payload["machine"]["load_average_end"] = load()
    path = save(result_path(NAME, args.output), payload)
    print_table(payload)
    print(f"\nwrote {path}")


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    base = {r["seed"]: r for r in runs if r["pruner"] == "none"}
    for pruner in PRUNERS:
        rs = [r for r in runs if r["pruner"] == pruner]
        if not rs:
            continue
        ratios = [base[r["seed"]]["epochs"] / r["epochs"] for r in rs if r["seed"] in base]
        out[pruner] = {
            "epochs_mean": float(np.mean([r["epochs"] for r in rs])),
            "fewer_epochs_x": float(np.mean(ratios)) if ratios else None,
            "fewer_epochs_x_per_seed": ratios,
            "best_val_mean": float(np.mean([r["best_val"] for r in rs])),
            "best_val_std": float(np.std([r["best_val"] for r in rs], ddof=1)) if len(rs) > 1 else 0.0,
            "test_mean": float(np.mean([r["test"] for r in rs])),
            "test_std": float(np.std([r["test"] for r in rs], ddof=1)) if len(rs) > 1 else 0.0,
            "seconds_mean": float(np.mean([r["seconds"] for r in rs])),
            "n": len(rs),
        }
    return out


def print_table(payload: dict[str, Any]) -> None:
    rows = []
    for pruner, s in payload["summary"].items():
        rows.append([pruner, f"{s['epochs_mean']:.0f}", f"{s['fewer_epochs_x']:.2f}x" if s["fewer_epochs_x"] else "",
                     f"{s['best_val_mean']:.4f} ± {s['best_val_std']:.4f}", f"{s['test_mean']:.4f} ± {s['test_std']:.4f}",
                     f"{s['seconds_mean']:.0f}"])
    print(f"\n{payload['trials']} trials on {payload['dataset']} (space {payload['space']}, cv=1), "
          f"{payload['seeds']} seeds: mean ± std")
    print(markdown_table(["pruner", "epochs trained", "fewer epochs than none", "best val score",
                          "test score (refit best)", "wall s"], rows))


if __name__ == "__main__":
    main()
