"""A finished study read back for analysis: its Optuna trials, search space and MLflow runs.

The study comes from its Optuna storage or, when that is gone, is rebuilt in memory from the
MLflow child runs (``from_mlflow=True``). Either way :func:`trials_table` gives the same frame,
which every report table is computed from.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from regtune.config import REGULARIZER_OFF
from regtune.exceptions import DataError, ReportError, TrackingError
from regtune.space.space import REGULARIZER_FAMILIES, SearchSpace, SearchSpaceError
from regtune.tracking.endpoints import check_reachable
from regtune.tracking.masking import mask_secrets
from regtune.tracking.tracker import (
    DEFAULT_EXPERIMENT,
    OFF,
    TRIAL_TAG,
    MLflowTracker,
    resolve_tracking_uri,
)
from regtune.tuning.fingerprint import FINGERPRINT_ATTR, dataset_hash

if TYPE_CHECKING:
    from mlflow.entities import Run

    from regtune.data.loading import Dataset
    from regtune.tuning.settings import TuneSettings

__all__ = ["ReportError", "StudyData", "load_study_data", "load_study_dataset", "prepare_data", "searched",
           "trials_table"]

FINISHED = ("COMPLETE", "PRUNED", "FAIL")
_logger = logging.getLogger("regtune")
RUN_METRICS = ("train_score", "best_epoch", "seconds", "sparsity", "weight_norm", "top_singular_value",
               "n_params", "n_effective_params")


@dataclass
class StudyData:
    """A finished study as the report and the ablation read it: trials, space and MLflow runs."""

    study: optuna.Study
    space: SearchSpace
    tracking_uri: str | None = None
    parent: Run | None = None
    runs: dict[str, Run] = field(default_factory=dict)  # child runs by run id
    client: Any = None  # mlflow.MlflowClient for reads; None without tracking
    tracker: MLflowTracker | None = None
    source: str = "optuna"

    @property
    def parent_run_id(self) -> str | None:
        return self.parent.info.run_id if self.parent is not None else None

    @property
    def fingerprint(self) -> dict[str, Any]:
        """What the study was created for (data hash and source, target, split); empty for a
        study made before regtune recorded it."""
        return dict(self.study.user_attrs.get(FINGERPRINT_ATTR) or {})

    def settings(self, **changes: Any) -> TuneSettings:
        """The tuning settings that decide the split: the study's fingerprint, else the parent
        run's params."""
        from regtune.tuning.settings import TuneSettings

        logged = self.parent.data.params if self.parent is not None else {}
        values: dict[str, Any] = {"space": self.space.name, "seed": int(self.study.user_attrs.get("seed", 0))}
        for key, cast in (("seed", int), ("test_size", float), ("val_size", float), ("device", str), ("cv", _cv)):
            if key in self.fingerprint:
                values[key] = cast(str(self.fingerprint[key]))
            elif key in logged:
                values[key] = cast(logged[key])
        if self.study.user_attrs.get("regtune.module"):  # a user's module, imported again to refit
            values["module"] = self.study.user_attrs["regtune.module"]
            values["module_params"] = dict(self.study.user_attrs.get("regtune.module_params") or {})
        return replace(TuneSettings(**values), **{k: v for k, v in changes.items() if v is not None})

    def run_of(self, trial: optuna.trial.FrozenTrial) -> Run | None:
        return self.runs.get(trial.user_attrs.get("mlflow_run_id", ""))

    def logged_number(self, trial: optuna.trial.FrozenTrial) -> int:
        """The trial's number as logged (a study rebuilt from MLflow numbers its trials afresh)."""
        run = self.run_of(trial)
        return int(run.data.tags.get(TRIAL_TAG, trial.number)) if run is not None else trial.number

    def metric_history(self, run_id: str | None, key: str) -> list[tuple[int, float]]:
        if self.client is None or not run_id:
            return []
        return sorted((m.step, m.value) for m in self.client.get_metric_history(run_id, key))


