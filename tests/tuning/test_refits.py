"""The final refits in one process or two: the same models either way (up to float rounding),
the budget kept, and a helper that dies, fails or cannot send its model handled."""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from refit_helpers import refit_where

from regtune.data.loading import load_dataset
from regtune.space.space import SearchSpace
from regtune.tuning.budget import FinalBudget
from regtune.tuning.journal import process_alive
from regtune.tuning.prepare import prepare
from regtune.tuning.refits import HELPER_NAME, RefitJob, parallel_refits, run_refits
from regtune.tuning.settings import TuneSettings
from regtune.tuning.trial import Folds
from regtune.tuning.worker import worker_context

pytestmark = pytest.mark.skipif(not parallel_refits(TuneSettings(n_jobs=2, storage="x.journal")),
                                reason="no fork server on this platform: refits run in one process")


@pytest.fixture(scope="module")
def settings() -> TuneSettings:
    return TuneSettings(cv=1, seed=0, n_jobs=2, device="cpu")


@pytest.fixture(scope="module")
def folds(settings: TuneSettings) -> Folds:
    """The data; and the fork server is up (a study's refits find it running: its workers came from it)."""
    p = worker_context().Process(target=time.sleep, args=(0,))
    p.start()
    p.join()
    return prepare(load_dataset("iris"), settings)[0]


def _jobs(tiny_space: Path, n: int, attrs: dict[int, dict[str, Any]] | None = None) -> list[RefitJob]:
    """``n`` trials of the tiny space (each its own lr and seed), as a study holds them."""
    space = SearchSpace.from_yaml(tiny_space)
    study = optuna.create_study(direction="maximize")
    start = datetime.now()
    marker = Path(tempfile.gettempdir()) / f"regtune-test-refits-{uuid.uuid4().hex}"  # the helper's first refit
    for i in range(n):
        params = {**space.baseline_params(), "lr": 0.01 * (1 + 0.3 * i)}
        study.enqueue_trial(params)
        trial = study.ask()
        space.sample(trial)
        for key, value in {"test.marker": str(marker), **(attrs or {}).get(i, {})}.items():
            trial.set_user_attr(key, value)
        for epoch in range(3):
            trial.report(0.5, epoch)
        study.tell(trial, 0.9)
    jobs = []
    for t in study.trials:
        t.datetime_start, t.datetime_complete = start, start + timedelta(seconds=0.3)
        jobs.append(RefitJob(t.number, space.to_config(t.params), t, what=f"trial {t.number}"))
    return jobs


