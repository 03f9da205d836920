"""``regtune dashboard``: optuna-dashboard on a study storage, as ``regtune ui`` is MLflow's UI.

The storage is opened the way ``regtune tune`` opens it (:func:`~regtune.tuning.storage.make_storage`:
the journal file by default, with its lock and recovery; SQLite, PostgreSQL, MySQL URLs) and
handed to optuna-dashboard as a storage object: its own command line guesses the kind of
storage from the URL and cannot open regtune's journal backend.
"""

from __future__ import annotations

import errno
import importlib.util
import socket
import socketserver
import sys
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna

from regtune.exceptions import RegtuneError, StudyError
from regtune.tracking.masking import mask_secrets
from regtune.tuning.settings import DEFAULT_STORAGE, MEMORY
from regtune.tuning.storage import journal_path, make_storage

__all__ = ["INSTALL_HINT", "check_installed", "dashboard_server", "open_storage", "serve"]

INSTALL_HINT = 'pip install "regtune[dashboard]"'
_SQLITE_HEADER = b"SQLite format 3\x00"


def check_installed() -> None:
    """optuna-dashboard is an optional dependency (the ``dashboard`` extra)."""
    if importlib.util.find_spec("optuna_dashboard") is None:
        raise RegtuneError(f"regtune dashboard needs optuna-dashboard, which is not installed: {INSTALL_HINT}")


def open_storage(storage: str | None, study: str | None = None) -> tuple[optuna.storages.BaseStorage, str]:
    """The storage ``regtune tune`` would use, which must hold a study already (``study`` if
    given), and the dashboard page to open: the study's, or the list of studies."""
    where = mask_secrets(storage or DEFAULT_STORAGE)
    if storage == MEMORY:
        raise StudyError(f"storage {MEMORY!r} lives inside one process and holds nothing here; pass the journal "
                         "file or database URL the study was tuned with (--storage)")
    journal = journal_path(storage)
    if journal is not None:
        if not journal.is_file():  # do not leave an empty journal behind
            raise StudyError(f"no study storage at {where!r}: the journal file does not exist; run `regtune tune` "
                             "first, or pass the storage it used (--storage)")
        with journal.open("rb") as f:
            if f.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER:
                raise StudyError(f"storage {where!r} is an SQLite database, not a journal file; pass it as "
                                 f"--storage sqlite:///{journal.resolve()}")
    elif storage and storage.startswith("sqlite:///") and ":memory:" not in storage:
        path = Path(storage.removeprefix("sqlite:///"))
        if not path.is_file():  # SQLAlchemy would create an empty database
            raise StudyError(f"no study storage at {where!r}: {str(path)!r} does not exist; run `regtune tune "
                             "--storage ...` first, or fix the path")
    opened = make_storage(storage)
    names = sorted(optuna.study.get_all_study_names(opened))
    if study is not None and study not in names:
        raise StudyError(f"no study {study!r} in {where}; studies there: {', '.join(names) or 'none'}")
    if study is None:
        return opened, "/dashboard"
    return opened, f"/dashboard/studies/{opened.get_study_id_from_name(study)}"


def dashboard_server(storage: optuna.storages.BaseStorage, host: str, port: int) -> WSGIServer:
    """optuna-dashboard's app on a threaded server bound to ``host:port`` (not serving yet;
    port 0 picks a free one: ``server.server_port``)."""
    check_installed()
    import optuna_dashboard

    app = optuna_dashboard.wsgi(storage)
    try:
        server_class = _ThreadedServer6 if ":" in host else _ThreadedServer
        return make_server(host.strip("[]"), port, app, server_class=server_class, handler_class=_QuietHandler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise RegtuneError(f"port {port} on {host} is in use (another dashboard?); pass another --port") from None
        raise RegtuneError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; check --host and --port") from None


def serve(server: WSGIServer) -> None:
    """Serve until Ctrl-C, which ends the command normally (there is nothing to resume)."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("", file=sys.stderr)
    finally:
        server.server_close()


class _ThreadedServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a browser's open connection does not hold up Ctrl-C


class _ThreadedServer6(_ThreadedServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        """No line per request: the dashboard polls every few seconds."""
