"""Parallel workers: trials per minute with ``n_jobs=2`` against ``n_jobs=1`` on 2 cores.

    python benchmarks/parallel.py [--quick] [--repeats 3] [--trials 40] [--space minimal]
                                  [--tracking on|off] [--output latest]

The same study (``digits``, space ``minimal``, ``cv=1``, ``pruner="none"``, seed 0, journal
storage) runs with one worker and with two (this process plus one worker forked from the
fork server, which the first ``n_jobs=2`` repeat starts and later ones reuse, as a notebook
would; a CLI run always starts it, overlapped with its own set-up), as the CLI runs it: torch threads chosen per trial by the tuner, MLflow logging to a SQLite store
that exists already (created once in the warm-up, as in any run after the first in a
directory). Each repeat uses a new journal file and study. Reported: wall of the whole
``tune()`` call (spawning, refits included) and trials per minute over it; trials per minute
over the search window (first trial start to last trial end); epochs per second over the
wall (the two contenders sample different configurations, so work per trial differs a bit).

The ceiling comes from the same run: one, then two plain training processes (the digits MLP
on one thread, no tuner) train side by side for a few seconds; their summed epochs per second
over one process's is what two processes can gain on this machine right now (2.0 on two idle
cores; less when other jobs hold a core).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import Any

import optuna
from _common import interleaved, load, machine_info, markdown_table, median, result_path, save

from regtune.tuning.settings import TuneSettings
from regtune.tuning.tuner import tune

NAME = "parallel"


def contender(n_jobs: int, trials: int, space: str, tracking: str, stats: dict[str, list[dict[str, float]]]):  # noqa: ANN201
    def run() -> int:
        workdir = Path(tempfile.mkdtemp(prefix=f"regtune-parallel-{n_jobs}-"))
        result = tune("digits", settings=TuneSettings(
            space=space, n_trials=trials, pruner="none", cv=1, seed=0, storage=str(workdir / "regtune.journal"),
            study_name=f"parallel-{uuid.uuid4().hex[:8]}", tracking_uri=tracking, progress=False, log_model=False,
            device="cpu", n_jobs=n_jobs,
        ))
        done = [t for t in result.study.trials if t.datetime_complete is not None]
        window = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
        stats.setdefault(str(n_jobs), []).append({
            "window_s": window, "epochs": sum(len(t.intermediate_values) for t in done),
            "owners": len({t.user_attrs.get("regtune.owner") for t in done}),
        })
        return len(done)

    return run


_TRAIN = r"""
import sys, time, torch
torch.set_num_threads(1)
from regtune.config import RegConfig
from regtune.nn.models import build_model
from regtune.nn.trainer import Trainer
g = torch.Generator().manual_seed(0)
X, y = torch.randn(1437, 64, generator=g), torch.randint(0, 10, (1437,), generator=g)
config = RegConfig(hidden_layer_sizes=(128, 128), batch_size=128, max_epochs=10**6)
trainer = Trainer(lambda: build_model(config, 64, 10), config, X, y, X[:360], y[:360], task="classification")
trainer.step()
while time.time() < float(sys.argv[1]):  # start together
    time.sleep(0.01)
t0, n = time.perf_counter(), 0
while time.perf_counter() - t0 < float(sys.argv[2]):
    trainer.step()
    n += 1