def test_two_processes_refit_the_same_models_as_one(tiny_space: Path, folds: Folds, settings: TuneSettings,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    jobs = _jobs(tiny_space, 4, {0: {"test.here_wait": 2.0}})  # the helper takes the next ones meanwhile
    alone = run_refits(jobs, refit_where, folds, settings, FinalBudget(None, folds.splits, len(folds.y)))
    with caplog.at_level(logging.DEBUG, logger="regtune"):
        shared = run_refits(jobs, refit_where, folds, settings, FinalBudget(None, folds.splits, len(folds.y)),
                            lanes=2)
    assert sorted(alone) == sorted(shared) == [0, 1, 2, 3]
    assert {m.pid_ for m in alone.values()} == {os.getpid()}
    assert len({m.pid_ for m in shared.values()}) == 2 and shared[0].pid_ == os.getpid()
    assert "in the helper" in caplog.text
    for n in alone:
        assert shared[n].n_iter_ == alone[n].n_iter_
        np.testing.assert_allclose(shared[n].predict_proba(folds.X), alone[n].predict_proba(folds.X), atol=1e-5)


def test_a_refit_that_does_not_fit_in_the_time_left_is_skipped_in_either_process(
        tiny_space: Path, folds: Folds, settings: TuneSettings) -> None:
    jobs = _jobs(tiny_space, 3, {0: {"test.here_wait": 1.0}})
    jobs[2].trial.datetime_complete = jobs[2].trial.datetime_start + timedelta(seconds=600)  # a 10-minute refit
    budget = FinalBudget(time.time() + 60, folds.splits, len(folds.y))
    fitted = run_refits(jobs, refit_where, folds, settings, budget, lanes=2)
    assert fitted[2] is None and fitted[0] is not None and fitted[1] is not None
    assert len(budget.skipped) == 1 and budget.skipped[0].startswith("trial 2 (refit estimated")


def test_one_refit_serves_every_role_of_its_trial(tiny_space: Path, folds: Folds, settings: TuneSettings) -> None:
    jobs = _jobs(tiny_space, 2)
    budget = FinalBudget(time.time() - 1, folds.splits, len(folds.y))  # no time: every job is skipped
    twice = [*jobs, RefitJob(1, jobs[1].config, jobs[1].trial, what="the baseline's refit")]
    assert run_refits(twice, refit_where, folds, settings, budget, lanes=2) == {0: None, 1: None}
    assert budget.skipped[1].startswith("trial 1 and the baseline's refit (refit estimated")


@pytest.mark.parametrize("action", ["exit", "unpicklable"])
def test_a_refit_the_helper_cannot_finish_is_done_in_this_process(
        tiny_space: Path, folds: Folds, settings: TuneSettings, action: str) -> None:
    jobs = _jobs(tiny_space, 3, {0: {"test.here_wait": 1.5}, 1: {"test.in_helper": action},
                                   2: {"test.in_helper": action}})
    fitted = run_refits(jobs, refit_where, folds, settings, FinalBudget(None, folds.splits, len(folds.y)), lanes=2)
    assert sorted(fitted) == [0, 1, 2]
    assert {m.pid_ for m in fitted.values()} == {os.getpid()}


def test_a_refit_that_fails_in_the_helper_fails_here(tiny_space: Path, folds: Folds, settings: TuneSettings) -> None:
    jobs = _jobs(tiny_space, 2, {0: {"test.here_wait": 1.5}, 1: {"test.in_helper": "raise"}})
    with pytest.raises(ValueError, match="refit of trial 1 failed in the helper"):
        run_refits(jobs, refit_where, folds, settings, FinalBudget(None, folds.splits, len(folds.y)), lanes=2)


def test_ctrl_c_during_the_refits_ends_the_helper_too(tiny_space: Path, folds: Folds, settings: TuneSettings,
                                                      tmp_path: Path) -> None:
    pid_file = tmp_path / "helper.pid"
    jobs = _jobs(tiny_space, 2, {0: {"test.here_wait": 1.5, "test.here_interrupt": True},
                                 1: {"test.in_helper": "hang", "test.pid_file": str(pid_file)}})
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_refits(jobs, refit_where, folds, settings, FinalBudget(None, folds.splits, len(folds.y)), lanes=2)
    assert time.monotonic() - started < 15
    assert pid_file.exists(), "precondition: the helper was refitting"
    assert not any(p.name == HELPER_NAME for p in multiprocessing.active_children())
    assert not process_alive(int(pid_file.read_text()))


_KILLED = """
import os, sys, time
sys.path[:0] = [sys.argv[3], sys.argv[4]]
from refit_helpers import refit_where
from test_refits import _jobs
from regtune.data.loading import load_dataset
from regtune.tuning.budget import FinalBudget
from regtune.tuning.prepare import prepare
from regtune.tuning.refits import run_refits
from regtune.tuning.settings import TuneSettings

if __name__ == "__main__":
    settings = TuneSettings(cv=1, seed=0, n_jobs=2, device="cpu")
    folds = prepare(load_dataset("iris"), settings)[0]
    jobs = _jobs(sys.argv[1], 2, {0: {"test.here_wait": 120}, 1: {"test.in_helper": "hang", "test.pid_file": sys.argv[2]}})
    run_refits(jobs, refit_where, folds, settings, FinalBudget(None, folds.splits, len(folds.y)), lanes=2)
"""


def test_a_helper_whose_study_process_is_killed_ends(tiny_space: Path, tmp_path: Path) -> None:
    """kill -9 of the study's process mid-refit: the helper it left does not refit on as an orphan."""
    script, pid_file = tmp_path / "refits.py", tmp_path / "helper.pid"
    script.write_text(_KILLED)
    tests = Path(__file__).parent
    study = subprocess.Popen([sys.executable, str(script), str(tiny_space), str(pid_file), str(tests.parent), str(tests)])
    try:
        deadline = time.monotonic() + 120
        while not pid_file.exists() and study.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pid_file.exists(), "precondition: the helper was refitting"
    finally:
        study.kill()
        study.wait()
    helper = int(pid_file.read_text())
    deadline = time.monotonic() + 20
    while process_alive(helper) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not process_alive(helper)


def test_a_study_with_two_workers_refits_in_two_processes_the_models_one_process_would(
        tmp_path: Path, tiny_space: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 21 item 5: with n_jobs=2 the best trial, the ensemble's other members and the
    baseline refit in two processes; each model equals its refit in this process alone."""
    import refit_helpers

    import regtune.tuning.final as final
    from regtune.tuning.tuner import tune

    original = final.refit
    monkeypatch.setattr(final, "refit", refit_where)  # the helper runs it too (refit_helpers is importable)
    monkeypatch.setitem(refit_helpers.FIRST_WAIT, "s", 1.5)  # the best's refit here waits: the helper takes the next
    settings = TuneSettings(space=str(tiny_space), n_trials=8, cv=1, pruner="none", seed=0, n_jobs=2, ensemble=3,
                            storage=str(tmp_path / "regtune.journal"), tracking_uri="off", progress=False,
                            log_model=False, device="cpu")
    with caplog.at_level(logging.DEBUG, logger="regtune"):
        result = tune("iris", settings=settings)
    ensemble = result.ensemble_estimator
    assert ensemble is not None and len(ensemble.trials) >= 2, result.notes
    models = {**dict(zip(ensemble.trials, ensemble.members, strict=True)), 0: result.baseline_estimator}
    assert len({m.pid_ for m in models.values()}) == 2, "two processes refit"
    assert Path(f"{settings.storage}.helper-refits").exists(), "the helper marked its first refit"
    assert "in the helper" in caplog.text
    folds = prepare(load_dataset("iris"), settings)[0]
    space = SearchSpace.from_yaml(tiny_space)
    X = folds.X[folds.refit_rows()]
    for number, model in models.items():
        trial = result.study.trials[number]
        alone = original(space.to_config(trial.params), trial, folds, settings)
        assert model.n_iter_ == alone.n_iter_
        np.testing.assert_allclose(model.predict_proba(X), alone.predict_proba(X), atol=1e-5)
