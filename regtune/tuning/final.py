"""The end of a study: refit the best trial (the ensemble's members and the baseline as the
time allows), test them once, log the summary and the final model on the parent run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from regtune.config import RegConfig, no_regularization
from regtune.data.preprocess import TabularPreprocessor
from regtune.metrics import Metric
from regtune.nn.callbacks import StopAfter
from regtune.space.space import SearchSpace
from regtune.tracking.tracker import StudyTracker
from regtune.tuning.budget import FinalBudget, StopBy, promise_slack
from regtune.tuning.queue import AS_WRITTEN_ATTR
from regtune.tuning.refits import RefitJob, parallel_refits, run_refits
from regtune.tuning.resources import threads_for, torch_threads
from regtune.tuning.selection import selection_metrics, selection_summary
from regtune.tuning.settings import TuneSettings
from regtune.tuning.storage import StudyError
from regtune.tuning.trial import Folds, Network, kept_network, make_estimator, trial_seed

__all__ = ["TuneResult", "finish", "refit", "trials_frame"]


@dataclass
class TuneResult:
    """What a finished study gives back: the refit models, scores side by side, where to look."""

    study: optuna.Study
    study_name: str
    metric: Metric
    best_params: dict[str, Any]
    best_config: RegConfig
    best_value: float
    best_estimator: Any
    baseline_estimator: Any  # None where its refit did not fit in the timeout (``notes`` says so)
    preprocessor: TabularPreprocessor | None
    scores: pd.DataFrame
    parent_run_id: str
    tracking_uri: str
    experiment_id: str
    model_uri: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    ensemble_estimator: Any = None  # a WeightedEnsemble with settings.ensemble >= 2, else None
    # How honest the choice is (regtune.tuning.selection.selection_summary): optimism, spread.
    selection: dict[str, Any] = field(default_factory=dict)
    registered_model: str | None = None  # the Model Registry name and version of model_uri
    registered_version: int | None = None
    # What the summary must say besides the scores: work skipped for time, a newer best found
    # by another run of the same study.
    notes: list[str] = field(default_factory=list)

    @property
    def trials(self) -> pd.DataFrame:
        return trials_frame(self.study)


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial that ran or runs: number, state, value, params and the MLflow run id
    (trials queued but never started, ``WAITING``, are not trials of the search yet)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING:
            continue
        rows.append({
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "baseline": bool(t.user_attrs.get("baseline", False)),
            "epochs": len(t.intermediate_values),
            "duration_s": t.duration.total_seconds() if t.duration else None,
            "mlflow_run_id": t.user_attrs.get("mlflow_run_id"),
            "fail_reason": t.user_attrs.get("fail_reason"),
            **{f"params_{k}": v for k, v in t.params.items()},
        })
    return pd.DataFrame(rows)


def finish(
    study: optuna.Study, space: SearchSpace, metric: Metric, folds: Folds, X_test: np.ndarray | None,
    y_test: np.ndarray | None, prep: TabularPreprocessor | None, tracker: StudyTracker, parent: str,
    settings: TuneSettings, meta: dict[str, Any], example: pd.DataFrame | None = None,
    deadline: float | None = None,
) -> TuneResult:
    """Refit the best trial (and, as far as the time to ``deadline`` holds, the ensemble's
    other members and the baseline), test them once, and write the study's summary."""
    snapshot = study.get_trials(deepcopy=False)
    complete = [t for t in snapshot if t.state == TrialState.COMPLETE]
    if not complete:
        raise StudyError(_no_complete_trial(study))
    best = _best_of(study, snapshot)
    baseline = next((t for t in complete if t.user_attrs.get("baseline")), None)
    best_config = space.to_config(best.params)
    base_config = space.to_config(baseline.params) if baseline else no_regularization(best_config)
    budget = FinalBudget(deadline, folds.splits, len(folds.y))
    rows, models, notes = {}, {}, []

    def scored(label: str, config: RegConfig, trial: optuna.trial.FrozenTrial | None, est: Any) -> None:
        models[label] = est
        val = trial.value if trial else float("nan")
        if est is None:  # skipped for time: the search's validation score only
            rows[label] = {"model": label, "trial": trial.number if trial else None, "train": float("nan"),
                           "val": val, "test": float("nan"), "gap": float("nan"), "epochs": float("nan"),
                           "regularizers": ", ".join(config.active_regularizers()) or "none"}
            return
        rows_ = folds.refit_rows()
        train = metric.final_fn(est, folds.X[rows_], folds.y[rows_])
        test = metric.final_fn(est, X_test, y_test) if X_test is not None else float("nan")
        rows[label] = {"model": label, "trial": trial.number if trial else None, "train": train, "val": val,
                       "test": test, "gap": train - test, "epochs": est.n_iter_,
                       "regularizers": ", ".join(config.active_regularizers()) or "none"}

    # Every refit is planned first (the ensemble's members are chosen from the trials' kept
    # predictions, before any refit), then run: one after the other, or with n_jobs >= 2 two at
    # a time (regtune.tuning.refits). Where the time left holds no refit of the best trial, its
    # own network from the search (a fold's, trained on part of the rows) is the model; else
    # the refit may use the promise's slack (the other refits must fit before the deadline).
    kept = kept_network(study.study_name, best.number, forget=True)
    stop = StopBy(budget.ends + promise_slack(settings.timeout)) if budget.ends is not None else None
    jobs = []
    if kept is not None and not budget.fits(best, "the best trial's refit (its own network from the search, "
                                                  "trained on a fold's rows, is the model)"):
        stop = None
    else:
        jobs.append(RefitJob(best.number, best_config, best, stop=stop))
    classes = np.unique(folds.y) if folds.task == "classification" else None
    chosen = None
    if settings.ensemble > 1:
        from regtune.tuning.ensemble import drop_outside_top, select_ensemble

        drop_outside_top(study, settings.ensemble)  # those of trials pushed out while others finished
        chosen = select_ensemble(study, settings.ensemble, folds.y, metric, classes=classes)
        jobs += [RefitJob(t.number, space.to_config(t.params), t, what=f"ensemble member trial {t.number}")
                 for t in (chosen.members if chosen else []) if t.number != best.number]
    base_key = baseline.number if baseline is not None else "baseline"
    if baseline is None or baseline.number != best.number:
        jobs.append(RefitJob(base_key, base_config, baseline,
                             what="the baseline's refit (its row shows the search's validation score only)"))
    written = next((t for t in complete if t.user_attrs.get(AS_WRITTEN_ATTR)), None)
    written_config = space.to_config(written.params) if written is not None else None
    if written is not None and written.number != best.number:
        jobs.append(RefitJob(written.number, written_config, written, what="the as-written network's refit "
                                                                            "(its row shows the search's validation score only)"))
    before = len(budget.skipped)
    fitted = run_refits(jobs, refit, folds, settings, budget, lanes=2 if parallel_refits(settings) else 1)
    if best.number not in fitted:  # no time for its refit: its network from the search
        fitted[best.number] = kept
    scored("best", best_config, best, fitted[best.number])
    if stop is not None and stop.stopped_at is not None:
        budget.skipped.insert(before, f"the best trial's refit after epoch {stop.stopped_at + 1} of "
                                      f"{models['best'].max_epochs} (its trial's best epoch was "
                                      f"{round(best.user_attrs.get('best_epoch', -1)) + 1})")
    ensemble = None
    if settings.ensemble > 1:
        ensemble, row = _ensemble(chosen, fitted, metric, folds, X_test, y_test, classes)
        if row is not None:
            rows["ensemble"] = row
        elif any(s.startswith("ensemble member") for s in budget.skipped):
            notes.append("no ensemble: its other members' refits did not fit in the time left; the best trial "
                         "alone is the model")
        else:
            notes.append(_no_ensemble(study, settings.ensemble))
    scored("baseline", base_config, baseline, fitted[base_key])  # the best's refit where the baseline won
    if written is not None:  # the user's network as written: did the search beat it?
        scored("as_written", written_config, written, fitted[written.number])
    if budget.skipped:
        notes.append(f"skipped for time (timeout {settings.timeout:g} s): " + "; ".join(budget.skipped))
    rows = [rows[label] for label in ("baseline", "as_written", "best", "ensemble") if label in rows]
    scores = pd.DataFrame(rows).set_index("model")
    # Another run of this study (a second command on the same storage) may have finished
    # trials while this one refit: the summary is written from the study as it is now.
    now = study.get_trials(deepcopy=False)
    counts = _counts(now)
    current = _best_of(study, now)
    final = {f"{label}_{col}": float(scores.loc[label, col]) for label in scores.index
             for col in ("train", "val", "test", "gap")}
    selection = selection_summary(study, test_score=final["best_test"] if X_test is not None else None, trials=now)
    model_uri = None
    if current is not None and current.number != best.number:
        notes.append(f"another run of study {study.study_name!r} found a better trial meanwhile: trial "
                     f"{current.number} ({current.value:.4g}) beats this run's refit trial {best.number} "
                     f"({best.value:.4g}); the study's MLflow summary and model are left to the run that refits "
                     f"trial {current.number} (regtune best --study {study.study_name})")
        selection = selection_summary(study, trials=now)
    else:
        tracker.log_metrics(parent, {"best_value": best.value, **final,
                                     **{f"n_{k.lower()}": v for k, v in counts.items()},
                                     **selection_metrics(selection)})
        tracker.set_tags(parent, {"best_trial": str(best.number),
                                  "best_run_id": best.user_attrs.get("mlflow_run_id", ""),
                                  "regtune.folds": folds.plan,
                                  "regtune.ensemble": str(scores.loc["ensemble", "regularizers"])
                                  if ensemble is not None else "none"})
        model_uri = _log_final_model(tracker, parent, best, ensemble, models["best"], prep, metric, final, folds,
                                     X_test, settings, meta, example)
    version = (tracker.register_model(model_uri, settings.register_model, parent)
               if settings.register_model and model_uri else None)
    tracker.end_run(parent, "FINISHED")
    return TuneResult(
        study=study, study_name=study.study_name, metric=metric, best_params=dict(best.params), best_config=best_config,
        best_value=float(best.value), best_estimator=models["best"], baseline_estimator=models["baseline"],
        preprocessor=prep, scores=scores, parent_run_id=parent, tracking_uri=tracker.tracking_uri,
        experiment_id=tracker.experiment_id, model_uri=model_uri, counts=counts, ensemble_estimator=ensemble,
        selection=selection, notes=notes, registered_model=settings.register_model if version else None,
        registered_version=version,
    )


