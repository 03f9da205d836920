"""Does tuning regularization pay on images? regtune against the loop a user would write by hand.

    python benchmarks/images.py [--tasks a,b] [--nets a,b] [--arms a,b] [--seeds 3]
                                [--budgets 60,240] [--quick] [--output LABEL|PATH] [--report]

Tasks. Nothing is downloaded: no MNIST ships inside an installed package here (torchvision,
keras and tensorflow-datasets are absent; scipy.datasets and sklearn's fetch_* download), so
every task is built from scikit-learn's bundled ``load_digits`` (1,797 8x8 images, 10 classes,
pixel values 0..16, scaled to [0, 1]). Each task turns every one of the 1,797 images into a
16x16 image in one deterministic pass (numpy ``default_rng`` seeded by the task's own seed, so a
task is the same data on every run and machine), then splits them once, the same for every task:
597 test images (stratified, ``random_state=0``) and a pool of 1,200 from which the first
``n_train`` of a stratified shuffle (``random_state=0``) are the training images. The run seed
never changes the data, only the methods' own randomness.

| task | how each image is made | train | test |
|---|---|---|---|
| digits300 | 8x8 upsampled to 16x16 (bilinear, ``align_corners=False``) | 300 | 597 |
| shifted | 8x8 upsampled to 12x12, pasted into a black 16x16 canvas at a random offset (row, column each uniform in 0..4); seed 1 | 900 | 597 |
| rotated | 16x16 as in digits300, rotated about its centre by a uniform angle in [-45, 45] degrees (bilinear ``grid_sample``, zeros outside); seed 2 | 900 | 597 |
| noisy | 16x16 as in digits300, plus Gaussian noise (sd 0.3) on every pixel, clipped to [0, 1]; seed 3 | 900 | 597 |

The test images are made the same way (their own shifts, angles, noise): each task is a harder
distribution, not a train-time augmentation.

Networks, written here as a user would, with the constructor regtune's ``module=`` routing fills
from its signature (``image_shape``, ``n_outputs``); not regtune's built-in CNN:

- ``convbn``: two blocks of conv 3x3 (16, then 32 channels) - BatchNorm - ReLU - max-pool 2x2,
  then ``Dropout(0.25)`` and a linear head. ``dropout=0.25`` is a constructor argument, so
  regtune's ``dropout`` reaches it by name (as it does any ``nn.Dropout``).
- ``plain``: conv 3x3 (16) - ReLU - max-pool, conv 3x3 (32) - ReLU - max-pool, linear head; no
  batch norm, no dropout.

Arms, each on the same training images, scored by test accuracy on the same 597 test images:

- ``adamw``: the user's own loop (~30 lines, ``adamw_loop``): 10 % stratified validation split,
  ``AdamW(lr=1e-3)`` with its default ``weight_decay=0.01``, batch 64, shuffled, up to 200
  epochs, early stopping (patience 10) on validation loss, best-epoch weights restored; the
  network as written (its dropout and batch norm on). Stops at the largest budget if it must.
- ``baseline``: ``RegularizedNetClassifier(module=net, device="cpu", random_state=seed)`` with
  every default: regtune's unregularized network (its dropout set to 0), early stopping on its
  own validation split.
- ``regtune-B``: ``RegTuneClassifier(module=net, timeout=B, n_trials=1000, tracking_uri="off",
  device="cpu", random_state=seed)``: the default space (``"auto"``: the ``image`` space for
  images, with augmentation), sampler, pruner, cv and ensemble; ``n_trials`` is only a ceiling
  so the budget binds.
- ``regtune_image-B`` (only when named in ``--arms``): the same with ``space="image"`` named
  explicitly (what ``regtune`` was before ``"auto"`` became the default; the results of
  earlier runs under this name compare with ``regtune`` now).
- ``skorch-B``: a hand-written Optuna TPE study (seed = run seed) over lr (1e-4..1e-2, log),
  AdamW weight decay (1e-6..1e-1, log) and, for a network with a ``dropout`` argument, dropout
  (0..0.5), each trial one skorch ``NeuralNetClassifier`` (batch 64, up to 100 epochs, stratified
  10 % validation split, ``EarlyStopping(patience=10, load_best=True)`` on validation loss; a
  trial scores the validation accuracy of the epoch it keeps); the best trial's own network is
  the final model (no refit). No trial starts once the longest trial so far would overrun ``B``.

Per cell (task, net, arm, seed): test accuracy, wall and CPU seconds, trials run and their
states, which trial won (``baseline`` = regtune's unregularized trial, ``as_written`` = a trial
marked as the user's network as written, else ``regularized``; for skorch every trial is
``regularized`` unless its weight decay and dropout are ~0), whether a budgeted arm ended within
``1.05 B + 5`` s, and the 1/5/15-minute load average at its start and end.

Protocol. Each cell runs in its own fresh Python process (``OMP_NUM_THREADS=1``,
``torch.set_num_threads(1)``: one thread, nothing warm from an earlier cell), one at a time, and
its record is appended to ``benchmarks/results/images/<output>.json`` as soon as it ends: a
killed run keeps what it had, and a rerun skips finished cells (same task data fingerprint, same
arm and budget). A cell that outlives ``3 B + 120`` s is killed and recorded as an error. Order:
seed-major, then task, net, arm, so a run cut short still covers every task.

Summary (printed, and stored as ``summary``): per task x net, the mean test accuracy of every arm
over seeds, ``regtune-B - adamw`` in points for the largest regtune budget run, and "pays" =
that difference >= 0.5 point and the majority of seeds' best trial regularized.
"""

