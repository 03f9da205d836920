"""MLflow tracking behind a narrow interface: one parent run per study, one child run per trial.

MLflow is imported inside the methods so ``import regtune`` stays fast, and every call names its
run id instead of using MLflow's global active run: each Optuna worker process builds its own
:class:`MLflowTracker`, and trackers in different processes never step on each other. Every
write is one ``log_batch`` because each call to a SQLite store costs milliseconds of Python
(SQLAlchemy) and a commit: per-epoch metrics and trial params are therefore queued, and one
background thread per tracker writes each live run's queue as one batch every
``flush_interval`` seconds (live curves), and a trial's end writes the rest with its final
metrics (:mod:`regtune.tracking.writer`). A worker killed with ``kill -9`` loses at most the
unflushed tail, which :meth:`MLflowTracker.backfill` restores from Optuna's record of the trial.

:class:`Tracker` is what a trial logs through; :class:`MLflowTracker`, the worker's
:class:`~regtune.tracking.relay.RelayTracker` and :class:`NullTracker` (tracking off) implement
it. :class:`StudyTracker` adds what the study's own process does (parent run, model, reads).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from regtune.exceptions import TrackingError
from regtune.tracking.endpoints import check_reachable, missing_driver
from regtune.tracking.masking import mask_secrets
from regtune.tracking.writer import BackgroundWriter

if TYPE_CHECKING:
    from mlflow.entities import Metric, Run

    from regtune.data.loading import Dataset as DataTable

__all__ = [
    "DEFAULT_EXPERIMENT",
    "DEFAULT_TRACKING_URI",
    "OFF",
    "MLflowTracker",
    "NullTracker",
    "StudyTracker",
    "Tracker",
    "make_tracker",
    "resolve_tracking_uri",
    "store_uri",
]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "regtune"  # the MLflow experiment a study logs to unless told another
OFF = "off"  # tracking_uri value that switches MLflow logging off
STUDY_TAG = "regtune.study"
TRIAL_TAG = "regtune.trial_number"
ROLE_TAG = "regtune.run_type"
UID_TAG = "regtune.study_uid"
PARENT_TAG = "mlflow.parentRunId"
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
TRIAL_END_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}
_PAGE_SIZE = 1000
_BATCH_PARAMS, _BATCH_ENTITIES = 100, 1000  # MLflow's log_batch limits (params or tags; all)
_REMOTE_SCHEMES = ("http", "https", "databricks")
FLUSH_INTERVAL = 1.0  # seconds between background writes of queued epochs (live curves in the UI)


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The store to use: ``tracking_uri`` if given, else ``$MLFLOW_TRACKING_URI``, else
    :data:`DEFAULT_TRACKING_URI`. Every default store in regtune comes from here."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def store_uri(tracking_uri: str | None = None) -> str:
    """The store :func:`resolve_tracking_uri` names, a local SQLite path made absolute: the
    URI every process of a study uses (an :class:`MLflowTracker`'s ``tracking_uri``)."""
    return _absolute_sqlite(resolve_tracking_uri(tracking_uri))


class Tracker(Protocol):
    """What a trial logs through, in whichever process it runs: the real tracker, a worker's
    relay to it, or the null tracker. Every call names its run; ``enabled`` is ``False`` only
    when tracking is off."""

    enabled: bool
    tracking_uri: str

    def start_trial_run(self, parent_run_id: str, trial_number: int, params: Mapping[str, Any],
                        tags: Mapping[str, Any] | None = None) -> str: ...

    def resolve(self, run_id: str, *, wait: bool = False) -> str | None:
        """The MLflow run id behind what :meth:`start_trial_run` returned (a relay hands back a
        token at once); ``None`` while unknown (``wait=False``) or if the run could not be opened."""
        ...

    def log_epoch(self, run_id: str, epoch: int, metrics: Mapping[str, float]) -> None: ...

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None: ...

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None: ...

    def finish_trial(self, run_id: str, state: str, metrics: Mapping[str, float] | None = None,
                     tags: Mapping[str, Any] | None = None, *, step: int | None = None) -> None: ...

    def end_run(self, run_id: str, status: str = "FINISHED") -> None: ...

    def trial_run_id(self, parent_run_id: str, trial_number: int) -> str | None: ...

    def backfill(self, run_id: str, key: str, values: Mapping[int, float],
                 params: Mapping[str, Any] | None = None) -> int: ...

    def mark_orphans(self, parent_run_id: str, status: str = "KILLED",
                     trials: Iterable[int] | Callable[[int], bool] | None = None, *,
                     ended_too: bool = False) -> int: ...

    def flush(self, run_id: str | None = None) -> None: ...

    def close(self) -> None: ...


class StudyTracker(Tracker, Protocol):
    """What the study's own process does besides: the parent run, its dataset, artifacts and
    model, and reading runs back (reports, ablation, predict). :class:`MLflowTracker` and
    :class:`NullTracker` implement it."""

    experiment_id: str

    def start_study_run(self, study_name: str, params: Mapping[str, Any],
                        tags: Mapping[str, Any] | None = None, *, uid: str | None = None) -> str: ...

    def log_dataset(self, run_id: str, dataset: DataTable, digest: str, context: str = "training") -> None: ...

    def log_artifact(self, run_id: str, local_path: str | Path, artifact_path: str | None = None) -> None: ...

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None: ...

    def register_model(self, model_uri: str, name: str, run_id: str) -> int: ...

    def find_study_run(self, study_name: str, uid: str | None = None) -> str | None: ...

    def child_runs(self, parent_run_id: str) -> list[Run]: ...

    def run(self, run_id: str) -> Run | None: ...

    def run_tag(self, run_id: str, key: str) -> str | None: ...

    def metric_history(self, run_id: str, key: str) -> list[Metric]: ...

    def download_artifacts(self, uri: str, dst: str) -> Path | None: ...


class MLflowTracker:
    """Log a study as a parent MLflow run and each Optuna trial as a nested child run.

    Parameters
    ----------
    tracking_uri : str, optional
        Where runs go; see :func:`resolve_tracking_uri` for the default.
    experiment : str
        MLflow experiment, created on first use.
    artifact_root : str or Path, optional
        Artifact location of a newly created experiment; defaults to ``./mlruns`` (made
        absolute) for local stores and to the server's choice for remote ones.
    flush_interval : float
        Seconds between background writes of queued epochs and params.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str | None = DEFAULT_EXPERIMENT,
        artifact_root: str | Path | None = None,
        *,
        flush_interval: float = FLUSH_INTERVAL,
    ) -> None:
        self.tracking_uri = store_uri(tracking_uri)
        self.experiment = experiment
        self._studies: dict[str, str] = {}
        self._io = threading.RLock()  # one MLflow call at a time: the writer's and the caller's
        self._queue = BackgroundWriter(self, flush_interval)
        try:
            check_reachable(self.tracking_uri)
            from mlflow.tracking import MlflowClient

            with _creation_lock(self.tracking_uri):
                self._client = MlflowClient(self.tracking_uri)
                self.experiment_id: str = (
                    self._get_or_create_experiment(artifact_root) if experiment is not None else ""
                )
        except TrackingError:
            raise
        except Exception as err:  # the store's errors come from sqlalchemy, requests, os, mlflow
            driver = missing_driver(self.tracking_uri, err)
            if driver is not None:
                raise TrackingError(f"MLflow tracking store {driver}") from None
            local = self.tracking_uri.startswith("sqlite")
            hint = "its directory exists and is writable" if local else "it is up and reachable"
            reason = (str(err).strip().splitlines() or [""])[0]  # not SQLAlchemy's "Background on" line
            raise TrackingError(
                f"MLflow tracking store {mask_secrets(self.tracking_uri)!r} cannot be used "
                f"({mask_secrets(f'{type(err).__name__}: {reason}')}); check that {hint}, "
                "or pass another tracking URI (--tracking-uri)"
            ) from None

    def _get_or_create_experiment(self, artifact_root: str | Path | None) -> str:
        found = self._client.get_experiment_by_name(self.experiment)
        if found is None:
            try:
                return self._client.create_experiment(
                    self.experiment, artifact_location=self._artifact_location(artifact_root)
                )
            except Exception:  # another worker may have created it a moment ago
                found = self._client.get_experiment_by_name(self.experiment)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            raise TrackingError(
                f"MLflow experiment {self.experiment!r} (id {found.experiment_id}) is deleted; "
                f"restore it with `mlflow experiments restore --experiment-id "
                f"{found.experiment_id}` or choose another experiment name"
            )
        return found.experiment_id

    def _artifact_location(self, root: str | Path | None) -> str | None:
        if root is None and self.tracking_uri.split(":", 1)[0].lower() in _REMOTE_SCHEMES:
            return None
        root = str(root or "mlruns")
        return root if "://" in root else Path(root).resolve().as_uri()

    def start_study_run(
        self,
        study_name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, Any] | None = None,
        *,
        uid: str | None = None,
    ) -> str:
        """Open the study's parent run, reusing (and reopening) it when the study resumes.

        ``uid`` identifies one Optuna study: a study deleted and created again under the same
        name gets a new parent run instead of the old one's.
        """
        run_id = self.find_study_run(study_name, uid)
        if run_id is None:
            own = {STUDY_TAG: study_name, ROLE_TAG: "study", **({UID_TAG: uid} if uid else {})}
            created = self._client.create_run(self.experiment_id, run_name=study_name, tags=own)
            # Two workers may race to create it; all of them settle on the oldest run.
            run_id = self.find_study_run(study_name, uid) or created.info.run_id
            if run_id != created.info.run_id:
                self._client.delete_run(created.info.run_id)
        run = self._client.get_run(run_id)
        if run.info.status != "RUNNING":
            self._client.update_run(run_id, status="RUNNING")
        logged, wanted = run.data.params, _params(params)
        # MLflow params are immutable, so a value changed on resume is kept as a tag instead.
        fresh = [param for param in wanted if param.key not in logged]
        changed = {
            f"resumed.{p.key}": p.value for p in wanted if logged.get(p.key, p.value) != p.value
        }
        self._log_batch(run_id, params=fresh, tags=_tags({**(tags or {}), **changed}))
        self._studies[run_id] = study_name
        return run_id

    def start_trial_run(
        self,
        parent_run_id: str,
        trial_number: int,
        params: Mapping[str, Any],
        tags: Mapping[str, Any] | None = None,
    ) -> str:
        """Open the nested child run of one trial and log its parameters in one batch."""
        study = self._studies.get(parent_run_id)
        if study is None:
            study = self._client.get_run(parent_run_id).data.tags.get(STUDY_TAG, "")
            self._studies[parent_run_id] = study
        own = {
            PARENT_TAG: parent_run_id,
            STUDY_TAG: study,
            TRIAL_TAG: trial_number,
            ROLE_TAG: "trial",
        }
        tags = {tag.key: tag.value for tag in _tags({**(tags or {}), **own})}
        with self._io:
            run = self._client.create_run(
                self.experiment_id, run_name=f"trial-{trial_number}", tags=tags
            )
        # Queued: the first background write (or the trial's end) carries them with the epochs.
        self._enqueue(run.info.run_id, params=_params(params))
        return run.info.run_id

    enabled = True

    def resolve(self, run_id: str, *, wait: bool = False) -> str | None:
        """``run_id`` itself: this tracker opens runs before it returns their id."""
        return run_id

    def run(self, run_id: str) -> Run:
        """Run ``run_id`` as stored (its params, metrics, tags and status); what is still
        queued for it is not in it until :meth:`flush`."""
        with self._io:
            return self._client.get_run(run_id)

    def metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every stored step of metric ``key`` of run ``run_id`` (queued ones once flushed)."""
        with self._io:
            return self._client.get_metric_history(run_id, key)

    def run_tag(self, run_id: str, key: str) -> str | None:
        """One tag of a run; a clear error when the run does not exist."""
        try:
            with self._io:
                return self._client.get_run(run_id).data.tags.get(key)
        except Exception:
            raise TrackingError(
                f"run {run_id!r} is not in the MLflow store {mask_secrets(self.tracking_uri)!r}; "
                "check the run id, or pass the store with --tracking-uri"
            ) from None

    def download_artifacts(self, uri: str, dst: str) -> Path | None:
        """The artifact file or folder ``uri`` (``models:/...``, ``runs:/...``) of this store,
        copied under ``dst``; ``None`` if absent."""
        import mlflow

        try:
            with self._io:
                if uri.startswith("models:/m-"):  # MLflow would ask its global default store, not ours
                    model_id, _, rest = uri.removeprefix("models:/").partition("/")
                    uri = self._client.get_logged_model(model_id).artifact_location.rstrip("/") + (f"/{rest}" if rest else "")
                return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst,
                                                                tracking_uri=self.tracking_uri))
        except Exception:  # noqa: BLE001 - absent (or an older model without it): the caller says what to pass
            return None

    def log_epoch(self, run_id: str, epoch: int, metrics: Mapping[str, float]) -> None:
        """Queue one epoch's record at ``step=epoch``; NaN and infinite values are skipped.

        Written by the background flusher within ``flush_interval`` seconds, by
        :meth:`finish_trial` or :meth:`end_run` of the run, or by :meth:`flush`.
        """
        self._enqueue(run_id, metrics=_metrics(metrics, epoch))

    def flush(self, run_id: str | None = None) -> None:
        """Write what is queued (for ``run_id``, or for every run) now."""
        with self._io:
            for rid in [run_id] if run_id is not None else self._queue.run_ids():
                self._write_queued(rid)

    def close(self) -> None:
        """Stop the background flusher and write what is left; the tracker stays usable."""
        self._queue.stop()
        self.flush()

    def backfill(
        self, run_id: str, key: str, values: Mapping[int, float], params: Mapping[str, Any] | None = None
    ) -> int:
        """Log the steps of metric ``key`` (and the ``params``) that run ``run_id`` lacks.

        A worker killed with ``kill -9`` loses the epochs still queued in its flusher; Optuna
        holds the trial's reported score of every epoch (its intermediate values), so the one
        who reaps the trial restores that curve here. Returns how many steps were added.
        """
        from mlflow.entities import Metric

        with self._io:
            have = {m.step for m in self._client.get_metric_history(run_id, key)}
            logged = self._client.get_run(run_id).data.params if params else {}
            now = int(time.time() * 1000)
            missing = [Metric(key, float(v), now, int(step)) for step, v in sorted(values.items())
                       if int(step) not in have and v is not None and math.isfinite(float(v))]
            fresh = [p for p in _params(params or {}) if p.key not in logged]
            self._log_batch(run_id, metrics=missing, params=fresh)
        return len(missing)

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int | None = None
    ) -> None:
        with self._io:
            self._log_batch(run_id, metrics=_metrics(metrics, step or 0))

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        with self._io:
            self._log_batch(run_id, tags=_tags(tags))

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        with self._io:
            self._log_batch(run_id, params=_params(params))

    def log_artifact(
        self, run_id: str, local_path: str | Path, artifact_path: str | None = None
    ) -> None:
        with self._io:
            self._client.log_artifact(run_id, str(local_path), artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        with self._io:
            self._client.log_text(run_id, mask_secrets(text), artifact_file)

    def log_dataset(self, run_id: str, dataset: DataTable, digest: str, context: str = "training") -> None:
        """Record ``dataset`` as an input of the run (MLflow's Dataset column): its name,
        ``digest``, source, schema and shape (:func:`~regtune.tracking.inputs.dataset_input`).
        A run that holds this digest already (a resumed study) is left as it is."""
        from regtune.tracking.inputs import dataset_input

        entry = dataset_input(dataset, digest, context)
        with self._io:
            inputs = self._client.get_run(run_id).inputs
            if any(had.dataset.digest == entry.dataset.digest and had.dataset.name == entry.dataset.name
                   for had in (inputs.dataset_inputs if inputs else [])):
                return
            self._client.log_inputs(run_id, datasets=[entry])

    def register_model(self, model_uri: str, name: str, run_id: str) -> int:
        """Register the logged model ``model_uri`` under ``name`` in the Model Registry (the
        registered model is created on first use); returns its version. A model registered
        under ``name`` already (a re-run that kept the logged model) keeps its version.

        The version's source is the model's artifact location: handed a ``models:/`` URI, the
        registry looks the model up in MLflow's global default store, not in this one.
        """
        from mlflow.exceptions import MlflowException

        model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
        try:
            with self._io:
                source = self._client.get_logged_model(model_id).artifact_location if model_id else model_uri
                for version in self._client.search_model_versions(f"run_id = '{run_id}'"):
                    if version.name == name and version.source == source:
                        return int(version.version)
                try:
                    self._client.create_registered_model(name)
                except MlflowException as err:  # registered by an earlier study, or another process
                    if err.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                created = self._client.create_model_version(name, source=source, run_id=run_id, model_id=model_id)
        except MlflowException as err:
            reason = (str(err.message).strip().splitlines() or [""])[0]
            raise TrackingError(
                f"the model {model_uri} cannot be registered as {name!r} in the Model Registry of "
                f"{mask_secrets(self.tracking_uri)!r}: {mask_secrets(reason)}; choose another name "
                "(--register-model), or a tracking store with a Model Registry"
            ) from None
        return int(created.version)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """End the run; what is queued for it is written first."""
        status = _run_status(status)
        with self._io:
            self._write_queued(run_id)
            self._client.set_terminated(run_id, status)

    def finish_trial(
        self,
        run_id: str,
        state: str,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, Any] | None = None,
        *,
        step: int | None = None,
    ) -> None:
        """Give the child run its Optuna state (tag ``state``), final metrics and end status."""
        if state not in TRIAL_END_STATUS:
            raise ValueError(f"trial state {state!r} must be one of COMPLETE, PRUNED, FAIL")
        final = _tags({**(tags or {}), "state": state})
        with self._io:  # the queued epochs and the final record in one batch
            self._write_queued(run_id, metrics=_metrics(metrics or {}, step or 0), tags=final)
            self._client.set_terminated(run_id, TRIAL_END_STATUS[state])

    def child_runs(self, parent_run_id: str) -> list[Run]:
        """Every child run of the parent, ordered by trial number."""
        runs = self._search(f"tags.`{PARENT_TAG}` = '{parent_run_id}'")
        return sorted(runs, key=lambda run: (_trial_number(run), run.info.start_time))

    def trial_run_id(self, parent_run_id: str, trial_number: int) -> str | None:
        """The child run of trial ``trial_number``, for a reaped trial whose worker died before
        it recorded the run id in Optuna."""
        query = f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{TRIAL_TAG}` = '{int(trial_number)}'"
        runs = self._search(query)
        return min(runs, key=lambda run: run.info.start_time).info.run_id if runs else None

    def find_study_run(self, study_name: str, uid: str | None = None) -> str | None:
        """The id of the oldest active parent run of ``study_name`` (and study ``uid``), if any."""
        query = f"tags.`{ROLE_TAG}` = 'study'"
        if "'" not in study_name:
            query += f" and tags.`{STUDY_TAG}` = '{study_name}'"
        runs = [
            run for run in self._search(query)
            if run.data.tags.get(STUDY_TAG) == study_name and (uid is None or run.data.tags.get(UID_TAG) == uid)
        ]
        runs.sort(key=lambda run: (run.info.start_time, run.info.run_id))
        return runs[0].info.run_id if runs else None

    def mark_orphans(
        self,
        parent_run_id: str,
        status: str = "KILLED",
        trials: Iterable[int] | Callable[[int], bool] | None = None,
        *,
        ended_too: bool = False,
    ) -> int:
        """End child runs left RUNNING by a dead worker; returns how many were ended.

        ``trials`` limits this to those trial numbers (or those a predicate accepts); without
        it every RUNNING child counts as orphaned, so call it only when no worker is left.
        ``ended_too``: also re-end those trials' runs that ended in another state than FAIL. A
        worker closes the run before it tells Optuna, so one killed in between leaves a run
        that says COMPLETE for a trial Optuna fails; Optuna's record wins.
        """
        status = _run_status(status)
        if trials is not None and not callable(trials):
            trials = set(trials).__contains__
        query = f"tags.`{PARENT_TAG}` = '{parent_run_id}'"
        if not ended_too:
            query += " and attributes.status = 'RUNNING'"
        orphans = [r for r in self._search(query) if (trials is None or trials(_trial_number(r)))
                   and (r.info.status == "RUNNING" or r.data.tags.get("state") != "FAIL")]
        reason = {"state": "FAIL", "fail_reason": "worker stopped before the trial finished"}
        with self._io:
            for run in orphans:
                self._write_queued(run.info.run_id, tags=_tags(reason))
                self._client.set_terminated(run.info.run_id, status)
        return len(orphans)

    def _search(self, filter_string: str) -> list[Run]:
        self.flush()  # this tracker's own queued writes are visible to its reads
        runs: dict[str, Run] = {}
        token = None
        while True:
            with self._io:
                page = self._client.search_runs(
                    [self.experiment_id],
                    filter_string,
                    max_results=_PAGE_SIZE,
                    order_by=["attributes.start_time ASC"],
                    page_token=token,
                )
            runs.update((run.info.run_id, run) for run in page)
            token = page.token
            if not token:
                return list(runs.values())

    def _enqueue(self, run_id: str, *, metrics: Iterable = (), params: Iterable = ()) -> None:
        self._queue.add(run_id, metrics=metrics, params=params)

    def _write_queued(self, run_id: str, metrics: Iterable = (), tags: Iterable = ()) -> None:
        """Write the run's queue (plus ``metrics`` and ``tags``) as one batch; put it back on
        failure, so a store that is down for a moment loses nothing. Caller holds ``_io``."""
        queued_metrics, queued_params = self._queue.take(run_id)
        try:
            self._log_batch(run_id, metrics=[*queued_metrics, *metrics], params=queued_params, tags=tags)
        except BaseException:
            self._queue.put_back(run_id, queued_metrics, queued_params)
            raise
        self._queue.written()

    def _log_batch(self, run_id: str, metrics=(), params=(), tags=()) -> None:
        """One ``log_batch`` call, split only where MLflow's per-batch limits force it."""
        metrics, params, tags = list(metrics), list(params), list(tags)
        while metrics or params or tags:
            some_params, some_tags = params[:_BATCH_PARAMS], tags[:_BATCH_PARAMS]
            room = _BATCH_ENTITIES - len(some_params) - len(some_tags)
            self._client.log_batch(
                run_id, metrics=metrics[:room], params=some_params, tags=some_tags
            )
            metrics, params, tags = metrics[room:], params[_BATCH_PARAMS:], tags[_BATCH_PARAMS:]


@contextlib.contextmanager
def _creation_lock(uri: str) -> Iterator[None]:
    """Hold a lock file beside a local SQLite store while MLflow creates or migrates it: workers
    starting together would otherwise run the same schema migrations at once, and fail."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks
        yield
        return
    path = Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None
    if path is None or not path.parent.is_dir():
        yield  # not a local file, or MLflow will report the missing directory
        return
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run_status(status: str) -> str:
    if status not in RUN_STATUSES:
        raise ValueError(f"run status {status!r} must be one of {', '.join(RUN_STATUSES)}")
    return status


def _params(params: Mapping[str, Any]) -> list:
    from mlflow.entities import Param
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH as limit

    # Mask before truncating, or a cut inside a URL could leave half a password in clear.
    return [Param(str(key), mask_secrets(str(value))[:limit]) for key, value in params.items()]


def _tags(tags: Mapping[str, Any]) -> list:
    from mlflow.entities import RunTag
    from mlflow.utils.validation import MAX_TAG_VAL_LENGTH as limit

    return [RunTag(str(key), mask_secrets(str(value))[:limit]) for key, value in tags.items()]


def _metrics(metrics: Mapping[str, float], step: int) -> list:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    values = ((key, float(value)) for key, value in metrics.items() if value is not None)
    return [Metric(key, value, now, step) for key, value in values if math.isfinite(value)]


def _trial_number(run: Run) -> int:
    return int(run.data.tags.get(TRIAL_TAG, -1))


class NullTracker:
    """The tracker doing nothing, for ``tracking_uri="off"``: runs are empty ids, reads find nothing."""

    enabled = False
    tracking_uri = OFF
    experiment_id = ""

    def start_trial_run(self, parent_run_id: str, trial_number: int, params: Mapping[str, Any],
                        tags: Mapping[str, Any] | None = None) -> str:
        return ""

    def resolve(self, run_id: str, *, wait: bool = False) -> str | None:
        return run_id

    def log_epoch(self, run_id: str, epoch: int, metrics: Mapping[str, float]) -> None:
        pass

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        pass

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        pass

    def finish_trial(self, run_id: str, state: str, metrics: Mapping[str, float] | None = None,
                     tags: Mapping[str, Any] | None = None, *, step: int | None = None) -> None:
        pass

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        pass

    def trial_run_id(self, parent_run_id: str, trial_number: int) -> str | None:
        return None

    def backfill(self, run_id: str, key: str, values: Mapping[int, float],
                 params: Mapping[str, Any] | None = None) -> int:
        return 0

    def mark_orphans(self, parent_run_id: str, status: str = "KILLED",
                     trials: Iterable[int] | Callable[[int], bool] | None = None, *,
                     ended_too: bool = False) -> int:
        return 0

    def flush(self, run_id: str | None = None) -> None:
        pass

    def close(self) -> None:
        pass

    def start_study_run(self, study_name: str, params: Mapping[str, Any],
                        tags: Mapping[str, Any] | None = None, *, uid: str | None = None) -> str:
        return ""

    def log_dataset(self, run_id: str, dataset: DataTable, digest: str, context: str = "training") -> None:
        pass

    def log_artifact(self, run_id: str, local_path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        pass

    def register_model(self, model_uri: str, name: str, run_id: str) -> int:
        raise TrackingError(f"the model {model_uri} cannot be registered as {name!r} with tracking off; "
                            "pass a tracking store (--tracking-uri) to register it")

    def find_study_run(self, study_name: str, uid: str | None = None) -> str | None:
        return None

    def child_runs(self, parent_run_id: str) -> list[Run]:
        return []

    def run(self, run_id: str) -> Run | None:
        return None

    def run_tag(self, run_id: str, key: str) -> str | None:
        return None

    def metric_history(self, run_id: str, key: str) -> list[Metric]:
        return []

    def download_artifacts(self, uri: str, dst: str) -> Path | None:
        return None


def make_tracker(tracking_uri: str | None, experiment: str) -> StudyTracker:
    """``"off"`` gives a :class:`NullTracker`; anything else an :class:`MLflowTracker`."""
    if tracking_uri == OFF:
        return NullTracker()
    return MLflowTracker(tracking_uri, experiment)


def _absolute_sqlite(uri: str) -> str:
    """``sqlite:///mlflow.db`` -> ``sqlite:////abs/dir/mlflow.db``: MLflow caches stores by URI
    string, so a relative one would keep pointing at the first directory after a ``chdir``."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and ":memory:" not in uri:
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri
