"""Shared test setup and fixtures.

Tiny networks train several times faster on one torch thread than on two contended ones (tests
run beside other processes on 2 cores). The PostgreSQL fixtures (``postgres_cluster``,
``postgres_url``) come from the ``plugins.postgres`` plugin.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from study_helpers import FinishedStudy, make_study

from regtune.tracking.tracker import MLflowTracker

pytest_plugins = ["plugins.postgres"]

TINY_SPACE = Path(__file__).parent / "spaces" / "tiny.yaml"


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _quiet_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(scope="session")
def tiny_space() -> Path:
    """The test-sized search space (``tests/spaces/tiny.yaml``): one 16-unit layer, 8 epochs,
    ``lr`` plus L2, dropout and early stopping. Read-only: copy it to change it."""
    return TINY_SPACE


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory: pytest.TempPathFactory) -> FinishedStudy:
    """One finished study on iris (7 trials, MLflow store and journal on disk), built once per
    session for the report, ablation and MLflow UI tests. They add artifacts to its parent run
    under their own paths (``report/``, ``ablation/``) and change nothing else."""
    return make_study(tmp_path_factory.mktemp("finished-study"))


@pytest.fixture
def dead_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A loopback port that refuses connections (``"refuses"``, the default) or accepts them and
    never answers (``"never_answers"``); choose with ``@pytest.mark.parametrize(..., indirect=True)``."""
    kind = getattr(request, "param", "refuses")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    if kind == "refuses":
        sock.close()
    else:
        sock.listen(64)  # the kernel completes the handshakes; nobody ever reads or writes
    try:
        yield port
    finally:
        sock.close()


@pytest.fixture
def fails_within() -> Callable[[float, Callable[[], object]], BaseException]:
    """``fails_within(seconds, call)``: run ``call`` in a thread, assert it raised within
    ``seconds`` and return the error. A call still waiting is abandoned (daemon thread)."""

    def check(seconds: float, call: Callable[[], object]) -> BaseException:
        outcome: dict[str, object] = {}

        def run() -> None:
            start = time.monotonic()
            try:
                call()
            except BaseException as exc:  # noqa: BLE001 - the error is what the test inspects
                outcome["error"] = exc
            outcome["seconds"] = time.monotonic() - start

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(seconds + 5)
        assert "seconds" in outcome, f"still waiting after {seconds + 5:g} s"
        assert outcome["seconds"] < seconds, f"took {outcome['seconds']:.1f} s"
        assert "error" in outcome, "no error raised"
        return outcome["error"]  # type: ignore[return-value]

    return check


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MLflow SQLite file per test module: creating MLflow's schema costs one to several seconds."""
    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    MLflowTracker(f"sqlite:///{db}", experiment="schema")
    return db
