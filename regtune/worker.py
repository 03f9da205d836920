"""A worker: claims trials from the study queue and runs them until none is left.

The same function runs inline (``--jobs 1``) and in each spawned process (``--jobs N``); on
another machine it is simply another ``regtune tune`` against the same storage.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import optuna
import torch
from optuna.trial import TrialState

from .metrics import get_metric
from .objective import Folds, TrialPruned, run_objective, trial_seed
from .space import SearchSpace
from .study import claim_trials, make_pruner, make_sampler, make_storage
from .tracking import MLflowTracker, make_tracker

__all__ = ["WorkerSpec", "run_worker"]


@dataclass(frozen=True)
class WorkerSpec:
    """Plain, picklable settings a worker process rebuilds its study and tracker from."""

    study_name: str
    storage: str | None
    sampler: str
    pruner: str
    seed: int
    space: str
    metric: str
    device: str
    tracking_uri: str
    experiment: str
    parent_run_id: str
    warmup: int
    max_epochs: int
    timeout: float | None = None
    heartbeat_interval: int | None = None
    grace_period: int | None = None
    retry_failed: int = 0
    n_jobs: int = 1


def run_worker(spec: WorkerSpec, folds: Folds, index: int, study: optuna.Study | None = None) -> None:
    """Claim and run trials until the queue is empty or the timeout passes.

    A spawned process rebuilds the study from ``spec``; the inline worker passes its own.
    """
    if spec.n_jobs > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // spec.n_jobs))
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    deadline = time.monotonic() + spec.timeout if spec.timeout else None
    if study is None:
        storage = make_storage(
            spec.storage, heartbeat_interval=spec.heartbeat_interval, grace_period=spec.grace_period,
            retry_failed=spec.retry_failed,
        )
        study = optuna.load_study(
            study_name=spec.study_name,
            storage=storage,
            sampler=make_sampler(spec.sampler, spec.seed + index),
            pruner=make_pruner(spec.pruner, warmup=spec.warmup, max_epochs=spec.max_epochs),
        )
    space = SearchSpace.from_yaml(spec.space)
    metric = get_metric(spec.metric, folds.task)
    tracker = make_tracker(spec.tracking_uri, spec.experiment)
    for trial in claim_trials(study):
        _run_trial(study, trial, space, metric, folds, tracker, spec)
        if deadline is not None and time.monotonic() > deadline:
            break


def _run_trial(
    study: optuna.Study, trial: optuna.Trial, space: SearchSpace, metric, folds: Folds,  # noqa: ANN001
    tracker: MLflowTracker, spec: WorkerSpec,
) -> None:
    from optuna.storages._heartbeat import get_heartbeat_thread

    seed = trial_seed(spec.seed, trial.number)
    trial.set_user_attr("seed", seed)
    with get_heartbeat_thread(trial._trial_id, study._storage):
        run_id = None
        try:
            config = space.sample(trial)
            run_id = tracker.start_trial_run(
                spec.parent_run_id, trial.number,
                params={**trial.params, **{f"config.{k}": v for k, v in config.to_dict().items()}, "seed": seed},
                tags={"optuna.study": spec.study_name, "baseline": str(bool(trial.user_attrs.get("baseline")))},
            )
            trial.set_user_attr("mlflow_run_id", run_id)
            value, summary = run_objective(
                trial, config, folds, metric, seed=seed, device=spec.device, warmup=spec.warmup,
                on_epoch=lambda epoch, record: tracker.log_epoch(run_id, epoch, record),
            )
        except TrialPruned as exc:
            tracker.finish_trial(run_id, "PRUNED", tags={"pruned_epoch": str(exc.epoch)})
            study.tell(trial, state=TrialState.PRUNED)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            if run_id:
                tracker.end_run(run_id, "KILLED")
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as exc:  # a diverging or crashing trial fails alone; the study goes on
            reason = f"{type(exc).__name__}: {exc}"[:500]
            trial.set_user_attr("fail_reason", reason)
            if run_id:
                tracker.finish_trial(run_id, "FAIL", tags={"fail_reason": reason})
            study.tell(trial, state=TrialState.FAIL)
            optuna.logging.get_logger("regtune").warning("trial %d failed: %s", trial.number, reason)
        else:
            trial.set_user_attr("best_epoch", summary["best_epoch"])
            tracker.finish_trial(run_id, "COMPLETE", metrics=summary)
            study.tell(trial, value)
