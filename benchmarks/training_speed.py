"""Training speed: regtune's loop against plain PyTorch loops and skorch, same model and data.

    python benchmarks/training_speed.py [--quick] [--repeats N] [--threads 2] [--skip-cost] [--output latest]
                                        [--omp-wait-policy passive|default]

Two regimes on CPU: "small" (2,000 x 30, MLP 64-64, 60 epochs, batch 64) and "wide"
(20,000 x 64, MLP 256-256, 15 epochs, batch 128). Every contender trains the same architecture
with Adam (lr 1e-3) on the same data for the same number of epochs, shuffling every epoch.
regtune goes through ``RegularizedNetClassifier.fit``, so its input validation and feature
standardization count in its time. The "cost of regularization" part times regtune with each
regularizer switched on alone against none. The "threads" part runs regtune in fresh
interpreters with 1 or 2 torch threads and OpenMP's active (default) or passive wait policy.

OpenMP's wait policy matters with 2 threads: its default (active: idle threads spin) is best on
a quiet machine, but when another process holds a core the spinning threads slow tiny networks
down 6-30x; ``OMP_WAIT_POLICY=PASSIVE`` avoids that but costs 2-4x on a quiet machine (thread
wake-ups). ``--omp-wait-policy passive`` runs the in-process contenders under the passive policy
(set before torch is imported); the default leaves OpenMP's default alone.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # must happen before torch (and its OpenMP runtime) loads
    _policy = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--omp-wait-policy=")), None)
    if "--omp-wait-policy" in sys.argv:
        _policy = sys.argv[sys.argv.index("--omp-wait-policy") + 1]
    if _policy and _policy.lower() == "passive":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import argparse
import json
import subprocess
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _common import interleaved, load, machine_info, markdown_table, median, result_path, save
from sklearn.datasets import make_classification
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from regtune import RegularizedNetClassifier

REGIMES = {
    "small": {"n": 2_000, "d": 30, "hidden": (64, 64), "epochs": 60, "batch": 64},
    "wide": {"n": 20_000, "d": 64, "hidden": (256, 256), "epochs": 15, "batch": 128},
}
QUICK_EPOCHS = {"small": 20, "wide": 4}
LR = 1e-3

# Each regularizer alone, at a typical strength.
REGULARIZERS: dict[str, dict[str, Any]] = {
    "none": {},
    "l1": {"l1": 1e-4},
    "l2": {"l2": 1e-4},
    "weight_decay": {"weight_decay": 1e-2},
    "elastic_net": {"elastic_net": 1e-4},
    "dropout standard": {"dropout": 0.2},
    "dropout alpha": {"dropout": 0.2, "dropout_variant": "alpha"},
    "dropout gaussian": {"dropout": 0.2, "dropout_variant": "gaussian"},
    "batch_norm": {"batch_norm": "before_activation"},
    "input_noise": {"input_noise": 0.1},
    "weight_noise": {"weight_noise": 0.01},
    "gradient_noise": {"gradient_noise": 0.01},
    "mixup": {"mixup_alpha": 0.2},
    "cutmix": {"cutmix_alpha": 0.2},
    "label_smoothing": {"label_smoothing": 0.1},
    "max_norm": {"max_norm": 3.0},
    "spectral_norm": {"spectral_norm": True},
}


class PlainMLP(nn.Sequential):
    """The same layers regtune builds: Linear -> ReLU per hidden width, then a linear head."""

    def __init__(self, d: int, hidden: tuple[int, ...], n_out: int) -> None:
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        super().__init__(*layers, nn.Linear(d, n_out))


def make_data(n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(n, d, n_informative=d // 2, n_classes=2, random_state=0)
    return X.astype(np.float32), y.astype(np.int64)


def regtune_fit(X: np.ndarray, y: np.ndarray, r: dict[str, Any], **params: Any):  # noqa: ANN201
    def run() -> float:
        net = RegularizedNetClassifier(
            hidden_layer_sizes=r["hidden"], early_stopping=False, max_epochs=r["epochs"],
            batch_size=r["batch"], lr=LR, device="cpu", random_state=0, **params,
        ).fit(X, y)
        return net.history_[-1]["train_loss"]

    return run


def floor_loop(X: np.ndarray, y: np.ndarray, r: dict[str, Any], fused: bool = False):  # noqa: ANN201
    """The floor: tensors in memory, a permutation per epoch, index-sliced batches."""

    def run() -> float:
        torch.manual_seed(0)
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        model = PlainMLP(X.shape[1], r["hidden"], 2)
        opt = torch.optim.Adam(model.parameters(), lr=LR, **({"fused": True} if fused else {}))
        n, bs = len(Xt), r["batch"]
        for _ in range(r["epochs"]):
            order = torch.randperm(n)
            for i in range(0, n, bs):
                idx = order[i : i + bs]
                loss = F.cross_entropy(model(Xt[idx]), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return float(loss)

    return run


def dataloader_loop(X: np.ndarray, y: np.ndarray, r: dict[str, Any]):  # noqa: ANN201
    """The textbook loop: ``DataLoader(TensorDataset(X, y), shuffle=True)``."""

    def run() -> float:
        torch.manual_seed(0)
        loader = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(y)), batch_size=r["batch"],
                            shuffle=True)
        model = PlainMLP(X.shape[1], r["hidden"], 2)
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        for _ in range(r["epochs"]):
            for xb, yb in loader:
                loss = F.cross_entropy(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return float(loss)

    return run


def skorch_fit(X: np.ndarray, y: np.ndarray, r: dict[str, Any]):  # noqa: ANN201
    from skorch import NeuralNetClassifier

    def run() -> float:
        torch.manual_seed(0)
        net = NeuralNetClassifier(
            PlainMLP, module__d=X.shape[1], module__hidden=r["hidden"], module__n_out=2,
            criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=LR, batch_size=r["batch"],
            max_epochs=r["epochs"], train_split=None, iterator_train__shuffle=True, device="cpu",
            verbose=0, callbacks__print_log=None,
        )
        net.fit(X, y)
        return net.history[-1, "train_loss"]

    return run


def speed(regime: str, r: dict[str, Any], repeats: int) -> dict[str, Any]:
    X, y = make_data(r["n"], r["d"])
    contenders = {
        "regtune": regtune_fit(X, y, r),
        "floor: index slicing": floor_loop(X, y, r),
        "floor + fused Adam": floor_loop(X, y, r, fused=True),
        "torch DataLoader": dataloader_loop(X, y, r),
        "skorch": skorch_fit(X, y, r),
    }
    # Thread counts are compared in fresh interpreters (threads()): after set_num_threads(2), a
    # later set_num_threads(1) in the same process still runs ~2x slower than a 1-thread process.
    print(f"\n== {regime}: {r['n']} x {r['d']}, MLP {r['hidden']}, {r['epochs']} epochs, batch {r['batch']}")
    out = interleaved(contenders, repeats)
    floor, sk = out["floor: index slicing"]["median"], out["skorch"]["median"]
    n_batches = r["epochs"] * -(-r["n"] // r["batch"])
    for rec in out.values():
        rec["vs_floor"] = rec["median"] / floor
        rec["vs_skorch"] = sk / rec["median"]
        rec["us_per_batch"] = rec["median"] / n_batches * 1e6
    return {"regime": r, "n_batches": n_batches, "contenders": out}


def cost(regime: str, r: dict[str, Any], repeats: int) -> dict[str, Any]:
    X, y = make_data(r["n"], r["d"])
    contenders = {name: regtune_fit(X, y, r, **params) for name, params in REGULARIZERS.items()}
    print(f"\n== cost of regularization, {regime}")
    out = interleaved(contenders, repeats, warmup=False)  # the speed part already warmed up
    base = out["none"]["median"]
    for rec in out.values():
        rec["vs_none"] = rec["median"] / base
    return {"regime": r, "contenders": out}


THREAD_VARIANTS = {
    "1 thread": (1, None),
    "2 threads, OMP default (active)": (2, None),
    "2 threads, OMP passive": (2, "PASSIVE"),
}


def _child(regime: str, epochs: int, threads: int) -> None:
    """In a fresh interpreter: one warm-up epoch, then the timed regtune fit; prints seconds."""
    import time

    torch.set_num_threads(threads)
    r = {**REGIMES[regime], "epochs": epochs}
    X, y = make_data(r["n"], r["d"])
    regtune_fit(X, y, {**r, "epochs": 1})()
    t0 = time.perf_counter()
    regtune_fit(X, y, r)()
    print(json.dumps({"seconds": time.perf_counter() - t0}))


def threads(regimes: dict[str, dict[str, Any]], repeats: int) -> dict[str, Any]:
    """regtune per thread count and OpenMP wait policy, each run in a fresh interpreter."""
    out: dict[str, Any] = {}
    for regime, r in regimes.items():
        print(f"\n== threads, {regime} (fresh interpreter per run)")
        runs: dict[str, list[float]] = {name: [] for name in THREAD_VARIANTS}
        for rep in range(repeats):
            names = list(THREAD_VARIANTS)
            for k in range(len(names)):
                name = names[(rep + k) % len(names)]
                n_threads, policy = THREAD_VARIANTS[name]
                env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
                if policy == "PASSIVE":
                    env["OMP_WAIT_POLICY"] = policy
                cmd = [sys.executable, __file__, "--child", f"{regime}:{r['epochs']}:{n_threads}"]
                res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
                seconds = json.loads(res.stdout.strip().splitlines()[-1])["seconds"]
                runs[name].append(seconds)
                print(f"  repeat {rep + 1}/{repeats}  {name:<32} {seconds:8.3f} s  (load {load()[0]:.2f})")
        base = median(runs["1 thread"])
        out[regime] = {name: {"wall": w, "median": median(w), "min": min(w), "vs_1_thread": median(w) / base}
                       for name, w in runs.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and repeats (a smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 5; quick 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--regimes", default="small,wide")
    parser.add_argument("--skip-cost", action="store_true", help="skip the cost-of-regularization part")
    parser.add_argument("--skip-threads", action="store_true", help="skip the threads / OpenMP part")
    parser.add_argument("--omp-wait-policy", choices=["passive", "default"], default="default",
                        help="OpenMP wait policy of the in-process contenders (see the module docstring)")
    parser.add_argument("--output", default="latest", help="results/training_speed/<output>.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        regime, epochs, n_threads = args.child.split(":")
        _child(regime, int(epochs), int(n_threads))
        return
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 5)
    regimes = {k: dict(REGIMES[k]) for k in args.regimes.split(",")}
    if args.quick:
        for k in regimes:
            regimes[k]["epochs"] = QUICK_EPOCHS[k]
    payload: dict[str, Any] = {
        "benchmark": "training_speed", "quick": args.quick, "repeats": repeats, "machine": machine_info(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "OpenMP default (active)"), "speed": {}, "cost": {},
    }
    for name, r in regimes.items():
        payload["speed"][name] = speed(name, r, repeats)
        save(result_path("training_speed", args.output), payload)
    if not args.skip_cost:
        for name, r in regimes.items():
            payload["cost"][name] = cost(name, r, max(3, repeats - 2) if name == "wide" else repeats)
            save(result_path("training_speed", args.output), payload)
    if not args.skip_threads:
        payload["threads"] = threads(regimes, repeats)
        save(result_path("training_speed", args.output), payload)
    payload["machine"]["load_average_end"] = load()
    path = save(result_path("training_speed", args.output), payload)
    print_tables(payload)
    print(f"\nwrote {path}")


def print_tables(payload: dict[str, Any]) -> None:
    names = list(next(iter(payload["speed"].values()))["contenders"])
    header = ["contender"] + [f"{k} median s" for k in payload["speed"]] + [f"{k} vs floor" for k in payload["speed"]]
    rows = []
    for name in names:
        rows.append([name] + [payload["speed"][k]["contenders"][name]["median"] for k in payload["speed"]]
                    + [f"{payload['speed'][k]['contenders'][name]['vs_floor']:.2f}x" for k in payload["speed"]])
    print("\nTraining speed (median wall seconds; ratio to the floor, lower is faster)")
    print(markdown_table(header, rows))
    for k, res in payload["speed"].items():
        c = res["contenders"]
        print(f"{k}: regtune {c['regtune']['vs_floor']:.2f}x the floor (target <= 1.15x), "
              f"{c['regtune']['vs_skorch']:.2f}x faster than skorch, "
              f"overhead {c['regtune']['us_per_batch'] - c['floor: index slicing']['us_per_batch']:+.0f} us/batch")
    if payload["cost"]:
        regs = list(next(iter(payload["cost"].values()))["contenders"])
        header = ["regularizer"] + [f"{k} s" for k in payload["cost"]] + [f"{k} vs none" for k in payload["cost"]]
        rows = [[reg] + [payload["cost"][k]["contenders"][reg]["median"] for k in payload["cost"]]
                + [f"{payload['cost'][k]['contenders'][reg]['vs_none']:.2f}x" for k in payload["cost"]] for reg in regs]
        print("\nCost of regularization (each alone; median wall seconds and ratio to none)")
        print(markdown_table(header, rows))
    if payload.get("threads"):
        regimes = list(payload["threads"])
        names = list(THREAD_VARIANTS)
        rows = [[name] + [payload["threads"][k][name]["median"] for k in regimes]
                + [f"{payload['threads'][k][name]['vs_1_thread']:.2f}x" for k in regimes] for name in names]
        print("\nregtune by torch threads and OpenMP wait policy (fresh interpreters; median s, ratio to 1 thread)")
        print(markdown_table(["threads"] + [f"{k} s" for k in regimes] + [f"{k} vs 1 thread" for k in regimes], rows))


if __name__ == "__main__":
    main()