print(n / (time.perf_counter() - t0))
"""


def plain_training(n_procs: int, seconds: float, rates: dict[int, list[float]]):  # noqa: ANN201
    """``n_procs`` training processes at once; records their summed epochs per second."""
    import subprocess
    import sys
    import time

    def run() -> float:
        start = time.time() + 6  # after every process has imported torch
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        procs = [subprocess.Popen([sys.executable, "-c", _TRAIN, str(start), str(seconds)], stdout=subprocess.PIPE,
                                  text=True, env=env) for _ in range(n_procs)]
        rate = sum(float(p.communicate(timeout=600)[0].split()[-1]) for p in procs)
        rates.setdefault(n_procs, []).append(rate)
        return rate

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 trials, 1 repeat")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--space", default="minimal")
    parser.add_argument("--tracking", choices=("on", "off"), default="on")
    parser.add_argument("--output", default="latest", help=f"results/{NAME}/<output>.json")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    trials = args.trials or (8 if args.quick else 40)
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.chdir(tempfile.mkdtemp(prefix="regtune-parallel-"))
    tracking = f"sqlite:///{Path.cwd() / 'mlflow.db'}" if args.tracking == "on" else "off"

    print("warm-up (imports, the MLflow store) ...", flush=True)
    tune("digits", settings=TuneSettings(space=args.space, n_trials=2, pruner="none", cv=1, seed=0,
                                         storage=str(Path.cwd() / "warmup.journal"), tracking_uri=tracking,
                                         progress=False, log_model=False, device="cpu"))
    stats: dict[str, list[dict[str, float]]] = {}
    rates: dict[int, list[float]] = {}
    contenders = {
        "n_jobs=1": contender(1, trials, args.space, tracking, stats),
        "n_jobs=2": contender(2, trials, args.space, tracking, stats),
        "plain training, 1 process": plain_training(1, 5.0, rates),
        "plain training, 2 processes": plain_training(2, 5.0, rates),
    }
    payload: dict[str, Any] = {"benchmark": NAME, "space": args.space, "trials": trials, "repeats": repeats,
                               "tracking": args.tracking, "machine": machine_info()}
    timing = interleaved(contenders, repeats, warmup=False)
    payload["ceiling"] = {"epochs_per_second": {str(k): v for k, v in rates.items()},
                          "two_over_one": median(rates[2]) / median(rates[1]),
                          "two_over_one_paired": [b / a for a, b in zip(rates[1], rates[2], strict=True)]}
    for name in [n for n in timing if n.startswith("plain")]:
        timing.pop(name)
    for name, rec in timing.items():
        runs = stats[name.split("=")[1]]
        rec["runs"] = runs
        rec["trials_per_minute"] = 60 * trials / rec["median"]
        rec["trials_per_minute_window"] = 60 * trials / median([r["window_s"] for r in runs])
        rec["epochs_per_second"] = median([r["epochs"] / w for r, w in zip(runs, rec["wall"], strict=True)])
    one, two = timing["n_jobs=1"], timing["n_jobs=2"]
    # Paired ratios: repeat r of each contender ran back to back, under about the same load.
    paired = [a / b for a, b in zip(one["wall"], two["wall"], strict=True)]
    payload["speedup"] = {
        "trials_per_minute": two["trials_per_minute"] / one["trials_per_minute"],
        "trials_per_minute_paired_median": median(paired),
        "trials_per_minute_paired": paired,
        "trials_per_minute_window": two["trials_per_minute_window"] / one["trials_per_minute_window"],
        "epochs_per_second": two["epochs_per_second"] / one["epochs_per_second"],
    }
    payload["timing"] = timing
    payload["machine"]["load_average_end"] = load()
    path = save(result_path(NAME, args.output), payload)
    rows = [[name, rec["median"], f"{rec['trials_per_minute']:.1f}", f"{rec['trials_per_minute_window']:.1f}",
             f"{rec['epochs_per_second']:.0f}", median(rec["load1"])] for name, rec in timing.items()]
    print(f"\n{trials} trials on digits (space {args.space}, cv=1, MLflow {args.tracking}), median of {repeats}")
    print(markdown_table(["workers", "tune() wall s", "trials/min (wall)", "trials/min (search window)",
                          "epochs/s", "load1"], rows))
    s = payload["speedup"]
    print(f"\nn_jobs=2 vs 1: {s['trials_per_minute']:.2f}x trials/min (wall; paired median "
          f"{s['trials_per_minute_paired_median']:.2f}x), {s['trials_per_minute_window']:.2f}x over the search "
          f"window, {s['epochs_per_second']:.2f}x epochs/s")
    c = payload["ceiling"]
    print(f"ceiling: 2 plain training processes reach {c['two_over_one']:.2f}x the epochs/s of one "
          f"(paired: {', '.join(f'{x:.2f}' for x in c['two_over_one_paired'])})")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
