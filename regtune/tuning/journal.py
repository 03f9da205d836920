"""The journal file behind the default storage, made to survive the crashes a laptop sees.

Optuna's :class:`~optuna.storages.journal.JournalFileBackend` appends one JSON record per line
under a lock file. Two crashes break it; this module is where regtune deals with both.

- **A torn last record** (disk full, power loss, ``kill -9`` mid-write) has no newline. Optuna
  reads past it, but the next append glues a record onto it, and from then on every read fails
  (``Expecting ':' delimiter``, no file named). :class:`JournalBackend` checks the end of the
  file under the lock before each append: a cut-short line is moved to ``FILE.torn-<time>``
  with a one-line warning naming the file and the line (a complete record that only lacks its
  newline gets the newline). A damaged line *inside* the file (written before this check
  existed, or by another program) stops every command with an error naming the file, the
  line and the fix.
- **A lock left by a dead process**: Optuna's lock has no owner, so the next run waited 30 s
  and warned three times. :class:`JournalLock` writes its owner (``host:pid``) into the lock
  symlink, and removes a lock whose owner is gone (or, owner unknown, that is older than
  :data:`LOCK_GRACE` seconds) with one line, then goes on. It is the same ``FILE.lock``
  symlink protocol as Optuna's default lock, so plain Optuna processes on the same file still
  exclude each other from regtune's.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend

from regtune.exceptions import StudyError
from regtune.tuning.optuna_internals import INTERMEDIATE_VALUE_OP, JOURNAL_OPS

__all__ = [
    "process_alive","LOCK_GRACE", "JournalBackend", "JournalLock"]

LOCK_GRACE = 10.0  # seconds; an append holds the lock for milliseconds
_OWNER = "regtune-lock:"  # lock symlink target: regtune-lock:HOST:PID:NONCE
_RECORD_START = b'{"op_code"'  # how Optuna starts every journal record
_logger = logging.getLogger("regtune")


class JournalLock:
    """Optuna's symlink lock (``FILE.lock``), with its owner in the link and stale locks removed.

    Passed to :class:`JournalBackend` as its ``lock_obj``; Optuna only calls ``acquire`` and
    ``release``. Also a context manager.
    """

    def __init__(self, journal: str | os.PathLike[str], grace: float = LOCK_GRACE) -> None:
        self.path = Path(f"{os.fspath(journal)}.lock")
        self.grace = grace
        self._token: str | None = None

    def acquire(self) -> bool:
        token = f"{_OWNER}{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        delay, since = 0.001, time.monotonic()
        while True:
            try:
                os.symlink(token, self.path)
                self._token = token
                return True
            except FileExistsError:
                pass
            if self._remove_if_stale():
                continue
            if time.monotonic() - since > 10:
                _logger.warning("waiting for the journal lock %s, held by %s", self.path, _describe(_target(self.path)))
                since = time.monotonic()
            time.sleep(delay)
            delay = min(2 * delay, 0.05)

    def release(self) -> None:
        token, self._token = self._token, None
        try:
            if os.readlink(self.path) == token:  # not if it was taken from us as stale
                os.unlink(self.path)
        except OSError:
            pass

    def __enter__(self) -> JournalLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _remove_if_stale(self) -> bool:
        """Remove the lock if its owner is dead or it is older than the grace period."""
        try:
            age = time.time() - os.lstat(self.path).st_mtime
        except FileNotFoundError:
            return True  # released meanwhile: try again at once
        target = _target(self.path)
        host, pid = _owner(target)
        if host == socket.gethostname() and pid is not None and not process_alive(pid):
            why = f"its owner, process {pid}, is no longer running"
        elif age > self.grace:
            why = f"held for {age:.0f} s, longer than any write takes"
        else:
            return False
        aside = self.path.with_name(f"{self.path.name}.{uuid.uuid4().hex}.stale")
        try:
            os.rename(self.path, aside)  # atomic: of several processes, one removes it
        except FileNotFoundError:
            return True
        aside.unlink(missing_ok=True)
        _logger.warning("removed the stale journal lock %s (%s)", self.path, why)
        return True


class JournalBackend(JournalFileBackend):
    """Optuna's journal file with :class:`JournalLock`, torn-record recovery and readable errors."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock = JournalLock(self.path)
        super().__init__(os.fspath(self.path), lock_obj=self.lock)  # type: ignore[arg-type]

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        try:
            # one record per line: log number n is line n + 1
            for line, log in enumerate(super().read_logs(log_number_from), start=log_number_from + 1):
                if not isinstance(log, dict) or log.get("op_code") not in JOURNAL_OPS:
                    raise StudyError(unknown_record_report(self.path, line, log))
                yield log
        except ValueError:  # json.JSONDecodeError, or Optuna's "Invalid log format."
            raise StudyError(damage_report(self.path)) from None

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode("utf-8")
        with self.lock:
            recover_torn_tail(self.path)
            with open(self.path, "ab") as f:
                f.write(data)
                f.flush()
                # A record of one epoch's score (trial.report, every epoch) does not wait for
                # the disk: other processes read it from the page cache at once, a kill -9
                # cannot lose it, and the trial's next state change fsyncs it with the rest.
                if any(log.get("op_code") != INTERMEDIATE_VALUE_OP for log in logs):
                    os.fsync(f.fileno())


