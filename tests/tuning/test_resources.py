"""Threads and devices of trials and workers (no GPU needed: device assignment is pure)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from regtune.config import RegConfig
from regtune.tuning import resources
from regtune.tuning.resources import assign_devices, passive_openmp, threads_for, torch_threads


@pytest.mark.parametrize(
    ("device", "n_workers", "n_gpus", "expected"),
    [
        ("cuda", 2, 2, ["cuda:0", "cuda:1"]),
        ("cuda", 5, 2, ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]),  # several per device
        ("auto", 3, 1, ["cuda:0", "cuda:0", "cuda:0"]),
        ("auto", 2, 0, ["auto", "auto"]),  # no GPU: auto falls back to MPS or CPU in each worker
        ("cuda:1", 3, 4, ["cuda:1", "cuda:1", "cuda:1"]),  # an explicit device is everyone's
        ("cpu", 2, 4, ["cpu", "cpu"]),
        ("mps", 1, 0, ["mps"]),
    ],
)
def test_workers_spread_over_the_visible_gpus(device: str, n_workers: int, n_gpus: int,
                                              expected: list[str]) -> None:
    assert assign_devices(device, n_workers, n_gpus) == expected


def test_small_networks_train_on_one_thread_larger_ones_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    small = RegConfig(hidden_layer_sizes=(64, 64), batch_size=64)
    large = RegConfig(hidden_layer_sizes=(512, 512), batch_size=256)
    assert threads_for(small, 64, n_jobs=1) == 1
    assert threads_for(large, 64, n_jobs=1) == 8
    assert threads_for(large, 64, n_jobs=2) == 4
    assert threads_for(large, 64, n_jobs=16) == 1
    assert threads_for(RegConfig(hidden_layer_sizes=(), batch_size=256), 4096, n_jobs=1) == 1  # a linear model
    assert threads_for(small.replace(tabm=32), 64, n_jobs=1) == 8  # 32 members: 32 rows per input row


def test_spinning_openmp_threads_get_one_thread_and_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch loaded before regtune without the passive policy: more threads would spin."""
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(resources, "_warned", False)
    large = RegConfig(hidden_layer_sizes=(512, 512), batch_size=256)
    with pytest.warns(RuntimeWarning, match="OMP_WAIT_POLICY=PASSIVE"):
        assert threads_for(large, 64, n_jobs=1) == 1


def test_torch_threads_come_back_after_the_block() -> None:
    before = torch.get_num_threads()
    with pytest.raises(KeyError):
        with torch_threads(before + 1):
            assert torch.get_num_threads() == before + 1
            raise KeyError("a trial failed")
    assert torch.get_num_threads() == before


def test_worker_processes_start_with_the_passive_policy_and_the_environment_comes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with passive_openmp():
        assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's explicit choice is kept
    with passive_openmp():
        assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


@pytest.mark.parametrize(("first", "policy"), [("import regtune", "PASSIVE"), ("import torch; import regtune", None)])
def test_import_regtune_makes_torch_threads_sleep_only_if_torch_is_not_loaded(first: str, policy: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = f"{first}; import os; print(os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.split()[-1] == str(policy)
