"""Every process regtune starts imports only from its installation, never from the working
folder (a ``mlflow.py`` or ``regtune.py`` lying there is never run), and a tracker process
that cannot start is one clear error at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from regtune.exceptions import TrackingError
from regtune.processes import python_command
from regtune.tracking.relay import TrackerProcess


def _booby_trapped(folder: Path) -> Path:
    """A folder whose ``mlflow.py``, ``regtune.py`` and ``statistics.py`` leave a marker and fail."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "MARKER"
    for name in ("mlflow", "regtune", "statistics"):
        (folder / f"{name}.py").write_text(
            f"open({str(marker)!r}, 'a').write({name!r} + '\\n')\nraise ImportError('the {name}.py of the working folder')\n"
        )
    return marker


def test_python_command_keeps_the_working_folder_off_the_path(tmp_path: Path) -> None:
    marker = _booby_trapped(tmp_path)
    code = "import statistics, regtune, mlflow.tracking; print(regtune.__file__)"
    run = subprocess.run(python_command(code=code), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert not marker.exists()
    assert Path(run.stdout.strip()).parent.parent != tmp_path


def test_the_tracker_process_ignores_a_mlflow_py_in_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    marker = _booby_trapped(tmp_path)
    monkeypatch.chdir(tmp_path)
    process = TrackerProcess._start()
    try:
        process.wait_ready()
    finally:
        process.retire(timeout=30)
    assert not marker.exists()


def test_a_tracker_process_that_cannot_start_is_one_clear_error_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = tmp_path / "site" / "mlflow"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('mlflow is broken here')\n")
    monkeypatch.setenv("PYTHONPATH", str(broken.parent))  # the tracker process's own import path
    started = time.monotonic()
    process = TrackerProcess._start()
    with pytest.raises(TrackingError, match=r"tracker process could not start \(ImportError: mlflow is broken here\)"):
        process.connect("sqlite:///unused.db", "regtune")
    assert time.monotonic() - started < 60
    assert not process.alive()


def test_the_fork_server_and_its_workers_ignore_the_working_folder(tmp_path: Path) -> None:
    """A ``regtune.py`` in the working folder once made every trial of ``--jobs 2`` fail
    ("'regtune' is not a package"): the fork server's ``python -c`` imported it."""
    marker = _booby_trapped(tmp_path / "cwd")
    script = tmp_path / "start_worker.py"  # a script elsewhere: its own folder, not cwd, is on its path
    script.write_text(
        "import time, regtune.tuning.worker as w\n"
        "if __name__ == '__main__':\n"
        "    p = w.worker_context().Process(target=time.sleep, args=(0,))\n"
        "    p.start(); p.join(); raise SystemExit(p.exitcode)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path / "cwd", env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert not marker.exists(), marker.read_text()


@pytest.mark.slow
def test_cli_tune_in_a_booby_trapped_folder_runs_only_the_installed_code(tmp_path: Path) -> None:
    marker = _booby_trapped(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    regtune = str(Path(sys.executable).with_name("regtune"))
    run = subprocess.run([regtune, "tune", "iris", "--trials", "2", "--jobs", "2", "-q"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr
    assert "FAIL" not in run.stdout and "cannot be used" not in run.stderr
    assert not marker.exists(), marker.read_text()
