"""Cohort prototype: K trials in one batched network against the same K trials one by one.

    python benchmarks/cohort.py [--quick] [--repeats 3] [--members 4,8,16] [--threads 1]
                                [--width 128] [--batch 128] [--output cohort]

Digits-sized data (1,437 x 64, 10 classes, standardized random features: the speed does not
depend on the values), the default space's default MLP (128-128, batch 128, Adam; ``--width``
and ``--batch`` change it), 10 epochs.
Each member has its own lr, L2 and seed. Contenders: :class:`regtune.nn.cohort.CohortTrainer`
with K members, and the K members trained one after another by
:class:`regtune.nn.trainer.Trainer` (what the tuner does today). Reported: median wall seconds
and member-epochs per second, interleaved repeats, machine load. Training only: no Optuna, no
MLflow, no tuner (the prototype is not wired into it).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from _common import interleaved, load, machine_info, markdown_table, save

from regtune.config import RegConfig
from regtune.nn.cohort import CohortTrainer
from regtune.nn.models import build_model
from regtune.nn.trainer import Trainer

NAME = "cohort"
EPOCHS = 10


def _build(config: RegConfig) -> torch.nn.Module:
    return build_model(config, 64, 10)


def _members(k: int, width: int, batch: int) -> list[RegConfig]:
    return [RegConfig(hidden_layer_sizes=(width, width), batch_size=batch, max_epochs=EPOCHS,
                      lr=10 ** (-3.5 + i / max(1, k)), l2=1e-5 * i) for i in range(k)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--members", default="4,8,16")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--width", type=int, default=128, help="units per hidden layer (2 layers)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--output", default=NAME)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (1 if args.quick else 3)
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(1437, 64, generator=g), torch.randint(0, 10, (1437,), generator=g)
    Xv, yv = torch.randn(360, 64, generator=g), torch.randint(0, 10, (360,), generator=g)
    payload: dict[str, Any] = {"benchmark": NAME, "epochs": EPOCHS, "threads": args.threads, "repeats": repeats,
                               "width": args.width, "batch": args.batch,
                               "machine": machine_info(), "members": {}}
    for k in (int(m) for m in args.members.split(",")):
        members, seeds = _members(k, args.width, args.batch), list(range(k))

        def cohort(members: list[RegConfig] = members, seeds: list[int] = seeds) -> None:
            trainer = CohortTrainer(_build, members, X, y, Xv, yv, seeds=seeds)
            while not trainer.done:
                trainer.step()

        def one_by_one(members: list[RegConfig] = members, seeds: list[int] = seeds) -> None:
            for config, seed in zip(members, seeds, strict=True):
                trainer = Trainer(lambda config=config: _build(config), config, X, y, Xv, yv, task="classification",
                                  seed=seed)
                while not trainer.done:
                    trainer.step()

        print(f"K = {k}", flush=True)
        timing = interleaved({"cohort": cohort, "one by one": one_by_one}, repeats)
        for rec in timing.values():
            rec["member_epochs_per_s"] = k * EPOCHS / rec["median"]
        timing["speedup"] = timing["one by one"]["median"] / timing["cohort"]["median"]
        payload["members"][k] = timing
        save(args.output, payload)
    payload["machine"]["load_average_end"] = load()
    path = save(args.output, payload)
    rows = [[k, t["one by one"]["median"], t["cohort"]["median"], f"{t['speedup']:.2f}x",
             f"{t['cohort']['member_epochs_per_s']:.0f}"] for k, t in payload["members"].items()]
    print(f"\nMLP {args.width}-{args.width}, batch {args.batch}, {EPOCHS} epochs on 1,437 x 64, {args.threads} "
          f"thread(s); medians of {repeats}")
    print(markdown_table(["members K", "one by one s", "cohort s", "cohort speedup", "member-epochs/s (cohort)"], rows))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
