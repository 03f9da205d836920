"""Helpers for the tests that drive ``regtune`` worker processes (crash, PostgreSQL, bad input):
the command line, a space whose trials last a set number of epochs, and readers for the
Optuna and MLflow stores those processes write.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "MlflowRun",
    "Worker",
    "load_trials",
    "mlflow_runs",
    "mlflow_steps",
    "regtune_command",
    "start_worker",
    "wait_for",
    "write_space",
]

T = TypeVar("T")

_SPACE = """\
description: tiny test space; {max_epochs} epochs of a one-layer net
fixed:
  architecture: mlp
  hidden_layer_sizes: [{width}]
  batch_size: {batch_size}
  max_epochs: {max_epochs}
params:
  lr: {{type: float, low: 1.0e-3, high: 1.0e-2, log: true, default: 3.0e-3}}
regularizers:
  l2:
    l2: {{type: float, low: 1.0e-6, high: 1.0e-2, log: true}}
"""


def write_space(path: Path, *, max_epochs: int, batch_size: int = 16, width: int = 8) -> Path:
    """A two-parameter space; no early stopping, so every trial trains ``max_epochs`` epochs."""
    path.write_text(_SPACE.format(max_epochs=max_epochs, batch_size=batch_size, width=width))
    return path


def regtune_command(*args: Any) -> list[str]:
    """``regtune ARGS`` through the installed console script (as users run it)."""
    script = Path(sys.executable).with_name("regtune")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "regtune.cli.app"]
    return [*base, *(str(a) for a in args)]


def _worker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "REGTUNE_DEBUG")}
    # several workers share two cores: one torch thread each trains tiny nets fastest
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    return env


@dataclass
class Worker:
    """A ``regtune`` process whose stdout and stderr go to files (no pipe can fill up)."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"regtune did not finish in {timeout} s; stderr:\n{self.stderr[-3000:]}") from None

    def describe(self) -> str:
        return f"exit {self.proc.returncode}\nstdout:\n{self.stdout[-2000:]}\nstderr:\n{self.stderr[-4000:]}"


def start_worker(args: list[Any], cwd: Path, name: str) -> Worker:
    """Start ``regtune ARGS`` in ``cwd``; output goes to ``cwd/NAME.out`` and ``cwd/NAME.err``."""
    out, err = cwd / f"{name}.out", cwd / f"{name}.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(regtune_command(*args), cwd=cwd, stdout=o, stderr=e, env=_worker_env())
    return Worker(proc, out, err)


def wait_for(condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


_storages: dict[str, Any] = {}


def _schema_ready(url: str) -> bool:
    """Whether a worker has finished creating Optuna's tables (``alembic_version`` is its last
    step). Until then the reader keeps out: even with ``skip_table_creation``, Optuna's
    RDBStorage stamps ``alembic_version``, which would race the worker creating the schema."""
    import psycopg
    import sqlalchemy

    libpq = sqlalchemy.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, connect_timeout=10) as con:
        row = con.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL").fetchone()
        if not (row and row[0]):
            return False
        row = con.execute("SELECT count(*) FROM alembic_version").fetchone()
        return bool(row and row[0])


def load_trials(storage: str | Path, study: str) -> list[Any] | None:
    """The study's trials (``FrozenTrial``), or ``None`` while it does not exist yet.

    ``storage`` is a journal file or a PostgreSQL URL. Reading never writes: it waits until
    the workers have created the database schema.
    """
    import optuna

    key = str(storage)
    if key not in _storages:
        if "://" in key:
            if not _schema_ready(key):
                return None
            _storages[key] = optuna.storages.RDBStorage(key, skip_table_creation=True,
                                                        skip_compatibility_check=True)
        else:
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            if not Path(key).exists():
                return None
            _storages[key] = JournalStorage(JournalFileBackend(key))
    store = _storages[key]
    try:
        study_id = store.get_study_id_from_name(study)
    except KeyError:  # no such study yet
        return None
    return store.get_all_trials(study_id, deepcopy=False)


@dataclass
class MlflowRun:
    run_id: str
    name: str
    status: str
    lifecycle: str
    tags: dict[str, str]
    params: dict[str, str]

    @property
    def trial(self) -> int | None:
        value = self.tags.get("regtune.trial_number")
        return int(value) if value is not None else None


def mlflow_runs(db: Path) -> list[MlflowRun]:
    """Every run in an MLflow SQLite store (deleted ones too), read without MLflow."""
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as con:
        try:
            rows = con.execute("SELECT run_uuid, name, status, lifecycle_stage FROM runs").fetchall()
        except sqlite3.OperationalError:  # schema not created yet
            return []
        tags: dict[str, dict[str, str]] = {}
        params: dict[str, dict[str, str]] = {}
        for run, key, value in con.execute("SELECT run_uuid, key, value FROM tags"):
            tags.setdefault(run, {})[key] = value
        for run, key, value in con.execute("SELECT run_uuid, key, value FROM params"):
            params.setdefault(run, {})[key] = value
    return [MlflowRun(r, n or "", s, lc, tags.get(r, {}), params.get(r, {})) for r, n, s, lc in rows]


def mlflow_steps(db: Path, key: str) -> dict[str, set[int]]:
    """The steps of metric ``key`` logged per run in an MLflow SQLite store, read without MLflow."""
    if not db.exists():
        return {}
    steps: dict[str, set[int]] = {}
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as con:
        for run, step in con.execute("SELECT run_uuid, step FROM metrics WHERE key = ?", (key,)):
            steps.setdefault(run, set()).add(step)
    return steps
