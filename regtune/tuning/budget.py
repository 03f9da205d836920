"""A study with a timeout: queue a few trials at a time, and keep time for the final refit.

``--timeout 90`` is a promise about the whole run, not about when the last trial may start.
The final refits (the best configuration and the baseline, each on every row of the train
part) and the model logged to MLflow come after the search, so the search must stop early
enough to leave them their time. Their cost is read off the trials already run: a trial trains
``n_folds`` networks on a share of the rows for some epochs, a refit one network on all of
them for the epochs early stopping chose.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from regtune.nn.callbacks import Callback, TrainerState

__all__ = ["EPOCH_SHARE", "LOG_MODEL_SECONDS", "PROBE_EPOCHS", "FinalBudget", "OutOfTime", "StopBy", "promise_slack", "fits_left", "queue_batch",
           "refit_seconds", "search_deadline"]

LOG_MODEL_SECONDS = 2.0  # logging the refit model to a local MLflow store (measured: 1-2 s)


def promise_slack(timeout: float) -> float:
    """How far past ``timeout`` the best trial's refit may train: the budget's promise is
    ``1.05 T + 5 s``, and a final model cut to one epoch because the baseline trial (never cut)
    took the whole budget is no model at all; one second of the slack stays for what follows."""
    return 0.05 * timeout + 4.0
#: An average trial's cost per network, in epochs of ``max_epochs`` on the probe's clock:
#: pruning and early stopping end trials after 0.25-0.47 of ``max_epochs`` on the benchmark's
#: unseen datasets, and validation, reporting and start-up cost about half as much again
#: (benchmarks/selection_ab.py: trials of the plan the probe chose came out ~1.5x dearer).
EPOCH_SHARE = 0.75
PROBE_EPOCHS = 2  # epochs the probe of ``cv="auto"`` times
_PER_WORKER = 2  # queued trials per worker: one running, one ready for the next claim


def queue_batch(timeout: float | None, n_jobs: int) -> int | None:
    """How many trials may wait in the queue at once; ``None`` (all of them) without a timeout."""
    return None if timeout is None else _PER_WORKER * max(1, n_jobs)


def refit_seconds(study: optuna.Study, splits: Sequence[tuple[Sequence[int], Sequence[int]]], n_rows: int,
                  members: int = 1) -> float:
    """Estimated seconds of the final refits of the best ``members`` trials (an ensemble's
    candidates; 1: the best) and the baseline trial, plus logging.

    Per epoch, a refit trains on ``n_rows`` rows where each of the trial's folds trained on its
    training rows; the epochs are the trial's best epoch + 1 with early stopping, else all it
    trained. 0 before any trial has completed (nothing to go on yet).
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return 0.0
    chosen = [t for t in complete if t.user_attrs.get("baseline")][:1]
    for trial in _best(study, complete, members):
        if all(trial.number != t.number for t in chosen):
            chosen.append(trial)
    fold_rows = sum(len(train) for train, _ in splits) or 1
    return sum(_one_refit(t, n_rows / fold_rows) for t in chosen) + LOG_MODEL_SECONDS


def search_deadline(deadline: float | None, study: optuna.Study,
                    splits: Sequence[tuple[Sequence[int], Sequence[int]]], n_rows: int,
                    members: int = 1) -> float | None:
    """The wall-clock time (``time.time()``) after which no trial starts and running ones stop."""
    if deadline is None:
        return None
    return deadline - refit_seconds(study, splits, n_rows, members)


def fits_left(seconds_left: float, epoch_seconds: float, max_epochs: int) -> float:
    """How many fits of one network on the whole search part ``seconds_left`` holds, the two
    final refits (best and baseline) set aside: what ``cv="auto"`` weighs
    (:func:`regtune.data.split.auto_plan`). ``epoch_seconds`` is one epoch on every row."""
    per_fit = max(epoch_seconds, 1e-9) * max(1.0, max_epochs * EPOCH_SHARE)
    return max(0.0, (seconds_left - LOG_MODEL_SECONDS) / per_fit - 2)


def _best(study: optuna.Study, complete: list[FrozenTrial], k: int) -> list[FrozenTrial]:
    finite = [t for t in complete if t.value is not None and math.isfinite(t.value)]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return sorted(finite, key=lambda t: -t.value if maximize else t.value)[:max(1, k)]


def _one_refit(trial: FrozenTrial, rows_ratio: float) -> float:
    epochs = max(1, len(trial.intermediate_values))
    seconds = trial.duration.total_seconds() if trial.duration else 0.0
    refit_epochs = epochs
    if trial.params.get("use_early_stopping") and "best_epoch" in trial.user_attrs:
        refit_epochs = min(epochs, round(trial.user_attrs["best_epoch"]) + 1)
    return seconds / epochs * refit_epochs * rows_ratio



class OutOfTime(Exception):  # noqa: N818 - a signal, not an error
    """The search's time is up while a trial trains: the trial ends COMPLETE, scored on the
    epochs it trained (its best common epoch so far), not pruned: a good trial cut short by the
    clock still counts."""


class StopBy(Callback):
    """Stop training once the next epoch would end after ``deadline`` (``time.time()``): the
    final refit of a study with a timeout keeps the epochs it had time for. ``reserve`` more
    epochs' time is kept for what follows the fit: scoring the model on the train and test
    parts costs about one epoch's forward passes."""

    def __init__(self, deadline: float, reserve: float = 1.0) -> None:
        self.deadline = deadline
        self.reserve = reserve
        self.stopped_at: int | None = None
        self._last = time.time()

    def on_train_begin(self, trainer: TrainerState) -> None:
        self._last = time.time()

    def on_epoch_end(self, trainer: TrainerState) -> None:
        now = time.time()
        epoch_seconds, self._last = now - self._last, now
        if now + (1 + self.reserve) * epoch_seconds > self.deadline:
            trainer.should_stop = True
            self.stopped_at = trainer.epoch


class FinalBudget:
    """The time left for a study's final model (``deadline`` ``None``: no timeout, all of it).

    The best trial is always refit (stopped by :class:`StopBy` if need be); the baseline and
    each further ensemble member only where their estimated refit (:func:`refit_seconds`'s
    per-trial estimate) ends before the deadline, less the model's logging. What was skipped
    for time is collected in ``skipped``, for the summary.
    """

    def __init__(self, deadline: float | None, splits: Sequence[tuple[Sequence[int], Sequence[int]]],
                 n_rows: int) -> None:
        self.deadline = deadline
        fold_rows = sum(len(train) for train, _ in splits) or 1
        self._ratio = n_rows / fold_rows
        self.skipped: list[str] = []

    @property
    def ends(self) -> float | None:
        """When training must be over: the deadline less the model's logging."""
        return None if self.deadline is None else self.deadline - LOG_MODEL_SECONDS

    def estimate(self, trial: FrozenTrial) -> float:
        return _one_refit(trial, self._ratio)

    def fits(self, trial: FrozenTrial | None, what: str) -> bool:
        """Whether ``what`` (the refit of ``trial``) ends in time; if not, it is noted as skipped."""
        if self.ends is None or trial is None:
            return True
        left, cost = self.ends - time.time(), self.estimate(trial)
        if cost <= left:
            return True
        self.skipped.append(f"{what} (refit estimated {cost:.0f} s, {max(0.0, left):.0f} s left)")
        return False
