"""Parallel workers: trials per minute with ``n_jobs=2`` against ``n_jobs=1`` on 2 cores.

    python benchmarks/parallel.py [--quick] [--repeats 3] [--trials 12] [--space minimal] [--output parallel]

The same study (``digits``, space ``minimal``, ``cv=1``, ``pruner="none"``, seed 0, journal
storage in a temporary directory, MLflow off) runs with one worker and with two worker
processes (each sets torch to ``cpu_count // n_jobs`` threads). One worker runs twice: with
torch's default thread count (what ``n_jobs=1`` does) and with 1 thread. Reported: wall of the
whole ``tune()`` call (spawning, refits included) and trials per minute over the search window
(first trial start to last trial end).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import optuna
import torch
from _common import interleaved, load, machine_info, markdown_table, save

from regtune.tuning.tuner import TuneSettings, tune

NAME = "parallel"


def contender(n_jobs: int, trials: int, threads: int | None, windows: dict[str, list[float]], name: str,  # noqa: ANN201
              space: str = "minimal"):
    def run() -> float:
        workdir = Path(tempfile.mkdtemp(prefix=f"regtune-parallel-{n_jobs}-"))
        before = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            result = tune("digits", settings=TuneSettings(
                space=space, n_trials=trials, pruner="none", cv=1, seed=0, storage=str(workdir / "regtune.journal"),
                tracking_uri="off", progress=False, log_model=False, device="cpu", n_jobs=n_jobs,
            ))
        finally:
            torch.set_num_threads(before)
        done = [t for t in result.study.trials if t.datetime_complete is not None]
        window = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
        windows.setdefault(name, []).append(window)
        return len(done)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 trials, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--space", default="minimal")
    parser.add_argument("--output", default=NAME, help="results file name under benchmarks/results/")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 3)
    trials = args.trials or (6 if args.quick else 12)
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.chdir(tempfile.mkdtemp(prefix="regtune-parallel-"))
    default_threads = torch.get_num_threads()

    windows: dict[str, list[float]] = {}
    contenders = {
        f"n_jobs=1 ({default_threads} torch threads, default)": contender(1, trials, None, windows, "n1", args.space),
        "n_jobs=1 (1 torch thread)": contender(1, trials, 1, windows, "n1t1", args.space),
        f"n_jobs=2 ({max(1, (os.cpu_count() or 1) // 2)} torch thread each)": contender(2, trials, None, windows, "n2", args.space),
    }
    keys = dict(zip(contenders, ("n1", "n1t1", "n2"), strict=True))
    payload: dict[str, Any] = {"benchmark": NAME, "space": args.space, "trials": trials, "repeats": repeats, "machine": machine_info()}
    timing = interleaved(contenders, repeats, warmup=False)
    for name, rec in timing.items():
        w = sorted(windows[keys[name]])
        rec["search_window_s"] = w
        rec["search_window_median"] = w[len(w) // 2] if len(w) % 2 else sum(w[len(w) // 2 - 1 : len(w) // 2 + 1]) / 2
        rec["trials_per_minute"] = 60 * trials / rec["search_window_median"]
        rec["trials_per_minute_wall"] = 60 * trials / rec["median"]
    one = timing[next(iter(contenders))]
    best_one = max((timing[n] for n in list(contenders)[:2]), key=lambda r: r["trials_per_minute"])
    for rec in timing.values():
        rec["speedup_vs_default"] = rec["trials_per_minute"] / one["trials_per_minute"]
        rec["speedup_vs_best_single"] = rec["trials_per_minute"] / best_one["trials_per_minute"]
        rec["wall_speedup_vs_default"] = one["median"] / rec["median"]
    payload["timing"] = timing
    payload["machine"]["load_average_end"] = load()
    path = save(args.output, payload)
    rows = [[name, rec["median"], rec["search_window_median"], f"{rec['trials_per_minute']:.1f}",
             f"{rec['speedup_vs_default']:.2f}x", f"{rec['speedup_vs_best_single']:.2f}x"]
            for name, rec in timing.items()]
    print(f"\n{trials} trials on digits (space {args.space}, cv=1), median of {repeats}")
    print(markdown_table(["workers", "tune() wall s", "search window s", "trials/min (window)",
                          "vs n_jobs=1 default", "vs best n_jobs=1"], rows))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
