"""MLflow tracking behind a narrow interface: one parent run per study, one child run per trial.

MLflow is imported inside the methods so ``import regtune`` stays fast, and every call names its
run id instead of using MLflow's global active run: each Optuna worker process builds its own
:class:`MLflowTracker`, and trackers in different processes never step on each other. Every
write is one ``log_batch`` because each commit to a SQLite store costs milliseconds.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regtune.exceptions import TrackingError

if TYPE_CHECKING:
    from mlflow.entities import Run

__all__ = [
    "DEFAULT_TRACKING_URI",
    "OFF",
    "MLflowTracker",
    "NullTracker",
    "TrackingError",
    "make_tracker",
    "mask_secrets",
    "resolve_tracking_uri",
]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
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

# scheme://user:PASSWORD@host. A raw password may hold '/' or '@', so it runs to the last '@'
# of the word: masking too much beats leaking the tail of a password.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"]*:)[^\s'\"]*(?=@)")


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The store to use: ``tracking_uri`` if given, else ``$MLFLOW_TRACKING_URI``, else
    :data:`DEFAULT_TRACKING_URI`. Every default store in regtune comes from here."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def mask_secrets(text: str) -> str:
    """Replace the password of every ``scheme://user:password@host`` URL in ``text`` with ``***``."""
    return _URL_PASSWORD.sub(r"\g<head>***", text)


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
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str | None = "regtune",
        artifact_root: str | Path | None = None,
    ) -> None:
        self.tracking_uri = _absolute_sqlite(resolve_tracking_uri(tracking_uri))
        self.experiment = experiment
        self._studies: dict[str, str] = {}
        try:
            from mlflow.tracking import MlflowClient

            _probe_database(self.tracking_uri)
            with _creation_lock(self.tracking_uri):
                self._client = MlflowClient(self.tracking_uri)
                self.experiment_id: str = (
                    self._get_or_create_experiment(artifact_root) if experiment is not None else ""
                )
        except TrackingError:
            raise
        except Exception as err:  # the store's errors come from sqlalchemy, requests, os, mlflow
            local = self.tracking_uri.startswith("sqlite")
            hint = "its directory exists and is writable" if local else "it is up and reachable"
            raise TrackingError(
                f"MLflow tracking store {mask_secrets(self.tracking_uri)!r} cannot be used "
                f"({mask_secrets(f'{type(err).__name__}: {err}')}); check that {hint}, "
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
        run = self._client.create_run(
            self.experiment_id, run_name=f"trial-{trial_number}", tags=tags
        )
        self._log_batch(run.info.run_id, params=_params(params))
        return run.info.run_id

    enabled = True

    def run_tag(self, run_id: str, key: str) -> str | None:
        """One tag of a run; a clear error when the run does not exist."""
        try:
            return self._client.get_run(run_id).data.tags.get(key)
        except Exception:
            raise TrackingError(
                f"run {run_id!r} is not in the MLflow store {mask_secrets(self.tracking_uri)!r}; "
                "check the run id, or pass the store with --tracking-uri"
            ) from None

    def log_epoch(self, run_id: str, epoch: int, metrics: Mapping[str, float]) -> None:
        """Log one epoch's record at ``step=epoch``; NaN and infinite values are skipped."""
        self.log_metrics(run_id, metrics, step=epoch)

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int | None = None
    ) -> None:
        self._log_batch(run_id, metrics=_metrics(metrics, step or 0))

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self._log_batch(run_id, tags=_tags(tags))

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        self._log_batch(run_id, params=_params(params))

    def log_artifact(
        self, run_id: str, local_path: str | Path, artifact_path: str | None = None
    ) -> None:
        self._client.log_artifact(run_id, str(local_path), artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._client.log_text(run_id, mask_secrets(text), artifact_file)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self._client.set_terminated(run_id, _run_status(status))

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
        self._log_batch(run_id, metrics=_metrics(metrics or {}, step or 0), tags=final)
        self._client.set_terminated(run_id, TRIAL_END_STATUS[state])

    def child_runs(self, parent_run_id: str) -> list[Run]:
        """Every child run of the parent, ordered by trial number."""
        runs = self._search(f"tags.`{PARENT_TAG}` = '{parent_run_id}'")
        return sorted(runs, key=lambda run: (_trial_number(run), run.info.start_time))

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
    ) -> int:
        """End child runs left RUNNING by a dead worker; returns how many were ended.

        ``trials`` limits this to those trial numbers (or those a predicate accepts); without
        it every RUNNING child counts as orphaned, so call it only when no worker is left.
        """
        status = _run_status(status)
        if trials is not None and not callable(trials):
            trials = set(trials).__contains__
        query = f"tags.`{PARENT_TAG}` = '{parent_run_id}' and attributes.status = 'RUNNING'"
        orphans = [r for r in self._search(query) if trials is None or trials(_trial_number(r))]
        reason = {"state": "FAIL", "fail_reason": "worker stopped before the trial finished"}
        for run in orphans:
            self._log_batch(run.info.run_id, tags=_tags(reason))
            self._client.set_terminated(run.info.run_id, status)
        return len(orphans)

    def _search(self, filter_string: str) -> list[Run]:
        runs: dict[str, Run] = {}
        token = None
        while True:
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


def _probe_database(uri: str) -> None:
    """Connect once to a database store: MLflow itself retries an unreachable one for ~100 s."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in ("postgresql", "mysql", "mssql"):
        return
    import sqlalchemy

    args = {"connect_timeout": 10} if scheme in ("postgresql", "mysql") else {}
    engine = sqlalchemy.create_engine(uri, connect_args=args)
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


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
    """The tracker interface doing nothing, for ``tracking_uri="off"``."""

    enabled = False
    tracking_uri = OFF
    experiment_id = ""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: "" if name.startswith("start_") else None


def make_tracker(tracking_uri: str | None, experiment: str) -> MLflowTracker | NullTracker:
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
