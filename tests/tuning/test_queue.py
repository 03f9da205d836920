"""The trial queue on resume: the baseline is never lost, a lowered ``--trials`` is honoured,
a study regtune did not queue is recognised at once, and a study's fingerprint guards it.

No network trains here: trials are claimed and told by hand (the end-to-end versions are in
``test_tuner.py``).
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from regtune.tuning.fingerprint import FINGERPRINT_ATTR
from regtune.tuning.queue import (
    OWNER_ATTR,
    claim_trials,
    counted_trials,
    open_study,
)
from regtune.tuning.storage import StudyError, make_storage

BASELINE = {"lr": 1e-3, "use_l2": False}
FINGERPRINT = {"data": "ab12cd34ef56ab78", "dataset": "iris.csv", "rows": 150, "target": "species",
               "task": "classification", "space": "0123456789abcdef", "space_name": "tiny", "metric": "accuracy",
               "cv": "auto", "folds": 5, "seed": 0, "test_size": 0.2, "val_size": 0.2}


def _storage(tmp_path: Path) -> optuna.storages.BaseStorage:
    return make_storage(str(tmp_path / "study.journal"))


def _open(storage: optuna.storages.BaseStorage, n_trials: int, *, fingerprint: dict | None = None,
          retry_failed: int = 0) -> tuple[optuna.Study, list]:
    return open_study(
        study_name="s", storage=storage, sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.NopPruner(), direction="maximize", n_trials=n_trials,
        baseline_params=BASELINE, attrs={"dataset": "iris.csv"}, retry_failed=retry_failed,
        fingerprint=FINGERPRINT if fingerprint is None else fingerprint,
    )


def _run(trial: optuna.Trial, study: optuna.Study, state: TrialState = TrialState.COMPLETE,
         **attrs: Any) -> None:
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    study.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def _baselines(study: optuna.Study, *states: TrialState) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=states or None) if t.user_attrs.get("baseline")]


# ---------------------------------------------------------------- issue 11, item 4: the baseline


def test_a_baseline_lost_with_its_worker_is_queued_again_and_claimed_first(tmp_path: Path) -> None:
    """kill -9 during trial 0 without --retry-failed: the rerun must still have a baseline."""
    storage = _storage(tmp_path)
    study, _ = _open(storage, 3)
    trial = next(claim_trials(study))
    assert trial.user_attrs["baseline"] is True
    trial.set_user_attr(OWNER_ATTR, f"{socket.gethostname()}:{_dead_pid()}")
    study, reaped = _open(storage, 3)
    assert [t.number for t in reaped] == [0]
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    again = _baselines(study, TrialState.WAITING)
    assert len(again) == 1 and again[0].system_attrs["fixed_params"] == BASELINE
    assert len(waiting) == 3, "the new baseline replaces the lost trial; the count stays 3"
    assert next(claim_trials(study)).number == again[0].number, "the baseline runs first"


def test_an_interrupted_baseline_is_queued_again(tmp_path: Path) -> None:
    """Ctrl-C during trial 0: the trial is FAIL and uncounted; the rerun queues a new baseline."""
    storage = _storage(tmp_path)
    study, _ = _open(storage, 3)
    _run(next(claim_trials(study)), study, TrialState.FAIL, interrupted=True)
    study, _ = _open(storage, 3)
    assert len(_baselines(study, TrialState.WAITING)) == 1
    for trial in claim_trials(study):
        _run(trial, study)
    assert len(counted_trials(study)) == 3
    assert len(_baselines(study, TrialState.COMPLETE)) == 1
    # Complete now: reopening queues no further baseline.
    study, _ = _open(storage, 3)
    assert not study.get_trials(deepcopy=False, states=(TrialState.WAITING,))


def test_a_baseline_failed_by_its_objective_counts_and_is_not_repeated(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    study, _ = _open(storage, 2)
    _run(next(claim_trials(study)), study, TrialState.FAIL, fail_reason="DivergenceError: loss=nan")
    study, _ = _open(storage, 2)
    assert _baselines(study, TrialState.WAITING) == []


# ---------------------------------------------------------------- item 6: a lower --trials on resume


def test_a_lower_trials_count_on_resume_leaves_the_surplus_unrun(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    storage = _storage(tmp_path)
    study, _ = _open(storage, 5)
    _run(next(claim_trials(study, n_trials=5)), study)
    with caplog.at_level(logging.WARNING, logger="regtune"):
        study, _ = _open(storage, 3)
    lines = [r.getMessage() for r in caplog.records if r.name == "regtune"]
    assert len(lines) == 1 and "2 queued trials" in lines[0] and "--trials 3" in lines[0], lines
    ran = []
    for trial in claim_trials(study, n_trials=3):
        ran.append(trial.number)
        _run(trial, study)
    assert len(ran) == 2 and len(counted_trials(study)) == 3
    assert len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) == 2
    # Asking for 5 again runs the two left waiting, and queues nothing new.
    study, _ = _open(storage, 5)
    assert len(study.get_trials(deepcopy=False)) == 5
    assert len(list(claim_trials(study, n_trials=5))) == 2


# ---------------------------------------------------------------- item 9: studies regtune did not queue


def test_a_study_created_outside_regtune_is_refused_at_once(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    foreign = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    foreign.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    start = time.monotonic()
    with pytest.raises(StudyError, match="not created by regtune.*another --study"):
        _open(storage, 3)
    assert time.monotonic() - start < 5
    assert len(foreign.get_trials()) == 2, "nothing was added to the foreign study"


def test_a_study_whose_creator_died_before_queuing_is_queued_here(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.set_user_attr("regtune.creator", f"{socket.gethostname()}:{_dead_pid()}")
    start = time.monotonic()
    study, _ = _open(storage, 3)
    assert time.monotonic() - start < 5
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.WAITING] * 3
    assert trials[0].user_attrs.get("baseline") is True
    assert study.user_attrs[FINGERPRINT_ATTR] == FINGERPRINT


def test_an_empty_study_with_no_attrs_is_adopted_quickly(tmp_path: Path) -> None:
    """A creator killed between creating the study and its first write leaves exactly this."""
    storage = _storage(tmp_path)
    optuna.create_study(study_name="s", storage=storage, direction="maximize")
    start = time.monotonic()
    study, _ = _open(storage, 2)
    assert time.monotonic() - start < 10
    assert len(_baselines(study, TrialState.WAITING)) == 1 and len(study.get_trials()) == 2


# ---------------------------------------------------------------- item 3: the fingerprint


@pytest.mark.parametrize(
    ("change", "match"),
    [({"data": "ffffffffffffffff"}, r"data hash ab12cd34\.\. \(iris\.csv, 150 rows\).*data hash ffffffff"),
     ({"seed": 1}, "seed 0; this run has seed 1: use another --study, or the same --seed"),
     ({"folds": 3, "cv": "3"}, r"cv auto \(5 folds\); this run has cv 3 \(3 folds\)"),
     ({"target": "island"}, "target 'species'; this run has target 'island'"),
     ({"space": "fedcba9876543210", "space_name": "minimal"}, "search space 'tiny'.*search space 'minimal'"),
     ({"metric": "balanced_accuracy"}, "metric 'accuracy'; this run has metric 'balanced_accuracy'")],
)
def test_another_fingerprint_is_refused_and_nothing_changes(tmp_path: Path, change: dict, match: str) -> None:
    storage = _storage(tmp_path)
    _open(storage, 2)
    with pytest.raises(StudyError, match=match) as err:
        _open(storage, 4, fingerprint={**FINGERPRINT, **change})
    assert str(err.value).startswith("study 's' was created for ") and "\n" not in str(err.value)
    assert len(optuna.load_study(study_name="s", storage=storage).get_trials()) == 2


def test_the_same_fingerprint_joins(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    _open(storage, 2)
    study, _ = _open(storage, 3, fingerprint=dict(FINGERPRINT))
    assert len(study.get_trials()) == 3


def _legacy_study(storage: optuna.storages.BaseStorage, seed: int = 0) -> None:
    """What regtune before fingerprints left: name attrs and the queue marker, no fingerprint."""
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for key, value in {"dataset": "iris.csv", "space": "tiny", "metric": "accuracy", "seed": seed,
                       "regtune.uid": "0" * 32}.items():
        study.set_user_attr(key, value)
    study.enqueue_trial(BASELINE, user_attrs={"baseline": True})
    study.enqueue_trial({})
    study.set_user_attr("regtune.enqueued", True)


def test_a_study_made_before_fingerprints_is_refused(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    _legacy_study(storage)
    with pytest.raises(StudyError, match="has no fingerprint .* use another --study"):
        _open(storage, 3)


