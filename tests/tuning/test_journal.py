"""The default journal-file storage after a crash: torn records and locks left by dead processes
(issue 11, items 11 and 13), on real journal files written by Optuna through regtune."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest

from regtune.cli.app import main
from regtune.exceptions import StudyError
from regtune.tuning.journal import JournalLock
from regtune.tuning.storage import make_storage


def _study(path: Path, n_trials: int = 3) -> optuna.Study:
    """A study of ``n_trials`` finished trials in the journal file ``path``."""
    study = optuna.create_study(study_name="s", storage=make_storage(str(path)))
    for value in range(n_trials):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, float(value))
    return study


def _reopened(path: Path) -> optuna.Study:
    """The study as a new process sees it."""
    return optuna.load_study(study_name="s", storage=make_storage(str(path)))


def _cut(path: Path, n_bytes: int) -> bytes:
    """Truncate the file by ``n_bytes``, as a full disk or a power loss would; returns what is left
    of its last line."""
    data = path.read_bytes()
    path.write_bytes(data[:-n_bytes])
    return data[:-n_bytes].rpartition(b"\n")[2]


def test_torn_last_record_is_set_aside_and_the_study_goes_on(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "regtune.journal"
    _study(path)
    n_lines = path.read_bytes().count(b"\n")
    torn = _cut(path, 25)  # mid-way through the record that completes trial 2
    assert torn.startswith(b'{"op_code"')

    study = _reopened(path)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "RUNNING"]  # the torn write is lost
    trial = study.ask()  # the first append after the tear
    trial.suggest_float("x", 0.0, 1.0)
    study.tell(trial, 9.0)

    again = _reopened(path)  # before the fix: "Expecting ':' delimiter", or a replay error
    assert [t.value for t in again.trials] == [0.0, 1.0, None, 9.0]
    [aside] = tmp_path.glob("regtune.journal.torn-*")
    assert aside.read_bytes() == torn
    assert path.read_bytes().endswith(b"\n")
    warnings = [r.getMessage() for r in caplog.records if "cut short" in r.getMessage()]
    assert len(warnings) == 1
    assert str(path) in warnings[0] and f"line {n_lines}" in warnings[0] and aside.name in warnings[0]


def test_last_record_missing_only_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "study.journal"
    _study(path)
    _cut(path, 1)
    study = _reopened(path)
    study.enqueue_trial({"x": 0.5})
    assert [t.value for t in _reopened(path).trials] == [0.0, 1.0, 2.0, None]
    assert not list(tmp_path.glob("*.torn-*"))


def test_damaged_line_inside_the_journal_is_one_error_naming_the_file_line_and_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A journal written before the fix: a record glued onto a torn one, then more records."""
    path = tmp_path / "regtune.journal"
    _study(path)
    torn = _cut(path, 25)
    intact = path.read_bytes()[: -len(torn)]
    # What the next processes appended, each having read the intact records: two queued trials.
    expected = tmp_path / "expected.journal"
    expected.write_bytes(intact)
    _reopened(expected).enqueue_trial({"x": 0.25})
    _reopened(expected).enqueue_trial({"x": 0.75})
    appended = expected.read_bytes()[len(intact):]
    path.write_bytes(intact + torn + appended)  # the first of them glued onto the torn record
    bad_line = intact.count(b"\n") + 1

    with pytest.raises(StudyError) as error:
        _reopened(path)
    message = str(error.value)
    assert f"journal file '{path}' line {bad_line} of" in message and "sed -i.bak" in message
    assert "\n" not in message

    monkeypatch.chdir(tmp_path)
    code = _cli("best", "--study", "s", "--storage", str(path))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"line {bad_line}" in err and "Traceback" not in err

    repair = message.rpartition(": ")[2]  # the command the message ends with
    subprocess.run(repair, shell=True, check=True, cwd=tmp_path)
    assert path.read_bytes() == expected.read_bytes()
    study = _reopened(path)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "RUNNING", "WAITING", "WAITING"]
    assert (tmp_path / "regtune.journal.bak").read_bytes() == intact + torn + appended


def _cli(*argv: str) -> int:
    try:
        main(list(argv))
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    return 0