def _cv(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def load_study_data(
    study: str | optuna.Study, *, storage: str | None = None, tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT, from_mlflow: bool = False,
) -> StudyData:
    """Open a study from its Optuna storage (or, with ``from_mlflow``, from its MLflow runs)."""
    uri = resolve_tracking_uri(tracking_uri)
    if from_mlflow:
        if uri == OFF:
            raise ReportError("from_mlflow needs an MLflow tracking URI, not 'off'")
        name = study.study_name if isinstance(study, optuna.Study) else study
        client = _client(uri)
        if client.get_experiment_by_name(experiment) is None:
            raise ReportError(f"no MLflow experiment {experiment!r} at {mask_secrets(uri)}; pass the one the "
                              "study logged to with --experiment")
        tracker = MLflowTracker(uri, experiment)
        parent_id = tracker.find_study_run(name)
        if parent_id is None:
            raise ReportError(f"no MLflow parent run of study {name!r} in experiment {experiment!r} at "
                              f"{mask_secrets(uri)}; check --experiment and --tracking-uri")
        parent = client.get_run(parent_id)
        runs = tracker.child_runs(parent_id)
        space = _for_task(_space(client, parent, None), {}, parent)
        rebuilt = _rebuild_study(name, parent, runs, space)
        return StudyData(rebuilt, space, uri, parent, {r.info.run_id: r for r in runs}, client, tracker, "mlflow")
    if not isinstance(study, optuna.Study):
        from regtune.tuning.storage import load_existing_study

        study = load_existing_study(study, storage)
    parent_id = study.user_attrs.get("mlflow_parent_run_id")
    source = (study.user_attrs.get(FINGERPRINT_ATTR) or {}).get("space_source")
    if uri == OFF or not parent_id:
        return StudyData(study, _for_task(_space(None, None, study.user_attrs.get("space"), source), study.user_attrs))
    client = _client(uri)
    try:
        parent = client.get_run(parent_id)
    except Exception:
        raise ReportError(f"the study's MLflow parent run {parent_id} is not in {mask_secrets(uri)}; "
                          "pass the store the study logged to with --tracking-uri") from None
    tracker = MLflowTracker(uri, client.get_experiment(parent.info.experiment_id).name)
    runs = tracker.child_runs(parent_id)
    space = _for_task(_space(client, parent, study.user_attrs.get("space"), source), study.user_attrs, parent)
    return StudyData(study, space, uri, parent, {r.info.run_id: r for r in runs}, client, tracker)


def _client(uri: str) -> Any:
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise ReportError(f"no MLflow store at {uri}; run from the directory `regtune tune` ran in "
                          "or pass --tracking-uri")
    try:
        check_reachable(uri)  # seconds, not MLflow's minutes of retries, for a server that is down
        from mlflow.tracking import MlflowClient

        return MlflowClient(uri)
    except TrackingError:
        raise
    except Exception as err:
        reason = (str(err).strip().splitlines() or [""])[0]
        raise TrackingError(f"MLflow store {mask_secrets(uri)!r} cannot be read ({type(err).__name__}: "
                            f"{mask_secrets(reason)})") from None


def _space(client: Any, parent: Run | None, name: str | None, source: str | None = None) -> SearchSpace:
    """The space the study ran: its YAML logged with the parent run, else the file it was read
    from, else the name it had."""
    if parent is not None:
        try:
            files = [f.path for f in client.list_artifacts(parent.info.run_id, "search_space")
                     if f.path.endswith((".yaml", ".yml"))]
            if files:
                with tempfile.TemporaryDirectory() as tmp, _no_progress_bar():
                    return SearchSpace.from_yaml(Path(client.download_artifacts(parent.info.run_id, files[0], tmp)))
        except Exception:  # an unreadable artifact store or file: fall back to the space's name
            pass
    logged = parent.data.params.get("space") if parent is not None else None
    for candidate in (source if source and Path(source).is_file() else None, name, logged):
        if candidate:
            try:
                return SearchSpace.from_yaml(candidate)
            except SearchSpaceError:
                continue
    raise ReportError(f"cannot find the study's search space (tried {name or logged!r}); "
                      "run the report where the space's YAML file is")


def _for_task(space: SearchSpace, attrs: dict[str, Any], parent: Run | None = None) -> SearchSpace:
    """The space as the study's task searched it (a regression study skips label smoothing)."""
    from regtune.metrics import METRICS

    task = (attrs.get(FINGERPRINT_ATTR) or {}).get("task")
    task = task or (parent.data.params.get("task") if parent is not None else None)
    metric = attrs.get("metric") or (parent.data.params.get("metric") if parent is not None else None)
    task = task or (METRICS[metric].task if metric in METRICS else None)
    space = space.for_task(task) if task else space
    unsupported = attrs.get("regtune.module_unsupported")  # a user's module: what it could not take
    return space if unsupported is None else space.for_module(unsupported)


@contextmanager
def _no_progress_bar() -> Iterator[None]:
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _rebuild_study(name: str, parent: Run, runs: list[Run], space: SearchSpace) -> optuna.Study:
    """An in-memory Optuna study with the logged trials, sampled through ``space`` so every
    param gets the distribution it was searched with."""
    from regtune.metrics import get_metric

    logged = parent.data.params
    metric = get_metric(logged.get("metric"), logged.get("task", "classification"))
    study = optuna.create_study(study_name=name, direction=metric.direction,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for key in ("dataset", "metric", "seed", "target"):
        if key in logged:
            study.set_user_attr(key, int(logged[key]) if key == "seed" else logged[key])
    recorded = {"data": logged.get("data_hash"), "source": logged.get("data_source") or None,
                "target": logged.get("target"), "task": logged.get("task"), "dataset": logged.get("dataset")}
    if recorded["data"]:
        study.set_user_attr(FINGERPRINT_ATTR, {k: v for k, v in recorded.items() if v is not None})
    study.set_user_attr("space", space.name)
    study.set_user_attr("mlflow_parent_run_id", parent.info.run_id)
    switches = {f.switch_param for f in space.regularizers}
    params = {p.name: p for p in (*space.params, *(p for f in space.regularizers for p in f.params))}
    for run in runs:
        raw, tags, metrics = run.data.params, run.data.tags, run.data.metrics
        typed = {k: v == "True" if k in switches else params[k].parse(v)
                 for k, v in raw.items() if k in switches or k in params}
        attrs: dict[str, Any] = {"baseline": tags.get("baseline") == "True", "mlflow_run_id": run.info.run_id}
        if "best_epoch" in metrics:
            attrs["best_epoch"] = metrics["best_epoch"]
        if "fold_sd" in metrics and str(logged.get("folds", "")).isdigit():  # the selection's standard error
            attrs.update(fold_sd=metrics["fold_sd"], n_folds=int(logged["folds"]))
        study.enqueue_trial(typed, user_attrs=attrs)
        trial = study.ask()
        space.sample(trial)
        state = tags.get("state")
        if state == "COMPLETE" and "value" in metrics:
            study.tell(trial, metrics["value"])
        elif state == "PRUNED":
            study.tell(trial, state=TrialState.PRUNED)
        elif state is not None or run.info.status != "RUNNING":
            study.tell(trial, state=TrialState.FAIL)
    return study


# ---------------------------------------------------------------- the trials frame


def trials_table(data: StudyData) -> pd.DataFrame:
    """One row per finished trial: state, score, epochs, weight statistics and the resolved config."""
    rows = []
    for t in data.study.get_trials(deepcopy=False, states=tuple(TrialState[s] for s in FINISHED)):
        run = data.run_of(t)
        metrics, tags = (run.data.metrics, run.data.tags) if run is not None else ({}, {})
        pruned_epoch = float(tags["pruned_epoch"]) if "pruned_epoch" in tags else math.nan
        if run is None:
            epochs = float(len(t.intermediate_values)) or math.nan
        elif t.state == TrialState.COMPLETE:
            epochs = metrics.get("epochs", math.nan)
        elif t.state == TrialState.PRUNED:
            epochs = pruned_epoch + 1
        else:
            epochs = float(len(data.metric_history(run.info.run_id, "val_score"))) or math.nan
        try:
            config = data.space.to_config(t.params)
        except SearchSpaceError:  # a trial that failed while sampling
            config = None
        row = {
            "number": data.logged_number(t),
            "state": t.state.name,
            "value": _value(t, metrics),
            "baseline": bool(t.user_attrs.get("baseline", False)),
            "epochs_run": epochs,
            "pruned_epoch": pruned_epoch,
            **{key: metrics.get(key, math.nan) for key in RUN_METRICS},
            "regularizers": (", ".join(config.active_regularizers()) or "none") if config else "",
            "mlflow_run_id": t.user_attrs.get("mlflow_run_id"),
        }
        if config is not None:
            row.update({k: "-".join(map(str, v)) if isinstance(v, tuple) else v for k, v in config.to_dict().items()})
        rows.append(row)
    return pd.DataFrame(rows).sort_values("number", ignore_index=True) if rows else pd.DataFrame()


def _value(trial: optuna.trial.FrozenTrial, metrics: dict[str, float]) -> float:
    """The objective value; a pruned trial's is its last reported score, as Optuna keeps it."""
    if trial.value is not None:
        return float(trial.value)
    return float(metrics.get("val_score", math.nan)) if trial.state == TrialState.PRUNED else math.nan


def searched(space: SearchSpace) -> list[str]:
    """The regularizer switch fields a space varies or fixes on, in REGULARIZER_OFF order."""
    fields = {REGULARIZER_FAMILIES[f.name][0] for f in space.regularizers}
    fields |= {k for k, v in space.fixed.items() if k in REGULARIZER_OFF and v != REGULARIZER_OFF[k]}
    return [name for name in REGULARIZER_OFF if name in fields]


def prepare_data(data: StudyData, dataset: str | Dataset | None = None, device: str | None = None) -> tuple[Any, ...]:
    """The study's folds and test split rebuilt from its seed: ``(folds, X_test, y_test, metric, settings)``."""
    from regtune.metrics import get_metric
    from regtune.tuning.prepare import prepare

    loaded = load_study_dataset(data, dataset)
    settings = data.settings(device=device)
    folds, X_test, y_test, _ = prepare(loaded, settings)
    return folds, X_test, y_test, get_metric(data.study.user_attrs.get("metric"), loaded.task), settings


def load_study_dataset(data: StudyData, dataset: str | Dataset | None = None) -> Any:
    """The dataset the study was tuned on, with the target it was tuned for.

    Read from ``dataset`` (``--data``) if given, else from where the study says it read it
    (a file's absolute path, else its name in the working directory). A study with a data hash
    refuses any other content: a refit on other rows would be silently wrong.
    """
    from regtune.data.loading import Dataset, load_dataset

    attrs, recorded = data.study.user_attrs, data.fingerprint
    if isinstance(dataset, Dataset):  # handed over in memory: a RegTune estimator's own rows
        if recorded.get("data") and dataset_hash(dataset) != recorded["data"]:
            raise ReportError(f"the rows given (data hash {dataset_hash(dataset)[:8]}..) are not the ones study "
                              f"{data.study.study_name!r} was tuned on; pass the X and y it was fitted on")
        return dataset
    name = dataset or _existing(recorded.get("source")) or attrs.get("dataset")
    if not name:
        raise ReportError("the study does not record its dataset; pass the data file (--data)")
    target = recorded.get("target") or attrs.get("target")
    if target is None:
        _logger.warning("study %r does not record its target (made by an earlier regtune): using the last "
                        "column of %s", data.study.study_name, name)
    try:
        loaded = load_dataset(name, target, task=recorded.get("task"))
    except DataError as err:
        raise ReportError(f"cannot load the study's dataset {name!r} to refit: {err} (pass --data PATH)") from None
    if recorded.get("data") and dataset_hash(loaded) != recorded["data"]:
        raise ReportError(
            f"{name!r} (data hash {dataset_hash(loaded)[:8]}..) is not the data study {data.study.study_name!r} "
            f"was tuned on ({recorded.get('dataset', '?')}, data hash {recorded['data'][:8]}..); "
            "pass that file with --data")
    return loaded


def _existing(source: str | None) -> str | None:
    """``source`` if it can still be read: a built-in name, or a file that is still there."""
    from regtune.data.loading import BUILTIN_DATASETS

    if source and (source in BUILTIN_DATASETS or Path(source).is_file()):
        return source
    return None

