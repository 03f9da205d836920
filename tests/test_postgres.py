"""Several `regtune tune` workers share one study on a real PostgreSQL server.

Each worker is a separate process, as it would be on separate machines: same ``--storage`` and
``--study``, one MLflow store. The study must hold exactly the requested trials, each logged
once, and the database password must never show up anywhere a user or a log could read it.
"""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

import pytest
from plugins.postgres import PASSWORD
from worker_helpers import load_trials, mlflow_runs, start_worker, write_space

pytestmark = pytest.mark.integration

N_TRIALS = 24
N_WORKERS = 3


def _secret_free(text: str, where: str) -> None:
    assert PASSWORD not in text, f"the database password leaks in {where}"


@pytest.mark.slow
def test_workers_on_one_postgres_study_run_each_trial_exactly_once(postgres_url: str, tmp_path: Path) -> None:
    space = write_space(tmp_path / "tiny.yaml", max_epochs=8)
    db = tmp_path / "mlflow.db"
    args = ["tune", "iris", "--space", space, "--cv", "1", "--trials", N_TRIALS, "--pruner", "none",
            "--storage", postgres_url, "--study", "shared", "--tracking-uri", f"sqlite:///{db}", "--quiet"]
    # started together on fresh stores, as a team would start them on its machines
    workers = [start_worker(args, tmp_path, f"worker{i}") for i in range(N_WORKERS)]
    for w in workers:
        w.wait(timeout=600)
    for w in workers:
        assert w.proc.returncode == 0, w.describe()

    trials = load_trials(postgres_url, "shared")
    assert trials is not None
    states = collections.Counter(t.state.name for t in trials)
    assert len(trials) == N_TRIALS, states
    assert set(states) <= {"COMPLETE", "PRUNED"}, states
    assert sorted(t.number for t in trials) == list(range(N_TRIALS))
    configs = collections.Counter(tuple(sorted(t.params.items())) for t in trials)
    repeated = {k: n for k, n in configs.items() if n > 1}
    assert not repeated, f"workers sampled the same configuration more than once: {repeated}"
    owners = collections.Counter(t.user_attrs.get("regtune.owner", "").rpartition(":")[2] for t in trials)
    assert set(owners) == {str(w.pid) for w in workers}, f"trials per worker pid: {dict(owners)}"

    runs = [r for r in mlflow_runs(db) if r.lifecycle == "active"]
    parents = [r for r in runs if r.tags.get("regtune.run_type") == "study"]
    assert len(parents) == 1, [(p.run_id, p.status) for p in parents]
    parent = parents[0]
    assert parent.status == "FINISHED"
    children = [r for r in runs if r.tags.get("mlflow.parentRunId") == parent.run_id]
    assert len(children) == N_TRIALS
    assert sorted(r.trial for r in children) == list(range(N_TRIALS)), "a trial was logged twice or not at all"
    assert {r.run_id for r in children} == {t.user_attrs["mlflow_run_id"] for t in trials}
    assert not [r.run_id for r in runs if r.status == "RUNNING"]
    assert len(runs) == N_TRIALS + 1, "runs outside the study's tree"

    assert "***" in parent.tags["regtune.storage"]
    for run in mlflow_runs(db):  # deleted runs too
        for key, value in {**run.tags, **run.params}.items():
            _secret_free(value, f"MLflow run {run.run_id} {key}")
    for w in workers:
        _secret_free(w.stdout, f"stdout of worker {w.pid}")
        _secret_free(w.stderr, f"stderr of worker {w.pid}")
    for path in (tmp_path / "mlruns").rglob("*"):
        if path.is_file():
            _secret_free(path.read_bytes().decode(errors="replace"), str(path))


def _together(code: str, cwd: Path, n: int = N_WORKERS) -> list[tuple[int, str]]:
    """Run ``code`` in ``n`` Python processes started at once; their exit codes and output."""
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(n)]
    return [(p.wait(timeout=300), p.communicate()[0]) for p in procs]


def test_workers_starting_together_on_an_empty_database_all_open_the_storage(postgres_url: str,
                                                                             tmp_path: Path) -> None:
    """The first workers on a new database create Optuna's tables at the same moment."""
    code = f"from regtune.tuning.storage import make_storage; make_storage({postgres_url!r}); print('ok')"
    results = _together(code, tmp_path)
    for code_, output in results:
        _secret_free(output, "make_storage output")
        assert code_ == 0 and output.strip().endswith("ok"), output[-2000:]


def test_workers_starting_together_on_a_new_sqlite_mlflow_store_all_open_it(tmp_path: Path) -> None:
    """Several workers on one host share ``sqlite:///mlflow.db``; the first ones create it together."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = f"from regtune.tracking.tracker import MLflowTracker; MLflowTracker({uri!r}, 'regtune'); print('ok')"
    results = _together(code, tmp_path)
    for code_, output in results:
        assert code_ == 0 and output.strip().endswith("ok"), output[-2000:]
