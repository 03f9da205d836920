"""Shared plumbing of the benchmark scripts: machine facts, interleaved repeats, tables, results.

Results live in ``benchmarks/results/<script>/<label>.json``: one folder per script, one file
per labelled run (``latest`` by default; ``quick``, ``loaded``, ``before-11b8679`` ...). Every
script takes ``--output LABEL`` and saves through :func:`save` (one write) or :func:`update`
(read, change, write under a lock, for scripts that append as they go or that two runs share).

The machine these run on is shared and noisy, so every script runs its contenders side by
side in one process, interleaves the repeats (repeat ``r`` starts with contender ``r``), and
reports medians and ratios of medians, with the load average before and after.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

__all__ = ["RESULTS", "ROOT", "interleaved", "load", "machine_info", "markdown_table", "median", "read", "result_path",
           "save", "update"]


def load() -> list[float]:
    """1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def _commit() -> str | None:
    try:  # read-only; no optional index refresh
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
        return out.stdout.strip() or None
    except Exception:
        return None


def machine_info(extra: Sequence[str] = ()) -> dict[str, Any]:
    """Facts about this machine and run; ``extra`` names more packages whose versions to record."""
    import torch

    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "load_average": load(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in
                     ("torch", "scikit-learn", "optuna", "mlflow", "skorch", "numpy", "regtune", *extra)},
        "commit": _commit(),
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def interleaved(
    contenders: Mapping[str, Callable[[], Any]],
    repeats: int,
    *,
    warmup: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """Time each contender ``repeats`` times, rotating the order every repeat.

    Returns per contender the wall seconds, process CPU seconds, the load average seen at the
    start of each run and whatever the callable returned last (e.g. a score).
    """
    names = list(contenders)
    out: dict[str, dict[str, Any]] = {n: {"wall": [], "cpu": [], "load1": [], "result": None} for n in names}
    if warmup:  # first calls pay for imports, allocator growth, lazy kernels
        for name in names:
            contenders[name]()
    for r in range(repeats):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            load1 = os.getloadavg()[0]
            c0, t0 = time.process_time(), time.perf_counter()
            result = contenders[name]()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            rec = out[name]
            rec["wall"].append(wall)
            rec["cpu"].append(cpu)
            rec["load1"].append(round(load1, 2))
            rec["result"] = result
            log(f"  repeat {r + 1}/{repeats}  {name:<32} {wall:8.3f} s  (load {load1:.2f})")
    for rec in out.values():
        rec["median"] = median(rec["wall"])
        rec["min"] = min(rec["wall"])
        rec["cpu_median"] = median(rec["cpu"])
    return out


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def result_path(script: str, label: str | None = None) -> Path:
    """``results/<script>/<label>.json`` (label ``latest`` unless given); a label that ends in
    ``.json`` or names a folder is taken as a path, for runs kept outside the checkout."""
    label = label or "latest"
    if label.endswith(".json") or os.sep in label:
        return Path(label).resolve()
    return RESULTS / script / f"{label}.json"


def save(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically, so a partial run never leaves a broken file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".json.{os.getpid()}.tmp")  # two runs may save at once
    tmp.write_text(json.dumps(payload, indent=2, default=_default) + "\n")
    tmp.replace(path)
    return path


def read(path: Path, schema: int | None = None) -> dict[str, Any]:
    """The saved results, or ``{}`` when there are none or (``schema`` given) they have another layout."""
    if not path.exists():
        return {}
    payload = json.loads(path.read_text())
    if schema is not None and payload.get("schema") != schema:
        print(f"{path} has another layout (schema {payload.get('schema')}); starting afresh", flush=True)
        return {}
    return payload


def update(
    path: Path,
    change: Callable[[dict[str, Any]], None],
    fresh: Callable[[], dict[str, Any]] = dict,
    schema: int | None = None,
) -> dict[str, Any]:
    """Read, change and save the results under a lock: runs that share one file (say one per
    method, one per core) each keep the others' records. ``fresh()`` starts a missing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock, contextlib.ExitStack() as stack:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stack.callback(fcntl.flock, lock, fcntl.LOCK_UN)
        payload = read(path, schema) or fresh()
        change(payload)
        save(path, payload)
    return payload


def _default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
