"""Cohorts (``--cohort K``): trials per minute and best validation score, K = 1, 4, 16, 64, auto.

    python benchmarks/cohort.py [tune] [--device auto|cpu|cuda] [--space default] [--trials N]
                                       [--seeds 0,1,2] [--members 1,4,16,64] [--pruner P]
                                       [--output cohort_tune]
    python benchmarks/cohort.py train  [--device ...] [--repeats 3] [--members 1,4,16,64]
                                       [--width 128] [--batch 128] [--output cohort]

On a GPU: ``python benchmarks/cohort.py --device cuda`` (``tune``, the default mode; ``--trials``
defaults to twice the largest K, at least 16, so that the largest cohorts can form).

``tune``: whole studies on digits (the tuner as users run it: the space's priors, TPE,
Hyperband, cv "auto"), one per seed and K, the K interleaved within each seed. Reported per
study: trials per minute of search (trials / (last trial's end - first trial's start), so the
refit after the search is not counted), the best validation score, how many trials trained in a
cohort, and the machine load. ``train``: training only, K members of one structure in one
:class:`~regtune.nn.cohort.CohortTrainer` against the same K trained one by one (no Optuna, no
MLflow): the ceiling of what cohorts can gain for a network of that size.
"""

from __future__ import annotations

import os

# As the regtune CLI starts torch: idle OpenMP threads sleep, so trials may use both cores.
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import interleaved, load, machine_info, markdown_table, save  # noqa: E402

from regtune.config import RegConfig  # noqa: E402
from regtune.estimators.net import RegularizedNetClassifier  # noqa: E402
from regtune.nn.cohort import CohortTrainer  # noqa: E402
from regtune.tuning.tuner import tune  # noqa: E402
from regtune.tuning.worker import COHORT_ATTR  # noqa: E402

EPOCHS = 10