def _no_ensemble(study: optuna.Study, k: int) -> str:
    """Why the final model is the best trial alone although an ensemble was asked for."""
    from regtune.tuning.ensemble import held_predictions

    held = len(held_predictions(study))
    if held < 2:
        return (f"no ensemble: {held} trial(s) kept validation predictions (ensemble={k} needs two complete "
                "trials); the best trial alone is the model")
    return (f"no ensemble: greedy selection among the {min(held, k)} best trials kept the best alone (adding "
            "another did not improve the validation score); the best trial alone is the model")


def _counts(trials: list[optuna.trial.FrozenTrial]) -> dict[str, int]:
    counts = {s.name: 0 for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    for t in trials:
        if t.state.name in counts:
            counts[t.state.name] += 1
    return counts


def _best_of(study: optuna.Study, trials: list[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial | None:
    """The study's best among ``trials`` as Optuna picks it (the first of equal values)."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not complete:
        return None
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    return pick(complete, key=lambda t: t.value)


def _log_final_model(tracker: StudyTracker, parent: str, best: optuna.trial.FrozenTrial, ensemble: Any,
                     best_estimator: Any, prep: TabularPreprocessor | None, metric: Metric, final: dict[str, float],
                     folds: Folds, X_test: np.ndarray | None, settings: TuneSettings,
                     meta: dict[str, Any], example: pd.DataFrame | None = None) -> str | None:
    """Log the final model on the study's parent run (once per best trial, data and split)."""
    if not (settings.log_model and tracker.enabled):
        return None
    key = _model_key(best.number, folds, X_test, settings)
    if ensemble is not None:
        key += ", ensemble of trials " + "+".join(map(str, ensemble.trials))
    if tracker.run_tag(parent, "regtune.model_key") == key:  # a re-run that changed nothing keeps it
        model_uri = tracker.run_tag(parent, "regtune.model_uri")
        if model_uri:
            return model_uri
    from regtune.estimators.persistence import log_model

    logged = "best" if ensemble is None else "ensemble"
    model_uri = log_model(tracker, parent, ensemble or best_estimator, prep, metric=metric.name,
                          test_score=final[f"{logged}_test"], input_example=example, **meta)
    tracker.set_tags(parent, {"regtune.model_uri": model_uri, "regtune.model_key": key})
    return model_uri


def _ensemble(
    selection: Any, fitted: dict[Any, Any], metric: Metric, folds: Folds, X_test: np.ndarray | None,
    y_test: np.ndarray | None, classes: np.ndarray | None,
) -> tuple[Any, dict[str, Any] | None]:
    """The ensemble of the selected members that were refit (``fitted``, by trial number; one
    skipped for time is left out, ``budget.skipped`` says so) and its scores row."""
    from regtune.tuning.ensemble import build_ensemble

    found = None if selection is None else build_ensemble(selection, fitted, folds.y, metric, classes=classes)
    if found is None:
        return None, None
    ensemble, val = found
    train = metric.final_fn(ensemble, folds.X[folds.refit_rows()], folds.y[folds.refit_rows()])
    test = metric.final_fn(ensemble, X_test, y_test) if X_test is not None else float("nan")
    members = ", ".join(f"#{t} x{w:.2f}" for t, w in zip(ensemble.trials, ensemble.weights, strict=True))
    return ensemble, {"model": "ensemble", "trial": None, "train": train, "val": val, "test": test,
                      "gap": train - test, "epochs": ensemble.n_iter_, "regularizers": f"trials {members}"}


def _model_key(number: int, folds: Folds, X_test: np.ndarray | None, settings: TuneSettings) -> str:
    digest = hashlib.sha1()
    for array in (folds.X, folds.y, X_test):
        if array is not None:
            array = np.asarray(array)
            digest.update(np.ascontiguousarray(array.astype(str) if array.dtype == object else array).tobytes())
    return f"trial {number}, seed {settings.seed}, device {settings.device}, data {digest.hexdigest()[:16]}"


def _no_complete_trial(study: optuna.Study) -> str:
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    failed = [t for t in trials if t.state == TrialState.FAIL and "fail_reason" in t.user_attrs]
    text = (f"study {study.study_name!r}: none of its {len(trials)} trials completed "
            f"({states.count(TrialState.FAIL)} failed, {states.count(TrialState.PRUNED)} pruned, "
            f"{states.count(TrialState.WAITING)} waiting)")
    if failed:
        text += (f"; first failure, trial {failed[0].number}: {failed[0].user_attrs['fail_reason']}; "
                 "check the search space (e.g. lr) and the data")
    return text


def refit(config: RegConfig, trial: optuna.trial.FrozenTrial | None, folds: Folds, settings: TuneSettings,
          stop: StopBy | None = None, n_jobs: int = 1) -> Any:
    """Train ``config`` on the whole train part, seeded like its trial (``stop``: ends it in time;
    ``n_jobs``: refits training at once, which share the cores).

    With early stopping, the folds already chose how many epochs to train: the refit trains
    that long on all rows instead of holding some back again.
    """
    number = trial.number if trial is not None else 0
    network = Network(settings.module, dict(settings.module_params), fixed=dict(settings.estimator_params))
    est = make_estimator(config, folds.task, image_shape=folds.image_shape, device=settings.device,
                         random_state=trial_seed(settings.seed, number),
                         module=network.estimator_params(trial.params if trial is not None else None))
    if config.early_stopping and trial is not None and "best_epoch" in trial.user_attrs:
        epochs = max(1, round(trial.user_attrs["best_epoch"]) + 1)
        if config.lr_schedule == "constant" and config.warmup_epochs == 0:
            est.set_params(early_stopping=False, max_epochs=epochs)
        else:  # a schedule spans max_epochs: keep its horizon and stop where the folds did
            est.set_params(early_stopping=False, callbacks=[StopAfter(epochs)])
    rows = folds.refit_rows()
    if stop is not None:
        est.set_params(callbacks=[*(est.get_params()["callbacks"] or []), stop])
    with torch_threads(threads_for(config, folds.X.shape[1], n_jobs=n_jobs)):
        return est.fit(folds.X[rows], folds.y[rows], sample_weight=folds.weights(rows))
