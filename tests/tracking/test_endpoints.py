"""Probes of tracking stores: an unreachable server or database fails fast, in one masked line."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from regtune.exceptions import TrackingError
from regtune.tracking.endpoints import connect_args, missing_driver
from regtune.tracking.tracker import MLflowTracker

SECRET = "s3cret-Pa55"


def test_unreachable_server_error_masks_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(TrackingError) as info:
        MLflowTracker(f"http://bob:{SECRET}@127.0.0.1:9/")
    assert "http://bob:***@127.0.0.1:9/" in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "dead_port", ["refuses", pytest.param("never_answers", marks=pytest.mark.slow)], indirect=True
)
def test_unreachable_tracking_server_fails_fast_with_one_masked_line(
    dead_port: int, fails_within: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11, item 12: with MLflow's default retries a refused port took 268 s, a port that
    accepts and never answers over 600 s."""
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)  # the user's default
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    uri = f"http://bob:{SECRET}@127.0.0.1:{dead_port}"
    error = fails_within(20, lambda: MLflowTracker(uri))
    assert isinstance(error, TrackingError)
    text = str(error)
    assert f"'http://bob:***@127.0.0.1:{dead_port}'" in text and "\n" not in text
    assert SECRET not in text and "--tracking-uri" in text


def test_unreachable_database_store_fails_fast(dead_port: int, fails_within: Callable) -> None:
    error = fails_within(20, lambda: MLflowTracker(f"postgresql+psycopg://bob:{SECRET}@127.0.0.1:{dead_port}/mlflow"))
    assert isinstance(error, TrackingError)
    assert f"bob:***@127.0.0.1:{dead_port}/mlflow" in str(error) and "\n" not in str(error)


def test_connect_args_bound_the_connect_time_unless_the_url_sets_it() -> None:
    assert connect_args("postgresql+psycopg://h/db") == {"connect_timeout": 10}
    assert connect_args("postgresql://h/db?connect_timeout=3") == {}
    assert connect_args("sqlite:///x.db") == {}


def test_missing_driver_names_the_package_to_install() -> None:
    wrapped = RuntimeError("engine failed")
    wrapped.__cause__ = ModuleNotFoundError("No module named 'MySQLdb'", name="MySQLdb")
    said = missing_driver(f"mysql://bob:{SECRET}@h/db", wrapped)
    assert said is not None and "pip install mysqlclient" in said
    assert SECRET not in said and "bob:***@h" in said
    assert missing_driver("mysql://h/db", RuntimeError("refused")) is None  # not a driver problem
