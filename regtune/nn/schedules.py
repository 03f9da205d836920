"""Learning-rate schedules with linear warm-up, stepped once per optimizer step.

The best tabular MLPs do not train at a constant rate: RealMLP anneals it (Holzmüller et al.
2024), TabM and most fine-tuning recipes warm up first. A schedule is a pure function of the
step, so the trainer only sets ``lr`` on the optimizer's groups before each step and a run
is reproducible from its logged config. The horizon is ``max_epochs``: early stopping may end
training before an annealing schedule reaches its end, and a refit that stops at the chosen
epoch follows the same curve as the trial did up to there.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["SCHEDULES", "LRSchedule"]

_ONECYCLE_RISE = 0.3  # torch.optim.lr_scheduler.OneCycleLR's pct_start
_ONECYCLE_START = 1 / 25  # and its div_factor
_FLAT_SHARE = 0.5  # flat_anneal: half at the full rate, then a cosine to zero


def _constant(t: float) -> float:
    return 1.0


def _cosine(t: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * t))


def _onecycle(t: float) -> float:
    if t < _ONECYCLE_RISE:
        rise = 0.5 * (1.0 - math.cos(math.pi * t / _ONECYCLE_RISE))
        return _ONECYCLE_START + (1.0 - _ONECYCLE_START) * rise
    return _cosine((t - _ONECYCLE_RISE) / (1.0 - _ONECYCLE_RISE))


def _flat_anneal(t: float) -> float:
    return 1.0 if t < _FLAT_SHARE else _cosine((t - _FLAT_SHARE) / (1.0 - _FLAT_SHARE))


# name -> the lr multiplier at progress t in [0, 1) after the warm-up; the names are
# regtune.config.LR_SCHEDULES (tests/nn/test_schedules.py checks that they agree).
SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": _constant,
    "cosine": _cosine,
    "onecycle": _onecycle,
    "flat_anneal": _flat_anneal,
}


class LRSchedule:
    """The learning rate at each optimizer step: a linear warm-up, then the named shape.

    Parameters
    ----------
    name : str
        A key of :data:`SCHEDULES`.
    base_lr : float
        The peak rate (``RegConfig.lr``).
    total_steps : int
        Optimizer steps in ``max_epochs`` epochs.
    warmup_steps : int
        Steps of the linear ramp from ``base_lr / warmup_steps`` up to ``base_lr``; capped at
        ``total_steps``.
    """

    def __init__(self, name: str, base_lr: float, total_steps: int, warmup_steps: int = 0) -> None:
        if name not in SCHEDULES:
            raise ValueError(f"lr_schedule={name!r} is not one of {', '.join(SCHEDULES)}")
        self.name = name
        self.base_lr = base_lr
        self.total_steps = max(1, total_steps)
        self.warmup_steps = min(max(0, warmup_steps), self.total_steps)
        self._shape = SCHEDULES[name]

    @property
    def is_constant(self) -> bool:
        """True when every step gets ``base_lr`` (the trainer then skips setting it)."""
        return self.name == "constant" and self.warmup_steps == 0

    def __call__(self, step: int) -> float:
        """The rate for optimizer step ``step`` (0-based); past the horizon, the last one."""
        step = min(step, self.total_steps - 1)
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        t = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return self.base_lr * self._shape(t)
