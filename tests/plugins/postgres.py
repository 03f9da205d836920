"""pytest plugin: a throwaway PostgreSQL cluster for the integration tests.

Registered in ``tests/conftest.py`` (``pytest_plugins``), so a test asks for ``postgres_url``
or ``postgres_cluster`` by name and imports nothing.

``postgres_cluster`` (session) runs ``initdb`` and ``pg_ctl start`` under a fresh temporary
directory on a free loopback port and stops the server at the end of the session, even when
tests fail. ``postgres_url`` (per test) creates an empty database on it and returns its
SQLAlchemy URL, ``postgresql+psycopg://regtune:PASSWORD@127.0.0.1:PORT/DB``.

Local (Unix socket) connections are trusted, TCP connections need the password, so every URL a
test hands to regtune carries a real secret that must never leak. PostgreSQL refuses to run
as root: as root the server commands run as the ``postgres`` system user (``runuser``).

Without a PostgreSQL installation (``/usr/lib/postgresql/*/bin``) the tests that use these
fixtures skip, unless ``REGTUNE_REQUIRE_INTEGRATION=1`` (CI), where they fail. Anything else
that stops the cluster (no psycopg, no ``postgres`` user for root) is an error, not a skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from plugins.integration import unavailable

__all__ = [
    "PASSWORD",
    "USER",
    "PostgresCluster",
    "find_bin_dir",
    "postgres_cluster",
    "postgres_url",
]

USER = "regtune"
PASSWORD = "pg-S3cret-" + secrets.token_hex(6)  # distinctive, so a leak is easy to grep for

_SYSTEM_USER = "postgres"


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb`` and ``pg_ctl``, or
    the directory of an ``initdb`` on PATH."""

    def version(path: str) -> tuple[int, ...]:
        parts = Path(path).parent.parent.name.split(".")
        return tuple(int(p) for p in parts if p.isdigit())

    found = [p for p in glob.glob("/usr/lib/postgresql/*/bin/initdb") if os.access(p, os.X_OK)]
    for initdb in sorted(found, key=version, reverse=True):
        if Path(initdb).with_name("pg_ctl").exists():
            return Path(initdb).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresCluster:
    """A running server: ``url(db)`` for clients, ``create_database`` for a fresh database."""

    bin_dir: Path
    base: Path
    port: int
    run_as: str | None  # system user the server commands run as (None: this user)
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.base / "server.log"

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def sockets(self) -> Path:
        return self.base / "sock"

    def url(self, database: str, *, driver: str = "postgresql+psycopg", password: str = PASSWORD) -> str:
        return f"{driver}://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a server tool (``initdb``, ``pg_ctl``, ``psql``) as the cluster's owner."""
        cmd = [str(self.bin_dir / tool), *args]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        proc = subprocess.run(cmd, cwd=self.base, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}\n{tail}"
            )
        return proc

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement over the trusted Unix socket; returns psql's unaligned output."""
        return self.run(
            "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.sockets),
            "-p", str(self.port), "-U", USER, "-d", database, "-c", statement,
        ).stdout

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL (with the password)."""
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def init(self) -> None:
        pwfile = self.base / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        self.sockets.mkdir(exist_ok=True)
        self._own(pwfile, self.sockets)
        self.run(
            "initdb", "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}", "-E", "UTF8",
            "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync",
        )
        pwfile.unlink()

    def start(self) -> None:
        # fsync off: a test database need not survive a power cut, and commits get much cheaper
        options = (
            f"-k {self.sockets} -p {self.port} -h 127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self.run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log), "-o", options)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30")

    def _own(self, *paths: Path) -> None:
        if self.run_as:
            info = pwd.getpwnam(self.run_as)
            for path in paths:
                os.chown(path, info.pw_uid, info.pw_gid)


def _start_cluster(bin_dir: Path) -> PostgresCluster:
    run_as = None
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        try:
            pwd.getpwnam(_SYSTEM_USER)
        except KeyError:
            pytest.fail(f"running as root, and there is no '{_SYSTEM_USER}' user to run PostgreSQL as",
                        pytrace=False)
        if shutil.which("runuser") is None:
            pytest.fail("running as root, and `runuser` (util-linux) is missing to run PostgreSQL as "
                        f"'{_SYSTEM_USER}'", pytrace=False)
        run_as = _SYSTEM_USER
    # Not pytest's tmp_path: its parents are private to this user, and the server user must
    # reach the directory; a short path also keeps the socket path under its length limit.
    base = Path(tempfile.mkdtemp(prefix="regtune-pg-"))
    if run_as:
        info = pwd.getpwnam(run_as)
        os.chown(base, info.pw_uid, info.pw_gid)
    last: Exception | None = None
    for _ in range(3):  # a free port can be taken between probing and binding it
        cluster = PostgresCluster(bin_dir, base, _free_port(), run_as)
        try:
            if not cluster.data.exists():
                cluster.init()
            cluster.start()
            return cluster
        except Exception as exc:
            last = exc
            cluster.stop()
            time.sleep(0.5)
    shutil.rmtree(base, ignore_errors=True)
    raise RuntimeError(f"could not start a PostgreSQL test cluster: {last}")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL server for the whole session, stopped and deleted afterwards."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        unavailable("PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or on PATH)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("psycopg is missing: install the dev extra (pip install -e '.[dev]')", pytrace=False)
    cluster = _start_cluster(bin_dir)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster, request: pytest.FixtureRequest) -> str:
    """A new, empty database for one test; the URL carries the password."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:40]
    name = f"{name}_{secrets.token_hex(3)}"
    return postgres_cluster.create_database(name)
