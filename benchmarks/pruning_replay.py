"""Pruning replay: record whole learning curves once, then replay pruner rules on them offline.

    python benchmarks/pruning_replay.py record [--quick] [--studies digits:image:30,...] [--seeds 1]
                                              [--output curves]
    python benchmarks/pruning_replay.py replay [--orders 10] [--input curves] [--output latest]

``record`` runs small studies with ``pruner="none"`` (``cv=1``, one torch thread, in-memory
storage, no tracking) and saves, per trial, every epoch's reported validation score, the final
score (the trial's value), its params and whether it is the baseline or a prior, to
``results/pruning_replay/curves.json``. Nothing is pruned, so every curve runs to its end (or to its
own early stop).

``replay`` feeds those curves into real Optuna pruners (the very objects
:func:`regtune.tuning.storage.make_pruner` builds, or variants of them) over an in-memory
study: one ``study.ask()`` per recorded trial, ``trial.report(value, step)`` epoch by epoch,
``trial.should_prune()`` from the first rung on, exactly as ``regtune.tuning.trial`` does
(the baseline is never pruned). Per rule and study it measures:

- ``best kept``: whether a trial with the best final score survives (several may tie);
- ``top-3 pruned``: how many of the three best trials are pruned;
- ``regret``: the best final score without pruning minus the best among the trials that
  survive (0 when the best survives);
- ``epochs saved``: 1 - epochs trained / epochs of the unpruned study.

Each study is replayed in its recorded order and in ``--orders - 1`` shuffles of the trials
after the baseline and priors (the pruner's verdicts depend on which trials came before), and
the figures are means over those orders. What a replay cannot show: with pruning on, the
sampler would have seen pruned trials and sampled other configurations afterwards.

Result (10 studies: digits with the built-in CNN, digits, breast_cancer, wine, diabetes; 2
seeds; 360 curves; 10 orders each): the rule before (first rung at epoch 3) kept the best final
score in 82% of the replays (Hyperband; median 79%, SHA 87%) for 63% fewer epochs; a first
rung at 40% of ``max_epochs`` kept it in 100% with all three pruners, for 37% fewer epochs
(Hyperband). That is what ``regtune.tuning.storage.make_pruner`` ships.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import torch
from _common import load, machine_info, markdown_table, read, result_path, save

NAME = "pruning_replay"
DEFAULT_STUDIES = ("digits:image:40", "digits:default:40", "breast_cancer:default:40", "wine:default:30",
                   "diabetes:default:30")


# --- record -----------------------------------------------------------------------------------

def record_study(dataset: str, space: str, trials: int, seed: int) -> dict[str, Any]:
    from regtune.tuning.settings import TuneSettings
    from regtune.tuning.tuner import tune

    settings = TuneSettings(space=space, n_trials=trials, pruner="none", cv=1, seed=seed, storage=":memory:",
                            tracking_uri="off", progress=False, log_model=False, device="cpu", ensemble=1)
    t0 = time.perf_counter()
    result = tune(dataset, settings=settings)
    seconds = time.perf_counter() - t0
    study = result.study
    max_epochs = result.best_config.max_epochs
    curves = []
    for t in sorted(study.trials, key=lambda t: t.number):
        if t.state != optuna.trial.TrialState.COMPLETE:
            continue
        steps = sorted(t.intermediate_values)
        curves.append({
            "number": t.number,
            "values": [float(t.intermediate_values[s]) for s in steps],
            "steps": steps,
            "final": float(t.value),
            "params": {k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v)) for k, v in t.params.items()},
            "baseline": bool(t.user_attrs.get("baseline", False)),
            "prior": t.user_attrs.get("prior"),
            "families": sorted(k.removeprefix("use_") for k, v in t.params.items() if k.startswith("use_") and v),
        })
    return {"dataset": dataset, "space": space, "seed": seed, "trials": trials, "max_epochs": max_epochs,
            "direction": study.direction.name.lower(), "metric": result.metric.name, "seconds": seconds,
            "test_best": float(result.scores.loc["best", "test"]), "curves": curves}


def record(args: argparse.Namespace) -> None:
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    os.chdir(tempfile.mkdtemp(prefix="regtune-pruning-replay-"))
    specs = [s.split(":") for s in (args.studies.split(",") if args.studies else DEFAULT_STUDIES)]
    payload: dict[str, Any] = {"benchmark": "pruning_curves", "threads": 1, "machine": machine_info(), "studies": []}
    for seed in range(args.seeds):
        for dataset, space, trials in specs:
            n = min(int(trials), 6) if args.quick else int(trials)
            study = record_study(dataset, space, n, seed)
            payload["studies"].append(study)
            save(result_path(NAME, args.output), payload)
            print(f"{dataset}/{space} seed {seed}: {len(study['curves'])} curves, {study['seconds']:.0f} s, "
                  f"load {load()[0]:.1f}", flush=True)
    payload["machine"]["load_average_end"] = load()
    print(f"wrote {save(result_path(NAME, args.output), payload)}")


# --- replay -----------------------------------------------------------------------------------

Transform = Callable[[list[float], bool], list[float]]


def _raw(values: list[float], maximize: bool) -> list[float]:
    return list(values)


def _best_so_far(values: list[float], maximize: bool) -> list[float]:
    pick = max if maximize else min
    out, best = [], None
    for v in values:
        best = v if best is None else pick(best, v)
        out.append(best)
    return out


def _ema(values: list[float], maximize: bool, alpha: float = 0.5) -> list[float]:
    out, s = [], None
    for v in values:
        s = v if s is None else alpha * v + (1 - alpha) * s
        out.append(s)
    return out


@dataclass(frozen=True)
class Rule:
    """A pruner (built per study from its ``max_epochs``), the first step it may prune at, and
    what is reported to it per epoch."""

    name: str
    build: Callable[[int], optuna.pruners.BasePruner]
    first: Callable[[int], int]  # the first step (0-based epoch) at which should_prune is asked
    transform: Transform = _raw


def _today_first(max_epochs: int) -> int:
    """The first rung before this benchmark: step ``warmup - 1``, ``warmup = max(3, max_epochs // 10)``."""
    return max(1, max(3, max_epochs // 10) - 1)


def _warmup(max_epochs: int) -> int:  # what regtune.tuning.tuner passes to make_pruner
    return max(3, max_epochs // 10)


def rules() -> list[Rule]:
    from regtune.tuning.optuna_internals import SeededHyperbandPruner

    def hb(first: Callable[[int], int], rf: int = 4) -> Callable[[int], optuna.pruners.BasePruner]:
        return lambda m: SeededHyperbandPruner(min_resource=max(1, first(m)), max_resource=m, reduction_factor=rf)

    def med(first: Callable[[int], int]) -> Callable[[int], optuna.pruners.BasePruner]:
        return lambda m: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=first(m))

    def sha(first: Callable[[int], int], rf: int = 3) -> Callable[[int], optuna.pruners.BasePruner]:
        return lambda m: optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, first(m)), reduction_factor=rf)

    def at(frac: float) -> Callable[[int], int]:  # as regtune.tuning.storage.first_rung, for any share
        return lambda m: max(1, _warmup(m) - 1, math.ceil(frac * m) - 1)

    nop = lambda m: optuna.pruners.NopPruner()  # noqa: E731
    out = [Rule("none", nop, lambda m: m)]
    for tname, tf in (("", _raw), (" best-so-far", _best_so_far), (" ema0.5", _ema)):
        out += [
            Rule(f"hyperband@today{tname}", hb(_today_first), _today_first, tf),
            Rule(f"median@today{tname}", med(_today_first), _today_first, tf),
            Rule(f"sha@today{tname}", sha(_today_first), _today_first, tf),
        ]
        for frac in (0.2, 0.25, 1 / 3, 0.4) if tf is not _ema else (1 / 3,):
            out += [
                Rule(f"hyperband@{frac:.2f}{tname}", hb(at(frac)), at(frac), tf),
                Rule(f"sha@{frac:.2f}{tname}", sha(at(frac)), at(frac), tf),
            ]
        for frac in (0.25, 1 / 3, 0.4, 0.5) if tf is not _ema else (1 / 3,):
            out.append(Rule(f"median@{frac:.2f}{tname}", med(at(frac)), at(frac), tf))
        if tf is not _ema:
            out += [Rule(f"hyperband rf3@{frac:.2f}{tname}", hb(at(frac), rf=3), at(frac), tf)
                    for frac in (0.25, 1 / 3)]
    from regtune.tuning.storage import first_rung, make_pruner

    # What ships: make_pruner's very objects, fed the latest score, as regtune.tuning.trial reports it.
    for name in ("hyperband", "median", "sha"):
        out.append(Rule(f"shipped {name}", lambda m, n=name: make_pruner(n, warmup=_warmup(m), max_epochs=m),
                        lambda m: first_rung(m, _warmup(m)), _raw))
    return out


def replay_once(rule: Rule, study: dict[str, Any], order: Sequence[dict[str, Any]]) -> dict[str, Any]:
    maximize = study["direction"] == "maximize"
    m = study["max_epochs"]
    opt = optuna.create_study(direction=study["direction"], pruner=rule.build(m),
                              sampler=optuna.samplers.RandomSampler(seed=0))
    first = rule.first(m)
    used, pruned = 0, set()
    for c in order:
        trial = opt.ask()
        reported = rule.transform(c["values"], maximize)
        stop = None
        for step, v in zip(c["steps"], reported, strict=True):
            used += 1
            trial.report(v, step)
            if not c["baseline"] and step >= first and trial.should_prune():
                stop = step
                break
        if stop is None:
            opt.tell(trial, c["final"])
        else:
            pruned.add(c["number"])
            opt.tell(trial, state=optuna.trial.TrialState.PRUNED)
    total = sum(len(c["values"]) for c in order)
    ranked = sorted(order, key=lambda c: c["final"], reverse=maximize)
    best = ranked[0]["final"]
    kept = [c["final"] for c in order if c["number"] not in pruned]
    kept_best = (max if maximize else min)(kept)
    return {
        "best_kept": kept_best == best,  # ties: any trial with the best final score will do
        "top3_pruned": sum(c["number"] in pruned for c in ranked[:3]),
        "regret": abs(best - kept_best),
        "saved": 1 - used / total,
        "pruned_regularized": sum(1 for c in order if c["number"] in pruned and c["families"]),
        "pruned": len(pruned),
    }


def replay(args: argparse.Namespace) -> None:
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    curves = read(result_path(NAME, args.input))
    out: dict[str, Any] = {"benchmark": NAME, "orders": args.orders, "rules": {}}
    for rule in rules():
        per_study = []
        for study in curves["studies"]:
            head = [c for c in study["curves"] if c["baseline"] or c["prior"] is not None]
            tail = [c for c in study["curves"] if not (c["baseline"] or c["prior"] is not None)]
            rng = random.Random(0)
            runs = []
            for k in range(args.orders):
                order = list(tail)
                if k:
                    rng.shuffle(order)
                runs.append(replay_once(rule, study, head + order))
            per_study.append({key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
                             | {"study": f"{study['dataset']}/{study['space']}/s{study['seed']}"})
        keys = ("best_kept", "top3_pruned", "regret", "saved")
        out["rules"][rule.name] = {"mean": {k: float(np.mean([s[k] for s in per_study])) for k in keys},
                                   "studies": per_study}
    save(result_path(NAME, args.output), out)
    rows = []
    for name, r in out["rules"].items():
        s = r["mean"]
        rows.append([name, f"{s['best_kept']:.2f}", f"{s['top3_pruned']:.2f}", f"{s['regret']:.4f}",
                     f"{100 * s['saved']:.0f}%"])
    studies = ", ".join(f"{s['dataset']}/{s['space']}" for s in curves["studies"])
    print(f"{len(curves['studies'])} studies ({studies}), {args.orders} orders each; means over studies")
    print(markdown_table(["rule", "best trial kept", "top-3 pruned", "regret (best val)", "epochs saved"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run unpruned studies and save their curves")
    rec.add_argument("--quick", action="store_true", help="6 trials per study")
    rec.add_argument("--studies", default=None, help="dataset:space:trials,... (default: " + ",".join(DEFAULT_STUDIES) + ")")
    rec.add_argument("--seeds", type=int, default=1)
    rec.add_argument("--output", default="curves", help=f"results/{NAME}/<output>.json")
    rep = sub.add_parser("replay", help="replay pruner rules on saved curves")
    rep.add_argument("--input", default="curves", help=f"recorded curves: results/{NAME}/<input>.json")
    rep.add_argument("--output", default="latest", help=f"results/{NAME}/<output>.json")
    rep.add_argument("--orders", type=int, default=10, help="trial orders per study (the first is the recorded one)")
    args = parser.parse_args()
    record(args) if args.command == "record" else replay(args)


if __name__ == "__main__":
    main()
