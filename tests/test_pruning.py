"""The shipped pruning rule (regtune.tuning.storage.make_pruner, regtune.tuning.trial.pruning_value)
on real Optuna pruners over in-memory studies: a trial that starts slower and ends better is
kept where the old rule pruned it. No training: curves are reported by hand, as
benchmarks/pruning_replay.py replays recorded ones."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import optuna
import pytest

from regtune.tuning.optuna_internals import SeededHyperbandPruner
from regtune.tuning.storage import first_rung, make_pruner
from regtune.tuning.trial import pruning_value
from regtune.tuning.tuner import tune

TINY = str(Path(__file__).parent / "spaces" / "tiny.yaml")
EPOCHS, WARMUP = 40, 4  # the default space's max_epochs, and the warmup the tuner gives it


def _old_pruner(name: str) -> optuna.pruners.BasePruner:
    """The rule before: first rung at step ``warmup - 1``, the latest score reported."""
    first = WARMUP - 1
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=first)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=3)


def _raw(values: Sequence[float]) -> list[float]:
    return list(values)


def _reached(values: Sequence[float]) -> list[float]:
    out: list[float] = []
    for v in values:
        out.append(pruning_value(v, out[-1] if out else None, maximize=True))
    return out


def _run(study: optuna.Study, curve: Sequence[float], report: Callable[[Sequence[float]], list[float]]) -> int | None:
    """Report ``curve`` epoch by epoch as regtune.tuning.trial does; the step it was pruned at."""
    trial = study.ask()
    for step, value in enumerate(report(curve)):
        trial.report(value, step)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return step
    study.tell(trial, curve[-1])
    return None


FAST = [0.80, 0.86, 0.88, 0.89] + [0.90] * (EPOCHS - 4)  # learns fast, ends at 0.90
SLOW = [0.40, 0.50, 0.55, 0.60, 0.70, 0.80, 0.86, 0.90] + [0.93] * (EPOCHS - 8)  # slower, ends better
# Regularized and noisy: reaches 0.93 early, then dips below the others now and then.
NOISY = [0.60, 0.80, 0.90, 0.93, 0.88, 0.93, 0.88, 0.93, 0.88, 0.84] + [0.93, 0.88] * ((EPOCHS - 10) // 2)


@pytest.mark.parametrize("name", ["median", "sha"])
def test_a_slow_starter_that_ends_better_is_kept_where_the_old_rule_pruned_it(name: str) -> None:
    def slow_fate(pruner: optuna.pruners.BasePruner, report: Callable) -> int | None:
        study = optuna.create_study(direction="maximize", pruner=pruner)
        for _ in range(6):
            assert _run(study, FAST, report) is None or name == "sha"  # SHA may prune a fast one too
        return _run(study, SLOW, report)

    assert slow_fate(_old_pruner(name), _raw) == WARMUP - 1  # judged at epoch 4, behind, pruned
    assert slow_fate(make_pruner(name, warmup=WARMUP, max_epochs=EPOCHS), _reached) is None


def test_hyperband_judges_no_trial_before_the_first_rung() -> None:
    first = first_rung(EPOCHS, WARMUP)
    assert first == 9  # a quarter of 40 epochs
    pruner = make_pruner("hyperband", warmup=WARMUP, max_epochs=EPOCHS)
    assert isinstance(pruner, SeededHyperbandPruner)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for _ in range(12):
        _run(study, FAST, _reached)
    for _ in range(4):  # whatever bracket each lands in
        hopeless = study.ask()
        judged = []
        for step in range(first + 1):
            hopeless.report(0.0, step)
            judged.append(hopeless.should_prune())
        study.tell(hopeless, state=optuna.trial.TrialState.PRUNED)
        assert not any(judged[:first])


def test_a_dip_at_the_rung_does_not_prune_a_trial_that_reached_the_best_score() -> None:
    # Successive halving compares the value reported at the rung (the median rule already takes
    # each judged trial's best over its steps).
    assert NOISY[first_rung(EPOCHS, WARMUP)] < FAST[-1] < max(NOISY)  # it dips below the others at the rung

    def noisy_fate(report: Callable) -> int | None:
        study = optuna.create_study(direction="maximize", pruner=make_pruner("sha", warmup=WARMUP,
                                                                             max_epochs=EPOCHS))
        for _ in range(6):
            _run(study, FAST, report)
        return _run(study, NOISY, report)

    assert noisy_fate(_raw) == first_rung(EPOCHS, WARMUP)  # the latest score: pruned on its dip
    assert noisy_fate(_reached) is None  # the best so far: kept


def test_pruning_value_is_the_best_so_far_in_the_metric_direction() -> None:
    assert pruning_value(0.5, None, maximize=True) == 0.5
    assert pruning_value(0.4, 0.5, maximize=True) == 0.5
    assert pruning_value(0.6, 0.5, maximize=True) == 0.6
    assert pruning_value(2.0, 1.0, maximize=False) == 1.0  # an error: lower is better
    assert pruning_value(0.5, 1.0, maximize=False) == 0.5


def test_first_rung_is_a_quarter_of_the_epochs_never_before_the_warmup() -> None:
    assert first_rung(40, 4) == 9 and first_rung(30, 3) == 7
    assert first_rung(12, 4) == 3  # the warmup decides
    assert isinstance(make_pruner("median", warmup=3, max_epochs=3), optuna.pruners.NopPruner)


def test_a_tuned_trial_reports_its_best_score_so_far(tmp_path: Path) -> None:
    result = tune("iris", space=TINY, n_trials=3, cv=1, pruner="none", storage=":memory:", tracking_uri="off",
                  progress=False, log_model=False, device="cpu", ensemble=1)
    for t in result.study.trials:
        curve = [t.intermediate_values[s] for s in sorted(t.intermediate_values)]
        assert curve and all(b >= a for a, b in zip(curve, curve[1:], strict=False))
