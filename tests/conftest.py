"""Shared test setup and fixtures.

Tiny networks train several times faster on one torch thread than on two contended ones (tests
run beside other processes on 2 cores). The PostgreSQL fixtures (``postgres_cluster``,
``postgres_url``) come from the ``plugins.postgres`` plugin.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from study_helpers import FinishedStudy, make_study

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
