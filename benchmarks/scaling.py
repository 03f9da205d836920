"""Cost as work grows: seconds per epoch and peak memory against rows and features.

    python benchmarks/scaling.py [--quick] [--repeats 3] [--threads 1] [--output latest]

The training loop (:class:`regtune.nn.trainer.Trainer`, the one every estimator and trial uses)
trains the default MLP (128-128, batch 128, Adam) on random classification data (10 classes):
rows 1k / 10k / 100k / 1M x 50 features, then 10 / 100 / 1,000 features x 10k rows, and the
1M-row data once more with a memory budget of a quarter of their size, so they stream in chunks
from host memory instead of sitting on the device (on a CPU the same memory: this measures
what chunking costs). Each case runs in a fresh interpreter (its peak memory is its own),
repeated ``--repeats`` times in rotating order; reported are medians of seconds per epoch
(first epoch excluded), microseconds per row, and the peak resident memory above the
interpreter's after imports. Time per epoch should grow linearly with rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from _common import load, machine_info, markdown_table, median, result_path, save

NAME = "scaling"
ROWS = (1_000, 10_000, 100_000, 1_000_000)
FEATURES = (10, 100, 1_000)

_CASE = r"""
import json, os, resource, sys, time
import torch
from regtune.config import RegConfig
from regtune.nn.models import build_model
from regtune.nn.trainer import Trainer
torch.set_num_threads(int(sys.argv[4]))
rows, features, streamed = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base = rss_mb()
g = torch.Generator().manual_seed(0)
X = torch.randn(rows, features, generator=g)
y = torch.randint(0, 10, (rows,), generator=g)
n_val = max(100, rows // 5)
Xv, yv = X[:n_val].clone(), y[:n_val].clone()
config = RegConfig(max_epochs=1000)
data = sum(t.nelement() * t.element_size() for t in (X, y, Xv, yv))
budget = data // 4 if streamed else None
trainer = Trainer(lambda: build_model(config, features, 10), config, X, y, Xv, yv, task="classification",
                  memory_budget=budget)
epochs = max(3, min(12, 300_000 // rows))
seconds = []
for _ in range(epochs):
    t0 = time.perf_counter()
    trainer.step()
    seconds.append(time.perf_counter() - t0)
print(json.dumps({"seconds": seconds, "peak_mb": rss_mb() - base, "data_mb": data / 2**20,
                  "streaming": trainer.streaming, "chunks": len(trainer._plan)}))
"""


def cases(quick: bool) -> list[tuple[str, int, int, bool]]:
    rows = ROWS[:3] if quick else ROWS
    out = [(f"{r:,} x 50", r, 50, False) for r in rows]
    out += [(f"10,000 x {f:,}", 10_000, f, False) for f in FEATURES]
    big = rows[-1]
    out.append((f"{big:,} x 50, streamed (budget = data / 4)", big, 50, True))
    return out


def run_case(rows: int, features: int, streamed: bool, threads: int) -> dict[str, Any]:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    out = subprocess.run([sys.executable, "-c", _CASE, str(rows), str(features), "1" if streamed else "0", str(threads)],
                         capture_output=True, text=True, env=env, timeout=3600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="up to 100k rows, 1 repeat")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default="latest", help=f"results/{NAME}/<output>.json")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    todo = cases(args.quick)
    payload: dict[str, Any] = {"benchmark": NAME, "repeats": repeats, "threads": args.threads,
                               "machine": machine_info(), "cases": {}}
    records: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in todo}
    for r in range(repeats):
        k = r % len(todo)
        for name, rows, features, streamed in todo[k:] + todo[:k]:
            load1 = load()[0]
            rec = run_case(rows, features, streamed, args.threads)
            rec["load1"] = load1
            records[name].append(rec)
            print(f"  repeat {r + 1}/{repeats}  {name:<44} {median(rec['seconds'][1:]):8.3f} s/epoch  "
                  f"peak +{rec['peak_mb']:.0f} MB  (load {load1:.2f})", flush=True)
    for name, rows, features, streamed in todo:
        recs = records[name]
        per_epoch = median([median(rec["seconds"][1:]) for rec in recs])
        payload["cases"][name] = {
            "rows": rows, "features": features, "streamed": streamed, "runs": recs,
            "seconds_per_epoch": per_epoch, "us_per_row": 1e6 * per_epoch / rows,
            "peak_mb": median([rec["peak_mb"] for rec in recs]), "data_mb": recs[0]["data_mb"],
            "chunks_per_epoch": recs[0]["chunks"],
        }
    payload["machine"]["load_average_end"] = load()
    path = save(result_path(NAME, args.output), payload)
    rows_table = [[name, f"{c['seconds_per_epoch']:.3g}", f"{c['us_per_row']:.2f}", f"{c['data_mb']:.1f}",
                   f"{c['peak_mb']:.0f}", c["chunks_per_epoch"]] for name, c in payload["cases"].items()]
    print(f"\nMLP 128-128, batch 128, {args.threads} torch thread(s); medians of {repeats}")
    print(markdown_table(["rows x features", "s / epoch", "us / row", "data MB", "peak MB above imports",
                          "chunks / epoch"], rows_table))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
