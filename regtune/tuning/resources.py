"""Which compute a trial gets: CPU threads (and OpenMP's idle behaviour), and a GPU per worker.

Small networks train fastest on one thread: a second thread spends more time synchronizing
than computing, and OpenMP's idle threads *spin* by default, stealing the cores other trials,
workers and users need (5x slower under load in ``benchmarks/``). OpenMP reads its wait policy
once, when torch loads, so ``OMP_WAIT_POLICY=PASSIVE`` must be in the environment before that:
``import regtune`` sets it when torch is not loaded yet, the CLI sets it first thing, and
worker processes inherit it. A process whose torch loaded with spinning threads runs every
trial on one thread instead.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

from regtune.config import RegConfig

__all__ = [
    "SMALL_BATCH_FLOPS",
    "assign_devices",
    "openmp_is_passive",
    "passive_openmp",
    "threads_for",
    "torch_threads",
]

SMALL_BATCH_FLOPS = 5e6  # below this, one thread beats two (benchmarks/training_speed.py)
_POLICY = "OMP_WAIT_POLICY"


def openmp_is_passive() -> bool:
    """Whether idle OpenMP threads of this process sleep instead of spinning.

    True when ``OMP_WAIT_POLICY=PASSIVE`` is set, as it is before torch loads when regtune is
    imported first (or the CLI runs); a user who imported torch first without it has spinning
    threads, which no later setting changes.
    """
    return os.environ.get(_POLICY, "").strip().upper() == "PASSIVE"


def threads_for(config: RegConfig, n_features: int, n_jobs: int) -> int:
    """Torch threads for one trial: one for small MLPs; larger networks share the cores
    with the other workers (``cpu_count // n_jobs``) when idle threads sleep, else one. A
    TabM ensemble's hidden layers see ``tabm`` rows per input row."""
    widths = [n_features, *config.hidden_layer_sizes]
    flops = config.batch_size * config.tabm * sum(a * b for a, b in zip(widths, widths[1:], strict=False))
    if config.architecture == "mlp" and flops < SMALL_BATCH_FLOPS:
        return 1
    share = max(1, (os.cpu_count() or 1) // n_jobs)
    if share > 1 and not openmp_is_passive():
        _warn_spinning_once()
        return 1
    return share


_warned = False


def _warn_spinning_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            "torch was imported before regtune without OMP_WAIT_POLICY=PASSIVE, so its idle "
            "threads spin; trials run on one thread each. Import regtune first, or set "
            "OMP_WAIT_POLICY=PASSIVE before torch loads, to give larger networks more threads",
            RuntimeWarning, stacklevel=3,
        )


@contextlib.contextmanager
def torch_threads(threads: int | None = None) -> Iterator[None]:
    """Run the block with ``threads`` torch threads (unchanged if ``None``), then restore the
    caller's setting: a trial's choice never leaks into the user's process."""
    import torch

    before = torch.get_num_threads()
    if threads is not None and threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextlib.contextmanager
def passive_openmp() -> Iterator[None]:
    """``OMP_WAIT_POLICY=PASSIVE`` in the environment while worker processes start (they
    inherit it, and their torch loads with it); the caller's environment comes back after."""
    before = os.environ.get(_POLICY)
    os.environ[_POLICY] = before if before is not None else "PASSIVE"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(_POLICY, None)


def assign_devices(device: str, n_workers: int, n_gpus: int) -> list[str]:
    """The device of each of ``n_workers`` workers.

    ``"cuda"`` (or ``"auto"`` when there is a GPU) spreads the workers round-robin over the
    ``n_gpus`` visible devices, several per device when there are more workers than GPUs
    (small models leave a GPU mostly idle). An explicit device (``"cuda:1"``, ``"cpu"``,
    ``"mps"``) is every worker's.
    """
    if device in ("auto", "cuda") and n_gpus > 0:
        return [f"cuda:{i % n_gpus}" for i in range(n_workers)]
    return [device] * n_workers