from __future__ import annotations

import os

for _var, _value in (("OMP_WAIT_POLICY", "PASSIVE"), ("OMP_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1"),
                     ("OPENBLAS_NUM_THREADS", "1")):
    os.environ[_var] = _value  # before numpy / torch load: one thread per process

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from _common import ROOT, load, machine_info, markdown_table, read, result_path, update  # noqa: E402
from torch import Tensor, nn  # noqa: E402

import regtune  # noqa: E402, F401 - the package under test, loaded once per cell process

NAME = "images"
SCHEMA = 1
N_TEST = 597
IMAGE = 16
QUICK_BUDGET = 8.0
PAYS_POINTS = 0.5


# ---- tasks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    name: str
    n_train: int
    make: Callable[[np.ndarray], np.ndarray]  # (N, 8, 8) in [0, 1] -> (N, 16, 16)
    note: str


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(images, dtype=torch.float32)[:, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()


def _upsampled(images: np.ndarray) -> np.ndarray:
    return _resize(images, IMAGE)


def _shifted(images: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1)
    small = _resize(images, 12)
    out = np.zeros((len(images), IMAGE, IMAGE), dtype=np.float32)
    offsets = rng.integers(0, IMAGE - 12 + 1, size=(len(images), 2))
    for i, (r, c) in enumerate(offsets):
        out[i, r:r + 12, c:c + 12] = small[i]
    return out


def _rotated(images: np.ndarray) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(2)
    angles = np.deg2rad(rng.uniform(-45.0, 45.0, size=len(images)))
    cos, sin = np.cos(angles), np.sin(angles)
    theta = torch.as_tensor(np.stack([np.stack([cos, -sin, 0 * cos], 1), np.stack([sin, cos, 0 * cos], 1)], 1),
                            dtype=torch.float32)
    t = torch.as_tensor(_upsampled(images))[:, None]
    grid = F.affine_grid(theta, list(t.shape), align_corners=False)
    return F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0].numpy()