def recover_torn_tail(path: Path) -> Path | None:
    """Make the journal end on a whole line; call it holding the lock. Returns where a cut-short
    record was moved, if one was.

    A last line without its newline is a write that never finished (every append ends with one
    and holds the lock): if it is a whole record it only lacks the newline, else it is moved to
    ``FILE.torn-<time>`` and the file ends after the line before it.
    """
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return None
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return None
        start = _last_line_start(f, size)
        f.seek(start)
        torn = f.read()
        try:
            json.loads(torn)
        except ValueError:
            pass
        else:  # complete: only the newline is missing
            f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = path.with_name(f"{path.name}.torn-{stamp}")
        if aside.exists():
            aside = path.with_name(f"{path.name}.torn-{stamp}-{uuid.uuid4().hex[:6]}")
        aside.write_bytes(torn)
        f.truncate(start)
        f.flush()
        os.fsync(f.fileno())
        f.seek(0)
        line = f.read(start).count(b"\n") + 1
    _logger.warning("journal %s: line %d was cut short (disk full, power loss or a killed process); moved its "
                    "%d bytes to %s, the records before it are intact", path, line, len(torn), aside)
    return aside


def damage_report(path: Path) -> str:
    """The error for a journal Optuna cannot read: the file, the first bad line and the fix."""
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    bad = next((n for n, line in enumerate(lines[:-1], start=1) if not _parses(line)), None)
    if bad is None:
        return f"journal file '{path}' cannot be read; move it aside and run `regtune tune` again"
    line = lines[bad - 1]
    start = line.rfind(_RECORD_START)
    where = f"journal file '{path}' line {bad} of {len(lines) - 1}"
    if start > 0 and _parses(line[start:]):
        return (f"{where} is a record cut short (disk full, power loss or a killed process) with the next "
                f"record written onto it; regtune cannot read the study. Repair it by deleting the cut-short "
                f"part, which keeps a copy in {path.name}.bak: sed -i.bak '{bad}s/^.*{{\"op_code\"/{{\"op_code\"/' "
                f"'{path}'")
    return (f"{where} is not a journal record; regtune cannot read the study. Repair it by deleting that "
            f"line alone (what it recorded is lost, the records after it are kept), which keeps a copy in "
            f"{path.name}.bak: {_delete_line(path, bad)}")


def unknown_record_report(path: Path, line: int, log: Any) -> str:
    """The error for a record that parses but that this Optuna cannot replay."""
    import optuna

    what = f"op_code {log.get('op_code')!r}" if isinstance(log, dict) else f"a JSON {type(log).__name__}"
    return (f"journal file '{path}' line {line} is a record ({what}) that Optuna {optuna.__version__} cannot "
            "replay: the journal was written by another Optuna version, or the line is damaged. Open the study "
            "with the Optuna version that wrote it; if the line is damaged, delete it alone, which keeps a copy "
            f"in {path.name}.bak: {_delete_line(path, line)}")


def _delete_line(path: Path, line: int) -> str:
    return f"sed -i.bak '{line}d' '{path}'"


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def _last_line_start(f: Any, size: int) -> int:
    pos = size
    while pos > 0:
        step = min(1 << 16, pos)
        pos -= step
        f.seek(pos)
        found = f.read(step).rfind(b"\n")
        if found >= 0:
            return pos + found + 1
    return 0


def _target(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:  # gone, or a regular file (Optuna's JournalFileOpenLock)
        return ""


def _owner(target: str) -> tuple[str | None, int | None]:
    if not target.startswith(_OWNER):
        return None, None  # Optuna's own lock points at the journal and names no owner
    host, _, rest = target[len(_OWNER):].rpartition(":")[0].rpartition(":")
    return (host, int(rest)) if rest.isdigit() else (None, None)


def _describe(target: str) -> str:
    host, pid = _owner(target)
    return f"process {pid} on {host}" if pid is not None else "a process that did not name itself"


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs here; a zombie (killed, not yet reaped) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True
