"""``regtune dashboard``: optuna-dashboard over HTTP on each kind of study storage, and every bad
input as one error line.

The server runs as the installed ``regtune`` script in a child process on a port it picks
(``--port 0``); the errors run in-process through :func:`regtune.cli.app.main`.
"""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from cli_helpers import run_cli

from regtune.tuning.storage import make_storage

needs_dashboard = pytest.mark.skipif(importlib.util.find_spec("optuna_dashboard") is None,
                                     reason='optuna-dashboard is optional: pip install "regtune[dashboard]"')
REGTUNE = Path(sys.executable).with_name("regtune")
STUDY = "tiny-dashboard"


def _tiny_study(storage: str) -> None:
    """Three finished trials with per-epoch values, as regtune's own studies have."""
    study = optuna.create_study(study_name=STUDY, storage=make_storage(storage), direction="maximize")

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-3, 1e-1, log=True)
        for epoch in range(3):
            trial.report(lr * epoch, epoch)
        return lr

    study.optimize(objective, n_trials=3)


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.status, answer.read()


@needs_dashboard
@pytest.mark.parametrize("kind", ["journal", "sqlite", "postgresql"])
def test_dashboard_serves_the_study_over_http(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    storage = {"journal": str(tmp_path / "regtune.journal"), "sqlite": f"sqlite:///{tmp_path / 'optuna.db'}",
               "postgresql": None}[kind] or request.getfixturevalue("postgres_url")
    _tiny_study(storage)
    proc = subprocess.Popen([str(REGTUNE), "dashboard", "--storage", storage, "--study", STUDY, "--port", "0"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(120, proc.kill)  # a server that never prints its address fails, not hangs
    watchdog.start()
    try:
        line = proc.stderr.readline()  # printed once the port is bound: the server answers from here on
        found = re.search(r"http://127\.0\.0\.1:(\d+)(/dashboard/studies/\d+) ", line)
        assert found, (line, proc.poll())
        base = f"http://127.0.0.1:{found[1]}"
        if kind == "postgresql":
            assert "***" in line and storage.split(":")[2].split("@")[0] not in line  # the password is masked

        status, body = _get(base + "/api/studies")
        assert status == 200
        [summary] = [s for s in json.loads(body)["study_summaries"] if s["study_name"] == STUDY]
        status, body = _get(f"{base}/api/studies/{summary['study_id']}?after=0")
        trials = json.loads(body)["trials"]
        assert [t["state"] for t in trials] == ["Complete"] * 3
        assert len(trials[0]["intermediate_values"]) == 3
        assert found[2] == f"/dashboard/studies/{summary['study_id']}"
        status, body = _get(base + found[2])  # the page the command printed: the dashboard's app
        assert status == 200 and b"<html" in body.lower()

        proc.send_signal(signal.SIGINT)  # Ctrl-C ends it normally: there is nothing to resume
        assert proc.wait(timeout=20) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_missing_journal_is_one_line_and_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "dashboard")  # the default storage, as `regtune tune` uses
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "regtune.journal" in err and "regtune tune" in err
    code, out, err = run_cli(capsys, "dashboard", "--storage", f"sqlite:///{tmp_path / 'none.db'}")
    assert code == 2 and err.count("\n") == 1 and "none.db" in err
    assert list(tmp_path.iterdir()) == []


def test_unknown_study_lists_the_studies_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    storage = str(tmp_path / "regtune.journal")
    _tiny_study(storage)
    code, _, err = run_cli(capsys, "dashboard", "--storage", storage, "--study", "nope")
    assert code == 2 and err.count("\n") == 1
    assert "'nope'" in err and STUDY in err


def test_an_sqlite_file_given_as_a_journal_says_how_to_name_it(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "optuna.db"
    _tiny_study(f"sqlite:///{path}")
    code, _, err = run_cli(capsys, "dashboard", "--storage", str(path))
    assert code == 2 and err.count("\n") == 1 and f"--storage sqlite:///{path}" in err


@needs_dashboard
def test_a_port_in_use_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    storage = str(tmp_path / "regtune.journal")
    _tiny_study(storage)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, _, err = run_cli(capsys, "dashboard", "--storage", storage, "--port", str(port))
    assert code == 2 and err.count("\n") == 1 and f"port {port}" in err and "--port" in err


def test_without_optuna_dashboard_the_error_says_what_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # how Python marks a module as absent
    start = time.perf_counter()
    code, out, err = run_cli(capsys, "dashboard")
    assert code == 2 and out == ""
    assert err == 'regtune: error: regtune dashboard needs optuna-dashboard, which is not installed: ' \
                  'pip install "regtune[dashboard]"\n'
    assert time.perf_counter() - start < 5
