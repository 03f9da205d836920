"""The study plumbing: storages, samplers, pruners, the trial queue, dead-worker reaping.

No network trains here: trials are claimed and told by hand, so every test runs in well under
a second.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from regtune.tuning.queue import claim_trials, counted_trials, open_study, reap_dead_trials
from regtune.tuning.storage import (
    StudyError,
    journal_path,
    load_existing_study,
    make_pruner,
    make_sampler,
    make_storage,
)

BASELINE = {"lr": 1e-3, "use_l2": False, "use_dropout": False}


def _open(storage: optuna.storages.BaseStorage, n_trials: int, *, name: str = "s",
          direction: str = "maximize", retry_failed: int = 0) -> tuple[optuna.Study, list]:
    return open_study(
        study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.NopPruner(), direction=direction, n_trials=n_trials,
        baseline_params=BASELINE, attrs={"dataset": "iris"}, retry_failed=retry_failed,
    )


def _run(trial: optuna.Trial, study: optuna.Study, state: TrialState = TrialState.COMPLETE,
         reason: str | None = None) -> None:
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    if reason:
        trial.set_user_attr("fail_reason", reason)
    study.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)


def _journal(tmp_path: Path) -> optuna.storages.BaseStorage:
    return make_storage(str(tmp_path / "study.journal"))


def test_new_study_queues_every_trial_baseline_first(tmp_path: Path) -> None:
    study, reaped = _open(_journal(tmp_path), 4)
    trials = study.get_trials()
    assert reaped == []
    assert [t.state for t in trials] == [TrialState.WAITING] * 4
    assert trials[0].user_attrs == {"baseline": True}
    assert trials[0].system_attrs["fixed_params"] == BASELINE
    assert all(not t.system_attrs.get("fixed_params") for t in trials[1:])
    assert study.user_attrs["dataset"] == "iris"


def test_reopening_adds_only_the_missing_trials(tmp_path: Path) -> None:
    storage = _journal(tmp_path)
    study, _ = _open(storage, 3)
    for trial in claim_trials(study):
        _run(trial, study)
    again, _ = _open(storage, 3)
    assert len(again.get_trials()) == 3
    more, _ = _open(storage, 5)
    states = [t.state for t in more.get_trials()]
    assert states == [TrialState.COMPLETE] * 3 + [TrialState.WAITING] * 2
    # Trials still waiting count as pending: asking again for 5 queues nothing new.
    assert len(_open(storage, 5)[0].get_trials()) == 5


def test_objective_failures_count_but_lost_workers_are_replaced(tmp_path: Path) -> None:
    storage = _journal(tmp_path)
    study, _ = _open(storage, 3)
    claimed = list(claim_trials(study))
    _run(claimed[0], study)
    _run(claimed[1], study, TrialState.FAIL, reason="DivergenceError: loss=nan")
    _run(claimed[2], study, TrialState.FAIL)  # no reason: the worker was interrupted
    assert [t.number for t in counted_trials(study)] == [0, 1]
    study, _ = _open(storage, 3)
    assert [t.state for t in study.get_trials()][-1] == TrialState.WAITING
    assert len(study.get_trials()) == 4


def test_existing_study_with_the_other_direction_is_refused(tmp_path: Path) -> None:
    storage = _journal(tmp_path)
    _open(storage, 2, direction="maximize")
    with pytest.raises(StudyError, match="already exists and maximizes"):
        _open(storage, 2, direction="minimize")


def test_claims_are_exclusive_across_study_handles(tmp_path: Path) -> None:
    storage = _journal(tmp_path)
    _open(storage, 6)
    # Two handles on one journal file behave like two worker processes.
    a = optuna.load_study(study_name="s", storage=make_storage(str(tmp_path / "study.journal")))
    b = optuna.load_study(study_name="s", storage=make_storage(str(tmp_path / "study.journal")))
    got: dict[str, list[int]] = {"a": [], "b": []}
    queues = {"a": claim_trials(a), "b": claim_trials(b)}
    studies = {"a": a, "b": b}
    while queues:
        for key in list(queues):
            trial = next(queues[key], None)
            if trial is None:
                del queues[key]
                continue
            got[key].append(trial.number)
            _run(trial, studies[key])
    assert sorted(got["a"] + got["b"]) == list(range(6))
    assert got["a"] and got["b"]
    owners = {t.user_attrs["regtune.owner"] for t in a.get_trials()}
    assert owners == {f"{socket.gethostname()}:{os.getpid()}"}


def test_dead_workers_trials_are_reaped_and_live_ones_kept(tmp_path: Path) -> None:
    storage = _journal(tmp_path)
    study, _ = _open(storage, 3)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    claimed = list(claim_trials(study))
    host = socket.gethostname()
    claimed[0].set_user_attr("regtune.owner", f"{host}:{dead_pid}")
    claimed[2].set_user_attr("regtune.owner", f"another-host:{dead_pid}")  # not ours to judge
    reaped = reap_dead_trials(study)
    assert [t.number for t in reaped] == [0]
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING]
    # Re-opening the study reaps the same way and queues a replacement for the lost trial.
    claimed[1].set_user_attr("regtune.owner", f"{host}:{dead_pid}")
    study, reaped = _open(storage, 3)
    assert [t.number for t in reaped] == [1]
    assert [t.state for t in study.get_trials()][-2:] == [TrialState.WAITING, TrialState.WAITING]


def test_retry_failed_requeues_a_lost_trial_with_its_params(tmp_path: Path) -> None:
    storage = _journal(tmp_path)
    study, _ = _open(storage, 2, retry_failed=1)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    trial = next(claim_trials(study))
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    trial.set_user_attr("regtune.owner", f"{socket.gethostname()}:{int(dead.stdout)}")
    study, reaped = _open(storage, 2, retry_failed=1)
    assert [t.number for t in reaped] == [0]
    retry = study.get_trials()[-1]
    assert retry.user_attrs["retry_of"] == 0 and retry.user_attrs["baseline"] is True
    assert retry.system_attrs["fixed_params"] == reaped[0].params


@pytest.mark.parametrize(
    ("name", "cls"),
    [("tpe", optuna.samplers.TPESampler), ("random", optuna.samplers.RandomSampler),
     ("cmaes", optuna.samplers.CmaEsSampler), ("gp", optuna.samplers.GPSampler)],
)
def test_make_sampler(name: str, cls: type) -> None:
    assert isinstance(make_sampler(name, 0), cls)


def test_sampler_missing_its_package_is_refused_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cmaes" else real(name, *a))
    with pytest.raises(StudyError, match="needs the 'cmaes' package"):
        make_sampler("cmaes", 0)
    with pytest.raises(StudyError, match="unknown; choose one of tpe, random, cmaes, gp"):
        make_sampler("bayes", 0)


def test_pruners_wait_for_the_warmup() -> None:
    # Steps count epochs from 0: a trial that has trained 4 epochs is at step 3. With 8 epochs
    # the warmup sets the first rung; with 40, 40% of them do (tests/test_pruning.py).
    median = make_pruner("median", warmup=4, max_epochs=8)
    assert median._n_warmup_steps == 3
    hyperband = make_pruner("hyperband", warmup=4, max_epochs=8)
    assert hyperband._min_resource == 3 and hyperband._max_resource == 8 and hyperband._reduction_factor == 4
    assert make_pruner("sha", warmup=4, max_epochs=8)._min_resource == 3
    assert make_pruner("sha", warmup=4, max_epochs=40)._min_resource == 15
    # Trials too short to be judged before their last epoch are never pruned: nothing to save.
    assert isinstance(make_pruner("hyperband", warmup=3, max_epochs=3), optuna.pruners.NopPruner)
    assert isinstance(make_pruner("none", warmup=4, max_epochs=40), optuna.pruners.NopPruner)
    with pytest.raises(StudyError, match="pruner 'asha' is unknown"):
        make_pruner("asha", warmup=4, max_epochs=40)


@pytest.mark.parametrize("name", ["median", "sha"])
def test_a_bad_trial_is_first_judged_once_it_has_trained_the_warmup(name: str) -> None:
    study = optuna.create_study(direction="maximize", pruner=make_pruner(name, warmup=4, max_epochs=8))
    for _ in range(6):  # good trials that went the distance
        good = study.ask()
        for step in range(8):
            good.report(1.0, step)
            good.should_prune()  # SHA records the rungs a trial passed when it asks
        study.tell(good, 1.0)
    bad = study.ask()
    judged = []
    for step in range(4):
        bad.report(0.0, step)
        judged.append(bad.should_prune())
    assert judged == [False, False, False, True]  # after epoch 4 (step 3), not epoch 5


def test_storages(tmp_path: Path) -> None:
    assert isinstance(make_storage(":memory:"), optuna.storages.InMemoryStorage)
    assert journal_path(None) == Path("regtune.journal")
    assert journal_path("journal:~/x.journal") == Path("~/x.journal").expanduser()
    assert journal_path("sqlite:///x.db") is None and journal_path(":memory:") is None
    with pytest.raises(StudyError, match="does not exist"):
        make_storage(str(tmp_path / "missing" / "x.journal"))
    assert isinstance(make_storage(f"sqlite:///{tmp_path}/o.db"), optuna.storages.RDBStorage)


def test_unreachable_database_is_one_masked_error() -> None:
    with pytest.raises(StudyError) as err:
        make_storage("postgresql://u:secret@127.0.0.1:1/db")
    text = str(err.value)
    assert text.startswith("cannot reach storage postgresql://u:***@127.0.0.1:1/db")
    assert "secret" not in text and "\n" not in text


@pytest.mark.slow
@pytest.mark.parametrize("dead_port", ["never_answers"], indirect=True)
def test_database_that_never_answers_fails_fast(dead_port: int, fails_within: Callable) -> None:
    """Issue 11, item 12: a PostgreSQL port that accepts and never answers held `regtune tune`
    for 143 s."""
    error = fails_within(20, lambda: make_storage(f"postgresql+psycopg://u:secret@127.0.0.1:{dead_port}/db"))
    assert isinstance(error, StudyError)
    text = str(error)
    assert text.startswith(f"cannot reach storage postgresql+psycopg://u:***@127.0.0.1:{dead_port}/db")
    assert "secret" not in text and "\n" not in text


def test_load_existing_study(tmp_path: Path) -> None:
    path = tmp_path / "study.journal"
    with pytest.raises(StudyError, match="does not exist"):
        load_existing_study("s", str(path))
    assert not path.exists()  # looking did not create an empty journal
    _open(make_storage(str(path)), 1, name="first")
    assert load_existing_study("first", str(path)).study_name == "first"
    with pytest.raises(StudyError, match="no study 'other' .*studies there: first"):
        load_existing_study("other", str(path))
