"""Tuner overhead: what Optuna storage and MLflow logging cost on top of training.

    python benchmarks/tuner_overhead.py [--quick] [--repeats 5] [--trials 30] [--sqlite] [--output latest]

A 30-trial study on ``digits`` (space ``minimal``, seed 0, ``pruner="none"``, ``cv=1``) run
through ``regtune.tuning.tuner.tune`` with a journal file (the default storage) and MLflow on
SQLite, against the same 30 configurations (``space.to_config(t.params)`` of the finished
study) and the same two refits trained by the bare estimator: no Optuna, no MLflow. Every run
uses a fresh directory. The default study runs twice: in an empty directory, where it pays
for creating the MLflow SQLite store (its tables: a one-off cost of the first run in a
directory), and in one whose store exists (every later run). The same study with in-memory
storage and MLflow off (and with ``--sqlite``, SQLite storage) runs interleaved with them.
Inside each tuner run, probes time every storage and MLflow call (``trial.report``,
``log_epoch``, the tracker's batched writes in its background thread, trial runs, model
logging, ...), so the report says where the overhead goes; the CPU of the MLflow tracker
process (trials log through it, regtune.tracking.relay) is recorded beside them. Micro-benchmarks then time single
calls on each storage.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch
from _common import interleaved, load, machine_info, markdown_table, median, result_path, save

import regtune.estimators.persistence
import regtune.nn.trainer
import regtune.tracking.relay
import regtune.tracking.tracker
import regtune.tuning.final
import regtune.tuning.queue
import regtune.tuning.storage
import regtune.tuning.trial
import regtune.tuning.tuner
import regtune.tuning.worker
from regtune import RegularizedNetClassifier
from regtune.data.loading import load_dataset
from regtune.space.space import SearchSpace
from regtune.tuning.prepare import prepare
from regtune.tuning.settings import TuneSettings
from regtune.tuning.trial import trial_seed
from regtune.tuning.tuner import tune

NAME = "tuner_overhead"
DATASET, SPACE, SEED = "digits", "minimal", 0


class Probes:
    """Accumulate wall time and call counts of patched functions, by label."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.phase = "trial"
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, attr: str, label: str | Callable[[], str]) -> None:
        original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def probe(*args: Any, **kwargs: Any) -> Any:
            name = label() if callable(label) else label
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t0
                self.calls[name] += 1

        setattr(owner, attr, probe)
        self._undo.append((owner, attr, original))

    def phased(self, owner: Any, attr: str, phase: str) -> None:
        """While ``owner.attr`` runs, training time counts toward ``phase``."""
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def enter(*args: Any, **kwargs: Any) -> Any:
            before, self.phase = self.phase, phase
            try:
                return fn(*args, **kwargs)
            finally:
                self.phase = before

        setattr(owner, attr, enter)
        self._undo.append((owner, attr, owner.__dict__[attr] if isinstance(owner, type) else fn))

    def undo(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()


def install(probes: Probes) -> None:
    T, trial, study = regtune.tracking.tracker.MLflowTracker, optuna.trial.Trial, optuna.study.Study
    # setup
    probes.wrap(regtune.tuning.tuner, "prepare", "setup: split + preprocess")
    probes.wrap(regtune.tuning.tuner, "_open_storage", "setup: open storage")
    probes.wrap(regtune.tuning.tuner, "_open_tracker", "setup: open MLflow store")
    probes.wrap(regtune.tuning.tuner, "open_study", "setup: create study + enqueue trials")
    probes.wrap(T, "start_study_run", "setup: parent run")
    probes.wrap(T, "log_artifact", "setup: log search space")
    # per trial
    probes.wrap(regtune.tuning.queue, "pop_waiting_trial", "trial: claim (storage)")
    probes.wrap(trial, "set_user_attr", "trial: set_user_attr (storage)")
    probes.wrap(SearchSpace, "sample", "trial: sample params (TPE + storage)")
    probes.wrap(T, "start_trial_run", "trial: MLflow start run + params")
    probes.wrap(T, "finish_trial", "trial: MLflow finish run + metrics")
    probes.wrap(study, "tell", "trial: study.tell (storage)")
    probes.wrap(regtune.tuning.worker, "run_objective", "trial: objective (total)")
    # per epoch
    probes.wrap(trial, "report", "epoch: trial.report (storage)")
    probes.wrap(trial, "should_prune", "epoch: should_prune")
    probes.wrap(T, "log_epoch", "epoch: MLflow log_epoch (queues)")
    probes.wrap(T, "_write_queued", "MLflow batched writes (background thread + trial end)")
    probes.wrap(regtune.tuning.trial, "weight_stats", "trial: weight stats for MLflow")
    probes.wrap(regtune.nn.trainer.Trainer, "step", lambda: f"training: {probes.phase} epochs")
    probes.wrap(regtune.nn.trainer.Trainer, "__init__", lambda: f"training: {probes.phase} model build")
    # end
    probes.phased(regtune.tuning.final, "refit", "refit")
    probes.wrap(regtune.tuning.final, "refit", "end: refit best + baseline (total)")
    probes.wrap(regtune.estimators.persistence, "log_model", "end: MLflow log_model")
    probes.wrap(regtune.tuning.tuner, "finish", "end: finish (total: refits, test scores, MLflow)")


def settings_for(kind: str, workdir: Path, n_trials: int) -> TuneSettings:
    storage = {"journal": str(workdir / "regtune.journal"), "sqlite": f"sqlite:///{workdir}/optuna.db",
               "memory": ":memory:"}[kind]
    tracking = "off" if kind == "memory" else f"sqlite:///{workdir}/mlflow.db"
    return TuneSettings(space=SPACE, n_trials=n_trials, pruner="none", cv=1, seed=SEED, storage=storage,
                        tracking_uri=tracking, progress=False, device="cpu", study_name=f"overhead-{kind}")


class Runs:
    """The contenders; remembers the last finished study, probes and timings."""

    def __init__(self, n_trials: int) -> None:
        self.n_trials = n_trials
        self.studies: dict[str, optuna.Study] = {}
        self.probes: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.dataset = load_dataset(DATASET)
        self.configs: list[tuple[int, Any]] | None = None
        self.refits: list[tuple[Any, int, dict[str, Any]]] = []

    def tuner(self, kind: str, store: Path | None = None) -> Callable[[], float]:
        """``store``: an MLflow SQLite file copied into the run's directory first (a later run)."""

        def run() -> float:
            workdir = Path(tempfile.mkdtemp(prefix=f"regtune-overhead-{kind}-"))
            if store is not None:
                shutil.copy(store, workdir / "mlflow.db")
            cwd = os.getcwd()
            os.chdir(workdir)  # MLflow artifacts go to ./mlruns
            probes = Probes()
            install(probes)
            before = _tracker_process_cpu()
            try:
                result = tune(self.dataset, settings=settings_for(kind, workdir, self.n_trials))
            finally:
                probes.undo()
                os.chdir(cwd)
            after = _tracker_process_cpu()
            if after is not None:  # MLflow's CPU, moved out of this process: still counted
                probes.seconds["MLflow tracker process CPU (another process)"] += after - (before or 0.0)
                probes.calls["MLflow tracker process CPU (another process)"] += 1
            self.studies[kind] = result.study
            self.last_store = workdir / "mlflow.db"
            label = kind + (", store exists" if store is not None else "")
            self.probes[label].append({"seconds": dict(probes.seconds), "calls": dict(probes.calls),
                                      "epochs": sum(len(t.intermediate_values) for t in result.study.trials)})
            return result.best_value

        return run

    def bare(self) -> float:
        """The study's configurations and refits, trained by the estimator alone."""
        if self.configs is None:
            study = self.studies["journal"]
            space = SearchSpace.from_yaml(SPACE)
            self.configs = [(t.number, space.to_config(t.params)) for t in sorted(study.trials, key=lambda t: t.number)]
            best = study.best_trial
            base = next(t for t in study.trials if t.user_attrs.get("baseline"))
            for t in (base, best):
                params = {}
                if space.to_config(t.params).early_stopping and "best_epoch" in t.user_attrs:
                    params = {"early_stopping": False, "max_epochs": max(1, round(t.user_attrs["best_epoch"]) + 1)}
                self.refits.append((space.to_config(t.params), t.number, params))
        folds, *_ = prepare(self.dataset, settings_for("memory", Path("."), self.n_trials))
        (tr, va), = folds.splits
        scores = []
        for number, config in self.configs:
            net = _estimator(config, folds.image_shape, trial_seed(SEED, number))
            for _ in net.fit_iter(folds.X[tr], folds.y[tr], validation_data=(folds.X[va], folds.y[va])):
                pass
            scores.append(net.history_[net.best_epoch_]["val_score"])
        for config, number, params in self.refits:
            _estimator(config, folds.image_shape, trial_seed(SEED, number)).set_params(**params).fit(folds.X, folds.y)
        return max(scores)


def _tracker_process_cpu() -> float | None:
    """CPU seconds the session's MLflow tracker process has used so far (None: none runs)."""
    process = regtune.tracking.relay.TrackerProcess._shared
    if process is None or not process.alive():
        return None
    fields = Path(f"/proc/{process._proc.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _estimator(config: Any, image_shape: Any, seed: int) -> RegularizedNetClassifier:
    return RegularizedNetClassifier(**config.to_dict(), image_shape=image_shape, device="cpu", random_state=seed)


# ---- micro-benchmarks: single calls on each storage ----------------------------------------


def _metric_list(record: dict[str, float], step: int) -> list:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(key, value, now, step) for key, value in record.items()]


def micro(n: int) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stores = {
            "journal": lambda: regtune.tuning.storage.make_storage(f"{tmp}/m.journal"),
            "sqlite": lambda: regtune.tuning.storage.make_storage(f"sqlite:///{tmp}/m.db"),
            "memory": lambda: regtune.tuning.storage.make_storage(":memory:"),
        }
        for kind, make in stores.items():
            study = optuna.create_study(storage=make(), study_name=f"micro-{kind}", direction="maximize")
            for _ in range(30):  # a study with history, like the end of a 30-trial run
                t = study.ask()
                for step in range(30):
                    t.report(0.5, step)
                study.tell(t, 0.5)
            t = study.ask()
            t0 = time.perf_counter()
            for step in range(n):
                t.report(0.5, step)
            report = (time.perf_counter() - t0) / n
            t0 = time.perf_counter()
            for _ in range(n):
                t.should_prune()
            prune = (time.perf_counter() - t0) / n
            study.tell(t, 0.5)
            t0 = time.perf_counter()
            for _ in range(20):
                study.tell(study.ask(), 0.5)
            ask_tell = (time.perf_counter() - t0) / 20
            out[f"storage {kind}"] = {"trial.report ms": report * 1e3, "should_prune ms": prune * 1e3,
                                      "ask + tell ms": ask_tell * 1e3}
        tracker = regtune.tracking.tracker.MLflowTracker(f"sqlite:///{tmp}/mlflow.db", "micro", artifact_root=f"{tmp}/mlruns")
        parent = tracker.start_study_run("micro", params={"a": 1})
        record = {"train_loss": 0.5, "val_loss": 0.4, "val_score": 0.9}
        t0 = time.perf_counter()
        runs = [tracker.start_trial_run(parent, i, params={f"p{j}": j for j in range(40)}) for i in range(10)]
        start = (time.perf_counter() - t0) / 10
        t0 = time.perf_counter()
        for step in range(n):
            tracker.log_epoch(runs[0], step, record)
        epoch = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        tracker.flush()
        queued_flush = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        for step in range(n):  # what log_epoch cost before it queued: one log_batch per epoch
            tracker.log_metrics(runs[3], record, step)
        per_epoch_write = (time.perf_counter() - t0) / n
        # What an asynchronous log_epoch would cost (MlflowClient.log_batch(synchronous=False)).
        t0 = time.perf_counter()
        client = MlflowClient(tracker.tracking_uri)
        futures = [client.log_batch(runs[1], metrics=_metric_list(record, s), synchronous=False)
                   for s in range(n)]
        queued = (time.perf_counter() - t0) / n
        for f in futures:
            f.wait()
        async_total = (time.perf_counter() - t0) / n
        # All of a trial's epochs in one batch at the end instead of one write per epoch.
        t0 = time.perf_counter()
        client.log_batch(runs[2], metrics=[m for s in range(n) for m in _metric_list(record, s)])
        one_batch = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        for r in runs:
            tracker.finish_trial(r, "COMPLETE", metrics={"value": 0.9, "seconds": 1.0})
        finish = (time.perf_counter() - t0) / len(runs)
        out["mlflow sqlite"] = {"start_trial_run ms": start * 1e3, "log_epoch (queue) ms": epoch * 1e3,
                                "flush of the queued epochs, per epoch ms": queued_flush * 1e3,
                                "one log_batch per epoch ms": per_epoch_write * 1e3,
                                "log_epoch async, enqueue ms": queued * 1e3,
                                "log_epoch async, incl. flush ms": async_total * 1e3,
                                "epochs batched at trial end, per epoch ms": one_batch * 1e3,
                                "finish_trial ms": finish * 1e3}
    return out


def import_seconds() -> dict[str, float]:
    """Fresh-interpreter import times: what a CLI run pays once."""
    out = {}
    for mod in ("regtune", "optuna", "mlflow", "regtune.tuner"):
        code = f"import time; t=time.perf_counter(); import {mod}; print(time.perf_counter()-t)"
        times = []
        for _ in range(3):
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
            times.append(float(res.stdout.strip().splitlines()[-1]))
        out[mod] = median(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 trials, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--sqlite", action="store_true", help="also the study on SQLite storage")
    parser.add_argument("--output", default="latest", help=f"results/{NAME}/<output>.json")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    n_trials = args.trials or (10 if args.quick else 30)
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    runs = Runs(n_trials)
    payload: dict[str, Any] = {"benchmark": NAME, "quick": args.quick, "repeats": repeats, "n_trials": n_trials,
                               "threads": args.threads, "machine": machine_info()}
    # Warm up imports (mlflow, sqlalchemy, alembic) and produce the configurations for "bare".
    print("warm-up ...", flush=True)
    runs.tuner("journal")()
    store = Path(tempfile.mkdtemp(prefix="regtune-overhead-store-")) / "mlflow.db"
    shutil.copy(runs.last_store, store)  # a store with one study in it, as after a first run
    contenders = {
        "tune: journal + MLflow (default), store exists": runs.tuner("journal", store=store),
        "tune: journal + MLflow (default), new store": runs.tuner("journal"),
        **({"tune: sqlite + MLflow, store exists": runs.tuner("sqlite", store=store)} if args.sqlite else {}),
        "tune: in-memory, MLflow off": runs.tuner("memory"),
        "bare estimator": runs.bare,
    }
    timing = interleaved(contenders, repeats, warmup=False)
    bare = timing["bare estimator"]
    for rec in timing.values():
        rec["overhead_share"] = (rec["median"] - bare["median"]) / rec["median"]
        rec["vs_bare"] = rec["median"] / bare["median"]
        # Repeat r of every contender ran back to back, under about the same load.
        rec["vs_bare_paired"] = [a / b for a, b in zip(rec["wall"], bare["wall"], strict=True)]
        rec["vs_bare_paired_median"] = median(rec["vs_bare_paired"])
        # CPU seconds of this process (all its threads): what the work costs, whatever else
        # runs on the machine; wall time also counts waiting for a core under load.
        rec["cpu_vs_bare"] = rec["cpu_median"] / bare["cpu_median"]
    payload["timing"] = timing
    payload["probes"] = {kind: _median_probes(p) for kind, p in runs.probes.items()}
    save(result_path(NAME, args.output), payload)
    print("micro-benchmarks ...", flush=True)
    payload["micro"] = micro(100 if args.quick else 300)
    payload["imports_s"] = import_seconds()
    payload["machine"]["load_average_end"] = load()
    path = save(result_path(NAME, args.output), payload)
    print_tables(payload)
    print(f"\nwrote {path}")


def _median_probes(records: list[dict[str, Any]]) -> dict[str, Any]:
    labels = sorted({k for r in records for k in r["seconds"]})
    return {
        "epochs": median([r["epochs"] for r in records]),
        "seconds": {k: median([r["seconds"].get(k, 0.0) for r in records]) for k in labels},
        "calls": {k: median([r["calls"].get(k, 0) for r in records]) for k in labels},
    }


def print_tables(payload: dict[str, Any]) -> None:
    t = payload["timing"]
    rows = [[name, rec["median"], f"{rec['vs_bare']:.2f}x", f"{rec['vs_bare_paired_median']:.2f}x",
             rec["cpu_median"], f"{rec['cpu_vs_bare']:.2f}x", median(rec["load1"])] for name, rec in t.items()]
    print(f"\n{payload['n_trials']} trials on {DATASET} (space {SPACE}, cv=1, pruner none): medians")
    print(markdown_table(["run", "wall s", "vs bare", "vs bare (paired repeats)", "CPU s", "CPU vs bare",
                          "load1"], rows))
    kinds = list(payload["probes"])
    labels = sorted({k for p in payload["probes"].values() for k in p["seconds"]})
    rows = []
    for label in labels:
        row: list[Any] = [label]
        for kind in kinds:
            p = payload["probes"][kind]
            s, n = p["seconds"].get(label, 0.0), p["calls"].get(label, 0)
            row.append(f"{s:.2f} s / {n:.0f} = {1e3 * s / n:.1f} ms" if n else "")
        rows.append(row)
    print("\nWhere the tuner's time goes (median over runs; total / calls = per call)")
    print(markdown_table(["probe", *kinds], rows))
    rows = [[group, k, v] for group, vals in payload["micro"].items() for k, v in vals.items()]
    print("\nSingle calls (ms)")
    print(markdown_table(["component", "call", "ms"], rows))
    print("\nImport times in a fresh interpreter (s): " + ", ".join(f"{k} {v:.2f}" for k, v in payload["imports_s"].items()))


if __name__ == "__main__":
    main()
