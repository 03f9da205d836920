"""The shipped pruning rule (regtune.tuning.storage.make_pruner: the first rung at 40% of
max_epochs) on real Optuna pruners over in-memory studies: a trial that starts slower and ends
better is kept where the old rule (first rung at epoch ``warmup``) pruned it. No training:
curves are reported by hand, as benchmarks/pruning_replay.py replays recorded ones."""

from __future__ import annotations

from collections.abc import Sequence

import optuna
import pytest

from regtune.tuning.optuna_internals import SeededHyperbandPruner
from regtune.tuning.storage import first_rung, make_pruner

EPOCHS, WARMUP = 40, 4  # the default space's max_epochs, and the warmup the tuner gives it


def _old_pruner(name: str) -> optuna.pruners.BasePruner:
    """The rule before: first rung at step ``warmup - 1``, the latest score reported."""
    first = WARMUP - 1
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=first)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=3)


def _run(study: optuna.Study, curve: Sequence[float]) -> int | None:
    """Report ``curve`` epoch by epoch as regtune.tuning.trial does; the step it was pruned at."""
    trial = study.ask()
    for step, value in enumerate(curve):
        trial.report(value, step)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return step
    study.tell(trial, curve[-1])
    return None


FAST = [0.80, 0.86, 0.88, 0.89] + [0.90] * (EPOCHS - 4)  # learns fast, ends at 0.90
SLOW = [0.40, 0.50, 0.55, 0.60, 0.70, 0.80, 0.86, 0.88] + [0.93] * (EPOCHS - 8)  # slower, ends better


@pytest.mark.parametrize("name", ["median", "sha"])
def test_a_slow_starter_that_ends_better_is_kept_where_the_old_rule_pruned_it(name: str) -> None:
    def slow_fate(pruner: optuna.pruners.BasePruner) -> int | None:
        study = optuna.create_study(direction="maximize", pruner=pruner)
        for _ in range(6):
            _run(study, FAST)
        return _run(study, SLOW)

    assert slow_fate(_old_pruner(name)) == WARMUP - 1  # judged at epoch 4, behind, pruned
    assert slow_fate(make_pruner(name, warmup=WARMUP, max_epochs=EPOCHS)) is None


def test_hyperband_keeps_the_slow_starter_and_judges_no_trial_before_the_first_rung() -> None:
    first = first_rung(EPOCHS, WARMUP)
    assert first == 15  # 40% of 40 epochs: epoch 16
    pruner = make_pruner("hyperband", warmup=WARMUP, max_epochs=EPOCHS)
    assert isinstance(pruner, SeededHyperbandPruner)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for _ in range(8):
        _run(study, FAST)
    assert _run(study, SLOW) is None
    for _ in range(4):
        hopeless = study.ask()
        judged = []
        for step in range(first + 1):
            hopeless.report(0.0, step)
            judged.append(hopeless.should_prune())
        study.tell(hopeless, state=optuna.trial.TrialState.PRUNED)
        assert judged == [False] * first + [True]  # one bracket from 40% on: every trial is judged there


def test_first_rung_is_40_percent_of_the_epochs_never_before_the_warmup() -> None:
    assert first_rung(40, 4) == 15 and first_rung(30, 3) == 11
    assert first_rung(8, 4) == 3  # the warmup decides
    assert isinstance(make_pruner("median", warmup=3, max_epochs=3), optuna.pruners.NopPruner)
    assert isinstance(make_pruner("sha", warmup=1, max_epochs=2), optuna.pruners.NopPruner)  # judged at the last epoch