def _study_stats(result: Any) -> dict[str, Any]:
    trials = [t for t in result.study.trials if t.datetime_start and t.datetime_complete]
    start = min(t.datetime_start for t in trials)
    end = max(t.datetime_complete for t in trials)
    minutes = (end - start).total_seconds() / 60
    return {"trials": len(trials), "search_minutes": minutes, "trials_per_min": len(trials) / minutes,
            "best_value": float(result.best_value),
            "in_cohorts": sum(COHORT_ATTR in t.user_attrs for t in trials),
            "states": {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL")},
            "load1": round(os.getloadavg()[0], 2)}


def run_tune(args: argparse.Namespace) -> None:
    ks: list[Any] = [k if k == "auto" else int(k) for k in args.members.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    trials = args.trials or max(16, 2 * max(k for k in ks if k != "auto"))
    payload: dict[str, Any] = {"benchmark": "cohort_tune", "dataset": "digits", "space": args.space,
                               "trials": trials, "device": args.device, "pruner": args.pruner or "default",
                               "machine": machine_info(), "runs": []}
    for i, seed in enumerate(seeds):
        order = ks[i % len(ks):] + ks[:i % len(ks)]  # rotate which K goes first
        for k in order:
            t0 = time.perf_counter()
            result = tune("digits", space=args.space, n_trials=trials, cohort=k, seed=seed, tracking_uri="off",
                          storage=":memory:", progress=False, log_model=False, device=args.device,
                          **({"pruner": args.pruner} if args.pruner else {}))
            if k == "auto":
                stats_k = result.study.user_attrs.get("regtune.cohort_auto", {})
                print(f"  auto chose K = {stats_k.get('k')} from trial epochs/s {stats_k.get('trial_epochs_per_s')}")
            stats = {"seed": seed, "cohort": k, **_study_stats(result), "call_seconds": time.perf_counter() - t0,
                     "auto": result.study.user_attrs.get("regtune.cohort_auto")}
            print(f"seed {seed} cohort {k}: {stats['trials_per_min']:.2f} trials/min, best {stats['best_value']:.4f}, "
                  f"{stats['in_cohorts']} in cohorts, load {stats['load1']}", flush=True)
            payload["runs"].append(stats)
            save(args.output, payload)
    rows, summary = [], {}
    for k in ks:
        runs = [r for r in payload["runs"] if r["cohort"] == k]
        summary[k] = {"trials_per_min_median": float(np.median([r["trials_per_min"] for r in runs])),
                      "best_value_mean": float(np.mean([r["best_value"] for r in runs])),
                      "in_cohorts_mean": float(np.mean([r["in_cohorts"] for r in runs]))}
        rows.append([k, summary[k]["trials_per_min_median"], summary[k]["best_value_mean"],
                     summary[k]["in_cohorts_mean"]])
    base = summary[ks[0]]["trials_per_min_median"]
    for k in ks:
        summary[k]["speedup_vs_first"] = summary[k]["trials_per_min_median"] / base
    payload["summary"] = summary
    payload["machine"]["load_average_end"] = load()
    path = save(args.output, payload)
    print(f"\ndigits, space {args.space!r}, {trials} trials per study, seeds {seeds}, device {args.device}")
    print(markdown_table(["cohort K", "trials/min (median)", "best val (mean)", "trials in cohorts (mean)"], rows))
    print(f"\nwrote {path}")


def _members(k: int, width: int, batch: int) -> list[RegConfig]:
    return [RegConfig(hidden_layer_sizes=(width, width), batch_size=batch, max_epochs=EPOCHS, early_stopping=False,
                      lr=10 ** (-3.5 + i / max(1, k)), l2=1e-5 * i) for i in range(k)]


def run_train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    repeats = args.repeats
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(1437, 64)), rng.integers(0, 10, 1437)
    Xv, yv = rng.normal(size=(360, 64)), rng.integers(0, 10, 360)
    payload: dict[str, Any] = {"benchmark": "cohort", "epochs": EPOCHS, "threads": args.threads, "repeats": repeats,
                               "device": args.device,
                               "width": args.width, "batch": args.batch, "machine": machine_info(), "members": {}}
    for k in (int(m) for m in args.members.split(",")):
        members = _members(k, args.width, args.batch)

        def estimators(members: list[RegConfig] = members) -> list[RegularizedNetClassifier]:
            return [RegularizedNetClassifier(**c.to_dict(), random_state=i, device=args.device)
                    for i, c in enumerate(members)]

        def cohort() -> None:
            trainer = CohortTrainer([e.trainer_arguments(X, y, validation_data=(Xv, yv)) for e in estimators()])
            while not trainer.done:
                trainer.step()

        def one_by_one() -> None:
            for est in estimators():
                for _ in est.fit_iter(X, y, validation_data=(Xv, yv)):
                    pass

        print(f"K = {k}", flush=True)
        timing = interleaved({"cohort": cohort, "one by one": one_by_one}, repeats)
        for rec in timing.values():
            rec["member_epochs_per_s"] = k * EPOCHS / rec["median"]
        timing["speedup"] = timing["one by one"]["median"] / timing["cohort"]["median"]
        payload["members"][k] = timing
        save(args.output, payload)
    payload["machine"]["load_average_end"] = load()
    path = save(args.output, payload)
    rows = [[k, t["one by one"]["median"], t["cohort"]["median"], f"{t['speedup']:.2f}x"]
            for k, t in payload["members"].items()]
    print(f"\nMLP {args.width}-{args.width}, batch {args.batch}, {EPOCHS} epochs on 1,437 x 64, {args.threads} "
          f"thread(s), device {args.device}; medians of {repeats}")
    print(markdown_table(["members K", "one by one s", "cohort s", "cohort speedup"], rows))
    print(f"\nwrote {path}")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("tune", "train", "-h", "--help"):
        argv.insert(0, "tune")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("tune", parents=[common])
    t.add_argument("--space", default="default")
    t.add_argument("--trials", type=int, default=0, help="per study; 0: twice the largest K, at least 16")
    t.add_argument("--seeds", default="0,1,2")
    t.add_argument("--members", default="1,4,16,64", help="cohort sizes, 'auto' included")
    t.add_argument("--pruner", default=None, help="the tuner's default unless given (none, hyperband, ...)")
    t.add_argument("--output", default="cohort_tune")
    r = sub.add_parser("train", parents=[common])
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--members", default="1,4,16,64")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--width", type=int, default=128)
    r.add_argument("--batch", type=int, default=128)
    r.add_argument("--output", default="cohort")
    args = parser.parse_args(argv)
    run_tune(args) if args.mode == "tune" else run_train(args)


if __name__ == "__main__":
    main()