def _noisy(images: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(3)
    up = _upsampled(images)
    return np.clip(up + rng.normal(0.0, 0.3, size=up.shape), 0.0, 1.0).astype(np.float32)


TASKS: dict[str, Task] = {t.name: t for t in [
    Task("digits300", 300, _upsampled, "digits upsampled to 16x16, 300 training images"),
    Task("shifted", 900, _shifted, "digits at 12x12 at a random place in 16x16, 900 training images"),
    Task("rotated", 900, _rotated, "digits at 16x16 rotated by -45..45 degrees, 900 training images"),
    Task("noisy", 900, _noisy, "digits at 16x16 with Gaussian pixel noise sd 0.3, 900 training images"),
]}


@dataclass(frozen=True)
class Data:
    X_tr: np.ndarray  # (n, 1, 16, 16) float32
    y_tr: np.ndarray
    X_te: np.ndarray
    y_te: np.ndarray
    fingerprint: str


def task_data(name: str) -> Data:
    """The task's fixed training and test images (see the module docstring)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    task = TASKS[name]
    X, y = load_digits(return_X_y=True)
    images = task.make((X.reshape(-1, 8, 8) / 16.0).astype(np.float32)).astype(np.float32)[:, None]
    idx = np.arange(len(y))
    pool, test = train_test_split(idx, test_size=N_TEST, random_state=0, stratify=y)
    train, _ = train_test_split(pool, train_size=task.n_train, random_state=0, stratify=y[pool])
    digest = hashlib.sha1(np.sort(train).tobytes() + np.sort(test).tobytes()
                          + np.round(images, 4).tobytes()).hexdigest()[:12]
    return Data(images[train], y[train].astype(np.int64), images[test], y[test].astype(np.int64), digest)


# ---- networks, as a user writes them ----------------------------------------------------------


class ConvBNNet(nn.Module):
    """Two conv-BN-ReLU-pool blocks, dropout, a linear head."""

    def __init__(self, image_shape: tuple[int, int, int], n_outputs: int, dropout: float = 0.25) -> None:
        super().__init__()
        c, h, w = image_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(32 * (h // 4) * (w // 4), n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.drop(self.features(x).flatten(1)))


class PlainConvNet(nn.Module):
    """Two conv-ReLU-pool blocks and a linear head: no batch norm, no dropout."""

    def __init__(self, image_shape: tuple[int, int, int], n_outputs: int) -> None:
        super().__init__()
        c, h, w = image_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(32 * (h // 4) * (w // 4), n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).flatten(1))


NETS: dict[str, type[nn.Module]] = {"convbn": ConvBNNet, "plain": PlainConvNet}


# ---- arms -------------------------------------------------------------------------------------


def adamw_loop(net: type, data: Data, seed: int, deadline: float) -> dict[str, Any]:
    """The loop a user writes: AdamW, early stopping on a validation split, best weights back."""
    import copy

    import torch
    from sklearn.model_selection import train_test_split

    torch.manual_seed(seed)
    tr, va = train_test_split(np.arange(len(data.y_tr)), test_size=0.1, random_state=seed, stratify=data.y_tr)
    X, y = torch.as_tensor(data.X_tr), torch.as_tensor(data.y_tr)
    model = net(image_shape=(1, IMAGE, IMAGE), n_outputs=10)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    best, best_state, best_epoch, waited, epoch, acc = float("inf"), None, 0, 0, 0, 0.0
    for epoch in range(200):
        model.train()
        order = torch.as_tensor(tr)[torch.randperm(len(tr))]
        for i in range(0, len(order), 64):
            b = order[i:i + 64]
            loss = torch.nn.functional.cross_entropy(model(X[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            out = model(X[va])
            val_loss = float(torch.nn.functional.cross_entropy(out, y[va]))
        if val_loss < best:
            best, best_state, best_epoch, waited = val_loss, copy.deepcopy(model.state_dict()), epoch, 0
            acc = float((out.argmax(1) == y[va]).float().mean())
        else:
            waited += 1
        if waited >= 10 or time.perf_counter() > deadline:
            break
    model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():
        pred = model(torch.as_tensor(data.X_te)).argmax(1).numpy()
    return {"pred": pred, "val": acc, "val_loss": best, "epochs": epoch + 1, "best_epoch": best_epoch, "n_trials": 1,
            "winner": "as_written"}


def run_adamw(net: type, data: Data, seed: int, budget: float) -> dict[str, Any]:
    return adamw_loop(net, data, seed, time.perf_counter() + budget)


def run_baseline(net: type, data: Data, seed: int, budget: float) -> dict[str, Any]:
    from regtune import RegularizedNetClassifier

    est = RegularizedNetClassifier(module=net, device="cpu", random_state=seed).fit(data.X_tr, data.y_tr)
    return {"pred": est.predict(data.X_te), "epochs": int(est.n_iter_), "n_trials": 1, "winner": "baseline"}


def _trial_kind(trial: Any) -> str:
    attrs = trial.user_attrs
    if attrs.get("baseline"):
        return "baseline"
    if any("as_written" in k or "as-written" in k for k in attrs) or attrs.get("prior") == "as_written":
        return "as_written"
    return "regularized"


def run_regtune(net: type, data: Data, seed: int, budget: float, space: str = "auto") -> dict[str, Any]:
    from regtune import RegTuneClassifier

    est = RegTuneClassifier(module=net, space=space, timeout=budget, n_trials=1000, tracking_uri="off",
                            device="cpu", random_state=seed)
    est.fit(data.X_tr, data.y_tr)
    pred = est.predict(data.X_te)
    states: dict[str, int] = {}
    kinds = []
    for t in est.study_.get_trials(deepcopy=False):  # the unstarted queued trials stay WAITING
        states[t.state.name] = states.get(t.state.name, 0) + 1
        if t.state.name in ("COMPLETE", "PRUNED", "FAIL"):
            kinds.append({"number": t.number, "state": t.state.name, "kind": _trial_kind(t), "value": t.value,
                          "epochs": len(t.intermediate_values),
                          "seconds": t.duration.total_seconds() if t.duration else None,
                          "stopped_for_time": bool(t.user_attrs.get("timeout") or t.user_attrs.get("interrupted"))})
    best = est.study_.best_trial
    return {"pred": pred, "n_trials": len(kinds), "states": states, "winner": _trial_kind(best),
            "best_trial": best.number, "best_params": est.best_params_, "val": est.best_score_,
            "baseline_val": getattr(est, "baseline_score_", None), "trials": kinds,
            "selection": getattr(est, "selection_", None)}


def run_skorch(net: type, data: Data, seed: int, budget: float) -> dict[str, Any]:
    """What a practitioner writes by hand: TPE over lr, weight decay (and dropout) with skorch."""
    import inspect

    import optuna
    import torch
    from skorch import NeuralNetClassifier
    from skorch.callbacks import EarlyStopping, EpochScoring
    from skorch.dataset import ValidSplit

    started = time.perf_counter()
    has_dropout = "dropout" in inspect.signature(net).parameters
    nets: dict[int, Any] = {}

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        wd = trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True)
        extra = {"module__dropout": trial.suggest_float("dropout", 0.0, 0.5)} if has_dropout else {}
        torch.manual_seed(seed * 1000 + trial.number)
        clf = NeuralNetClassifier(
            net, module__image_shape=(1, IMAGE, IMAGE), module__n_outputs=10, **extra,
            criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.AdamW, optimizer__weight_decay=wd, lr=lr,
            batch_size=64, max_epochs=100, train_split=ValidSplit(0.1, stratified=True, random_state=seed),
            iterator_train__shuffle=True, device="cpu", verbose=0,
            callbacks=[EpochScoring("accuracy", lower_is_better=False, name="valid_acc"),
                       EarlyStopping(monitor="valid_loss", patience=10, load_best=True)],
        )
        clf.fit(data.X_tr, data.y_tr)
        nets[trial.number] = clf
        losses = clf.history[:, "valid_loss"]
        return float(clf.history[int(np.argmin(losses)), "valid_acc"])  # the epoch whose weights it keeps

    def stop_in_time(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        times = [t.duration.total_seconds() for t in study.trials if t.duration is not None]
        if time.perf_counter() - started + max(times) > budget:
            study.stop()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, timeout=budget, callbacks=[stop_in_time])
    best = study.best_trial
    p = best.params
    regularized = p["weight_decay"] > 1e-4 or p.get("dropout", 0.0) > 0.01
    return {"pred": nets[best.number].predict(data.X_te), "n_trials": len(study.trials),
            "winner": "regularized" if regularized else "baseline", "best_trial": best.number,
            "best_params": p, "val": best.value}


ARMS: dict[str, tuple[Callable[..., dict[str, Any]], bool]] = {  # name: (run, budgeted)
    "adamw": (run_adamw, False), "baseline": (run_baseline, False),
    "regtune": (run_regtune, True), "skorch": (run_skorch, True),
    "regtune_image": (lambda *a: run_regtune(*a, space="image"), True),  # opt-in: not in the default --arms
}
DEFAULT_ARMS = ("adamw", "baseline", "regtune", "skorch")


def within(seconds: float, budget: float) -> bool:
    return seconds <= 1.05 * budget + 5


# ---- one cell, in its own process -------------------------------------------------------------


def run_cell(task: str, net: str, arm: str, budget: float, seed: int) -> dict[str, Any]:
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    data = task_data(task)
    load_start = load()
    c0, t0 = time.process_time(), time.perf_counter()
    try:
        out = ARMS[arm][0](NETS[net], data, seed, budget)
        pred = np.asarray(out.pop("pred")).ravel().astype(np.int64)
        rec: dict[str, Any] = {"test": float((pred == data.y_te).mean()), **out}
    except Exception as exc:  # one arm failing must not lose the others
        rec = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
    seconds = time.perf_counter() - t0
    rec.update(task=task, net=net, arm=arm, budget=budget, seed=seed, seconds=seconds,
               cpu_s=time.process_time() - c0, load_start=load_start, load_end=load(),
               torch_threads=torch.get_num_threads(), data=data.fingerprint,
               within_budget=within(seconds, budget) if ARMS[arm][1] else None)
    return rec


def _label(arm: str, budget: float) -> str:
    return f"{arm}-{budget:g}" if ARMS[arm][1] else arm


# ---- results file -----------------------------------------------------------------------------


def _update(path: Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    return update(path, change, schema=SCHEMA,
                  fresh=lambda: {"benchmark": NAME, "schema": SCHEMA, "tasks": {}, "sessions": [], "runs": []})


# ---- summary ----------------------------------------------------------------------------------


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task x net: mean test accuracy per arm label, seeds, winners, seconds, budget kept."""
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for r in runs:
        if "test" not in r:
            continue
        label = _label(r["arm"], r["budget"])
        c = cells.setdefault(f"{r['task']}/{r['net']}", {}).setdefault(
            label, {"tests": [], "winners": [], "seconds": [], "trials": [], "within": []})
        c["tests"].append(r["test"])
        c["winners"].append(r.get("winner"))
        c["seconds"].append(r["seconds"])
        c["trials"].append(r.get("n_trials"))
        c["within"].append(r.get("within_budget"))
    out: dict[str, Any] = {}
    for key, arms in cells.items():
        row: dict[str, Any] = {}
        for label, c in arms.items():
            row[label] = {"test_mean": float(np.mean(c["tests"])), "test_std": float(np.std(c["tests"])),
                          "seeds": len(c["tests"]), "winners": c["winners"],
                          "seconds_mean": float(np.mean(c["seconds"])), "trials": c["trials"],
                          "within_budget": c["within"]}
        regtunes = sorted((float(lbl.split("-", 1)[1]), lbl) for lbl in row if lbl.startswith("regtune-"))
        verdict: dict[str, Any] = {"reference": None, "minus_adamw_points": None, "pays": None}
        if regtunes and "adamw" in row:
            ref = regtunes[-1][1]
            diff = 100 * (row[ref]["test_mean"] - row["adamw"]["test_mean"])
            winners = row[ref]["winners"]
            regularized = sum(w == "regularized" for w in winners) > len(winners) / 2
            verdict = {"reference": ref, "minus_adamw_points": diff, "regularized_won": regularized,
                       "pays": bool(diff >= PAYS_POINTS and regularized)}
        out[key] = {"arms": row, **verdict}
    return out


def tables(summary: dict[str, Any]) -> str:
    labels = sorted({lbl for v in summary.values() for lbl in v["arms"]}, key=_order)
    header = ["task", "net", *labels, "regtune - adamw (points)", "pays"]
    rows = []
    for key, v in sorted(summary.items()):
        task, net = key.split("/")
        cells = [f"{v['arms'][lbl]['test_mean']:.4f}" if lbl in v["arms"] else "" for lbl in labels]
        diff = v["minus_adamw_points"]
        rows.append([task, net, *cells,
                     "" if diff is None else f"{diff:+.2f} ({v['reference']})",
                     "" if v["pays"] is None else ("yes" if v["pays"] else "no")])
    text = "Mean test accuracy over seeds\n\n" + markdown_table(header, rows)
    header2 = ["task", "net", "arm", "seeds", "seconds", "trials", "best trial", "within 1.05 B + 5 s"]
    rows2 = []
    for key, v in sorted(summary.items()):
        task, net = key.split("/")
        for lbl in sorted(v["arms"], key=_order):
            a = v["arms"][lbl]
            kept = [w for w in a["within_budget"] if w is not None]
            rows2.append([task, net, lbl, a["seeds"], f"{a['seconds_mean']:.0f}",
                          "/".join(str(t) for t in a["trials"]), ", ".join(str(w) for w in a["winners"]),
                          f"{sum(kept)}/{len(kept)}" if kept else ""])
    return text + "\n\nPer arm: wall seconds (mean), trials and best trial per seed\n\n" + markdown_table(header2, rows2)


def _order(label: str) -> tuple[int, float]:
    arm, _, budget = label.partition("-")
    return (list(ARMS).index(arm), float(budget or 0))


# ---- driver -----------------------------------------------------------------------------------


def _split(text: str, known: Any, what: str, parser: argparse.ArgumentParser) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    for bad in [n for n in names if n not in known]:
        parser.error(f"unknown {what} {bad!r}; choose from {', '.join(known)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated (default: all)")
    parser.add_argument("--nets", default=",".join(NETS), help="comma-separated (default: all)")
    parser.add_argument("--arms", default=",".join(DEFAULT_ARMS), help="comma-separated of " + ",".join(ARMS))
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..K-1 (default 3; quick 1)")
    parser.add_argument("--budgets", default=None, help="seconds for regtune and skorch (default 60,240; "
                                                         f"quick {QUICK_BUDGET:g})")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny budget, 1 seed")
    parser.add_argument("--output", "--out", dest="out", default=None,
                        help="results/images/<output>.json, or a .json path (default latest; quick: quick)")
    parser.add_argument("--report", action="store_true", help="print the tables of the saved results; run nothing")
    parser.add_argument("--cell", nargs=5, metavar=("TASK", "NET", "ARM", "BUDGET", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.cell:  # a child process: one cell, its record as JSON on the last line of stdout
        task, net, arm, budget, seed = args.cell
        os.chdir(tempfile.mkdtemp(prefix="regtune-images-"))  # nothing written into the checkout
        rec = run_cell(task, net, arm, float(budget), int(seed))
        sys.stdout.write("\n" + json.dumps(rec, default=str) + "\n")
        return

    tasks = _split(args.tasks, TASKS, "task", parser)
    nets = _split(args.nets, NETS, "net", parser)
    arms = _split(args.arms, ARMS, "arm", parser)
    seeds = args.seeds or (1 if args.quick else 3)
    budgets = ([float(b) for b in args.budgets.split(",")] if args.budgets else
               [QUICK_BUDGET] if args.quick else [60.0, 240.0])
    path = result_path(NAME, args.out or ("quick" if args.quick else "latest"))
    if args.report:
        print(tables(summarize(read(path, SCHEMA).get("runs", []))))
        return

    session = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid": os.getpid(), "argv": sys.argv[1:],
               "machine": machine_info(), "load_average_start": load()}
    fingerprints = {t: task_data(t).fingerprint for t in tasks}

    def begin(payload: dict[str, Any]) -> None:
        payload["sessions"].append(session)
        for t in tasks:
            payload["tasks"][t] = {"note": TASKS[t].note, "n_train": TASKS[t].n_train, "n_test": N_TEST,
                                   "data": fingerprints[t]}

    payload = _update(path, begin)
    done = {(r["task"], r["net"], r["arm"], r["budget"], r["seed"]) for r in payload["runs"]
            if "test" in r and r.get("data") == fingerprints.get(r["task"])}
    plan = []
    for seed in range(seeds):
        for t in tasks:
            for n in nets:
                for a in arms:
                    cap = max(budgets)  # unbudgeted arms: stopped at the largest budget if they must
                    for b in (budgets if ARMS[a][1] else [cap]):
                        if (t, n, a, b, seed) not in done:
                            plan.append((t, n, a, b, seed))
    print(f"{len(plan)} cells to run -> {path}  (load {load()})", flush=True)
    start = time.perf_counter()
    for t, n, a, b, seed in plan:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--cell", t, n, a, f"{b:g}", str(seed)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")])}
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3 * b + 120, env=env)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            rec = json.loads(lines[-1]) if lines else {
                "error": f"exit {proc.returncode}", "traceback": proc.stderr[-3000:]}
        except subprocess.TimeoutExpired:
            rec = {"error": f"killed after {3 * b + 120:g} s"}
        rec.setdefault("task", t)
        rec.setdefault("net", n)
        rec.setdefault("arm", a)
        rec.setdefault("budget", b)
        rec.setdefault("seed", seed)
        rec.setdefault("seconds", time.perf_counter() - t0)
        rec["process_seconds"] = time.perf_counter() - t0
        rec["session"] = f"{session['started']} pid {session['pid']}"

        def add(payload: dict[str, Any], rec: dict[str, Any] = rec) -> None:
            key = (rec["task"], rec["net"], rec["arm"], rec["budget"], rec["seed"])
            payload["runs"] = [r for r in payload["runs"]
                               if (r["task"], r["net"], r["arm"], r["budget"], r["seed"]) != key] + [rec]
            payload["summary"] = summarize(payload["runs"])
            for s in payload["sessions"]:
                if s.get("pid") == session["pid"] and s.get("started") == session["started"]:
                    s["elapsed_s"] = time.perf_counter() - start
                    s["load_average_end"] = load()

        payload = _update(path, add)
        shown = f"{rec['test']:.4f}" if "test" in rec else rec["error"][:300]
        print(f"seed {seed} {t:<10} {n:<7} {_label(a, b):<12} {shown}  {rec['seconds']:.1f} s, "
              f"{rec.get('n_trials', '?')} trials, best {rec.get('winner')}, load {rec.get('load_start')}",
              flush=True)
    print()
    print(tables(summarize(read(path, SCHEMA).get("runs", []))))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
