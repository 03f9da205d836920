"""The image benchmark (benchmarks/images.py): fixed task data, the "pays" verdict, and a smoke run
whose cells each run in their own process, are saved as they end and are skipped when rerun."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPT = BENCHMARKS / "images.py"


@pytest.fixture(scope="module")
def images() -> ModuleType:
    """The script as a module; its thread settings (set on import) are undone for the other tests."""
    saved = dict(os.environ)
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("bench_images", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
        os.environ.clear()
        os.environ.update(saved)
    return module


def test_every_task_is_the_same_data_on_every_call_and_keeps_the_test_part_apart(images: ModuleType) -> None:
    seen = set()
    for name, task in images.TASKS.items():
        a, b = images.task_data(name), images.task_data(name)
        assert a.fingerprint == b.fingerprint
        np.testing.assert_array_equal(a.X_tr, b.X_tr)
        assert a.X_tr.shape == (task.n_train, 1, 16, 16) and a.X_te.shape == (images.N_TEST, 1, 16, 16)
        assert 0.0 <= a.X_tr.min() and a.X_tr.max() <= 1.0
        assert set(np.unique(a.y_tr)) == set(range(10))
        seen.add(a.fingerprint)
    assert len(seen) == len(images.TASKS) >= 4
    # the same digits are test images in every task: only how they look differs
    tests = [images.task_data(n).y_te for n in images.TASKS]
    assert all(np.array_equal(tests[0], t) for t in tests[1:])


def _run(arm: str, test: float, winner: str, seed: int, budget: float = 240.0) -> dict:
    return {"task": "t", "net": "n", "arm": arm, "budget": budget, "seed": seed, "test": test, "winner": winner,
            "seconds": 10.0, "n_trials": 3, "within_budget": True if arm == "regtune" else None}


def test_pays_needs_half_a_point_over_the_adamw_loop_and_a_regularized_winner(images: ModuleType) -> None:
    adamw = [_run("adamw", 0.950, "as_written", s) for s in range(3)]
    small = [_run("regtune", 0.990, "baseline", s, budget=60.0) for s in range(3)]
    pays = images.summarize(adamw + small + [_run("regtune", 0.960, "regularized", s) for s in range(3)])["t/n"]
    assert pays["reference"] == "regtune-240" and pays["minus_adamw_points"] == pytest.approx(1.0)
    assert pays["pays"] is True
    close = images.summarize(adamw + [_run("regtune", 0.954, "regularized", s) for s in range(3)])["t/n"]
    assert close["pays"] is False  # +0.4 point
    baseline_won = images.summarize(adamw + [_run("regtune", 0.990, w, s) for s, w in
                                             enumerate(["baseline", "baseline", "regularized"])])["t/n"]
    assert baseline_won["minus_adamw_points"] > 0.5 and baseline_won["pays"] is False
    table = images.tables(images.summarize(adamw + small))
    assert "regtune-60" in table and "+4.00 (regtune-60)" in table


@pytest.mark.slow
def test_quick_run_saves_each_cell_in_its_own_process_and_skips_it_when_rerun(tmp_path: Path) -> None:
    out = tmp_path / "images.json"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--tasks", "digits300", "--nets", "plain", "--arms",
           "adamw,regtune", "--budgets", "3", "--out", str(out)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    runs = json.loads(out.read_text())["runs"]
    assert {(r["arm"], r["budget"]) for r in runs} == {("adamw", 3.0), ("regtune", 3.0)}
    for r in runs:
        assert "error" not in r, r.get("traceback", r.get("error"))
        assert 0.0 <= r["test"] <= 1.0 and r["torch_threads"] == 1 and len(r["load_start"]) == 3
    regtune = next(r for r in runs if r["arm"] == "regtune")
    assert regtune["test"] > 0.5  # its baseline trial always runs to the end
    assert regtune["n_trials"] >= 1 and regtune["winner"] in ("baseline", "as_written", "regularized")
    assert isinstance(regtune["within_budget"], bool)
    assert "| digits300 | plain |" in first.stdout and "pays" in first.stdout
    assert not list(tmp_path.glob("mlruns")) and not list(tmp_path.glob("*.db"))  # nothing written beside
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert again.returncode == 0 and "0 cells to run" in again.stdout