def test_lock_left_by_a_process_killed_mid_write_is_removed_at_once(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "regtune.journal"
    _study(path, 1)
    code = (
        "import os, signal, optuna\n"
        "from regtune.tuning.storage import make_storage\n"
        f"study = optuna.load_study(study_name='s', storage=make_storage({str(path)!r}))\n"
        "os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # die inside the write, lock held\n"
        "study.enqueue_trial({'x': 0.5})\n"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr
    lock = Path(f"{path}.lock")
    assert lock.is_symlink()

    caplog.set_level(logging.INFO)
    caplog.clear()
    start = time.monotonic()
    study = _reopened(path)
    study.enqueue_trial({"x": 0.75})  # before the fix: 30 s and three Optuna warnings
    assert time.monotonic() - start < 5
    assert not lock.exists() and not lock.is_symlink()
    assert [t.params for t in _reopened(path).trials][1:] == [{}, {}]
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) == 1 and "removed the stale journal lock" in lines[0], lines
    assert str(lock) in lines[0] and "no longer running" in lines[0]


def test_ownerless_lock_is_removed_once_older_than_the_grace_period(tmp_path: Path) -> None:
    """A lock of Optuna's own kind (a symlink to the journal, no owner) from a crash a minute ago."""
    path = tmp_path / "study.journal"
    _study(path, 1)
    lock = Path(f"{path}.lock")
    lock.symlink_to(path)
    old = time.time() - 60
    os.utime(lock, (old, old), follow_symlinks=False)
    start = time.monotonic()
    _reopened(path).enqueue_trial({"x": 0.5})
    assert time.monotonic() - start < 5 and not lock.is_symlink()


def test_a_live_lock_is_waited_for_not_broken(tmp_path: Path) -> None:
    path = tmp_path / "study.journal"
    path.touch()
    held = JournalLock(path)
    held.acquire()
    got: list[float] = []

    def other() -> None:
        with JournalLock(path):
            got.append(time.monotonic())

    start = time.monotonic()
    thread = threading.Thread(target=other)
    thread.start()
    time.sleep(0.5)
    assert not got  # the owner (this process) is alive and the lock is young
    held.release()
    thread.join(5)
    assert got and got[0] - start >= 0.5
    assert not Path(f"{path}.lock").is_symlink()


def test_per_epoch_reports_skip_the_fsync_that_state_changes_keep(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """trial.report appends every epoch; waiting for the disk each time cost 0.3 ms quiet and
    5-18 ms under load (benchmarks/tuner_overhead.py). A later fsync persists it anyway."""
    path = tmp_path / "regtune.journal"
    study = optuna.create_study(study_name="s", storage=make_storage(str(path)))
    trial = study.ask()
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    for step in range(5):
        trial.report(step / 10, step)
    assert synced == []
    study.tell(trial, 0.4)
    assert len(synced) == 1
    assert _reopened(path).trials[0].intermediate_values == {step: step / 10 for step in range(5)}


def _with_line_inserted(path: Path, after: int, line: bytes) -> bytes:
    """Insert ``line`` after line ``after`` of the journal; returns the journal as it was."""
    before = path.read_bytes()
    lines = before.split(b"\n")
    path.write_bytes(b"\n".join([*lines[:after], line, *lines[after:]]))
    return before


def test_a_record_of_another_optuna_version_is_one_error_naming_the_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 17 item 10: an unknown op_code ended in ``AssertionError: Should not reach.``"""
    path = tmp_path / "regtune.journal"
    _study(path)
    intact = _with_line_inserted(path, 3, b'{"op_code":99,"worker_id":"w","study_id":0}')
    with pytest.raises(StudyError) as error:
        _reopened(path)
    message = str(error.value)
    assert f"journal file '{path}' line 4 is a record (op_code 99) that Optuna {optuna.__version__}" in message
    assert "written by another Optuna version, or the line is damaged" in message and "\n" not in message
    monkeypatch.chdir(tmp_path)
    code = _cli("best", "--study", "s", "--storage", str(path))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "line 4" in err and "Traceback" not in err

    subprocess.run(message.rpartition(": ")[2], shell=True, check=True, cwd=tmp_path)  # the advised repair
    assert path.read_bytes() == intact
    assert [t.value for t in _reopened(path).trials] == [0.0, 1.0, 2.0]


def test_repairing_a_line_damaged_mid_file_keeps_the_records_after_it(tmp_path: Path) -> None:
    """Issue 17 item 10: the advice was ``head -n N-1``, which threw away every later record."""
    path = tmp_path / "regtune.journal"
    _study(path)
    n_lines = path.read_bytes().count(b"\n")
    intact = _with_line_inserted(path, 2, b"\x00\x00\x00 not a record")
    with pytest.raises(StudyError) as error:
        _reopened(path)
    message = str(error.value)
    assert f"line 3 of {n_lines + 1} is not a journal record" in message and "head -n" not in message
    assert "the records after it are kept" in message
    subprocess.run(message.rpartition(": ")[2], shell=True, check=True, cwd=tmp_path)
    assert path.read_bytes() == intact and (tmp_path / "regtune.journal.bak").exists()
    assert [t.value for t in _reopened(path).trials] == [0.0, 1.0, 2.0]  # all three trials, not the first
