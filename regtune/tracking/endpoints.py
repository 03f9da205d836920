"""Where a tracking store or a study storage is, and whether it answers: the probes every
entry point runs before it commits to a store, and the words for a missing database driver.

Why here and not in the tracker: the Optuna storage (``tuning/``) and the MLflow store share the
database URLs, their drivers and their connect timeouts.
"""

from __future__ import annotations

from typing import Any

from regtune.exceptions import TrackingError
from regtune.tracking.masking import mask_secrets

__all__ = ["CONNECT_TIMEOUT", "check_reachable", "connect_args", "missing_driver"]

CONNECT_TIMEOUT = 10  # seconds a server may take to accept a connection, or to answer a probe
_DATABASES = ("postgresql", "postgres", "mysql", "mariadb", "mssql")


def check_reachable(uri: str) -> None:
    """Fail within about :data:`CONNECT_TIMEOUT` seconds when a tracking server is unreachable.

    Why: MLflow retries a refused HTTP server with exponential backoff (268 s with its default
    retries), waits 120 s per try on one that accepts and never answers, and a database driver
    without a connect timeout waits for the operating system (over two minutes). Once the
    server has answered, MLflow's own retries ride out short outages during the study.
    Raises :class:`TrackingError` naming the URI (masked) for HTTP, the driver's error for a
    database (the caller words it).
    """
    scheme = _scheme(uri)
    if scheme in ("http", "https"):
        _probe_http(uri)
    elif scheme in _DATABASES:
        _probe_database(uri)


def connect_args(url: str) -> dict[str, Any]:
    """SQLAlchemy ``connect_args`` bounding how long a database connection may take, unless the
    URL sets its own ``connect_timeout`` (without it, psycopg waits on a silent port for minutes)."""
    if _scheme(url) in ("postgresql", "postgres", "mysql", "mariadb") and "connect_timeout" not in url:
        return {"connect_timeout": CONNECT_TIMEOUT}
    return {}


# Python database drivers whose pip package is not named like the module SQLAlchemy imports.
_DRIVER_PACKAGES = {"MySQLdb": "mysqlclient", "psycopg2": "psycopg2-binary", "psycopg": "'psycopg[binary]'",
                    "mysql": "mysql-connector-python", "cx_Oracle": "cx-Oracle", "oracledb": "oracledb"}


def missing_driver(url: str, exc: BaseException) -> str | None:
    """What to say when a database URL's Python driver is not installed, else ``None``.

    Why: a missing driver (``mysql+pymysql://`` without PyMySQL) surfaces as an ImportError from
    deep in SQLAlchemy or Optuna, which the callers would word as "check that the server is up".
    """
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, ModuleNotFoundError):
        seen = seen.__cause__ or seen.__context__
    if seen is None or not seen.name:
        return None
    module = seen.name.split(".")[0]
    package = _DRIVER_PACKAGES.get(module, module)
    return (f"{mask_secrets(url)!r} needs the database driver {module!r}, which is not installed here; "
            f"install it (pip install {package}) or use another URL")


def _scheme(uri: str) -> str:
    return uri.split(":", 1)[0].split("+", 1)[0].lower()


def _probe_http(uri: str) -> None:
    """One GET with short timeouts; any HTTP answer, even an error status, means reachable."""
    import requests

    where = f"MLflow tracking server {mask_secrets(uri)!r}"
    fix = "check that it is up and that this machine can reach it, or pass another --tracking-uri"
    try:
        requests.get(uri.rstrip("/") + "/health", timeout=(CONNECT_TIMEOUT / 2, CONNECT_TIMEOUT),
                     allow_redirects=False).close()
    except requests.exceptions.SSLError:
        return  # it answered; MLflow applies its own TLS settings (MLFLOW_TRACKING_INSECURE_TLS, ...)
    except requests.exceptions.ConnectTimeout:
        raise TrackingError(f"{where} did not accept a connection within {CONNECT_TIMEOUT / 2:g} s; {fix}") from None
    except requests.exceptions.Timeout:
        raise TrackingError(f"{where} accepted a connection but did not answer within {CONNECT_TIMEOUT} s; "
                            f"{fix}") from None
    except requests.exceptions.ConnectionError as err:
        reason = "refused the connection" if "refused" in str(err).lower() else "cannot be reached"
        raise TrackingError(f"{where} {reason}; {fix}") from None


def _probe_database(uri: str) -> None:
    """Connect once to a database store: MLflow itself retries an unreachable one for ~100 s."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri, connect_args=connect_args(uri))
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()
