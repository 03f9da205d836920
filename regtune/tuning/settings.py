"""The tuning settings, declared once: each field's default, its help text and its check.

The ``regtune tune`` options, the RegTune estimators' keywords and the worker processes' spec
are built from :class:`TuneSettings` (``tests/tuning/test_settings.py`` checks by introspection that
their defaults agree). This module imports nothing heavy (no torch, Optuna or MLflow), so the
CLI reads it while it starts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from regtune.exceptions import DataError, TuneError
from regtune.tracking.tracker import DEFAULT_EXPERIMENT, DEFAULT_TRACKING_URI, OFF

__all__ = ["AUTO_SPACE", "DEFAULTS", "DEFAULT_EXPERIMENT", "DEFAULT_STORAGE", "MEMORY", "PRUNERS", "SAMPLERS",
           "TuneSettings", "help_of", "resolve_space"]

DEFAULT_STORAGE = "regtune.journal"  # a journal file in the working folder
MEMORY = ":memory:"  # one process only: trials vanish with it
SAMPLERS = ("tpe", "random", "cmaes", "gp")
PRUNERS = ("hyperband", "median", "sha", "none")
#: ``space="auto"``: the ``image`` space for images, ``default`` for tables (:func:`resolve_space`).
AUTO_SPACE = "auto"


def resolve_space(space: str, image_shape: tuple[int, ...] | None) -> str:
    """The space ``space="auto"`` stands for: ``image`` (a CNN with augmentation) when the data
    are images, ``default`` for table rows; any other name or path as given."""
    if space != AUTO_SPACE:
        return space
    return "image" if image_shape is not None else "default"


def _setting(default: Any = None, help: str = "", *, factory: Any = None) -> Any:  # noqa: A002
    """A field with its help text (what ``regtune tune --help`` prints for its option)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TuneSettings:
    """Everything a tuning run needs besides the data; the ``regtune tune`` options.

    Built settings are valid: a value that cannot run raises :class:`~regtune.exceptions.TuneError`
    here, before any data is read or anything is created.
    """

    space: str = _setting(AUTO_SPACE, "Search space name (see `regtune spaces`) or YAML path; auto: image for "
                                      "images, default for tables.")
    n_trials: int = _setting(30, "Trials the study should hold; re-running adds only what is missing.")
    timeout: float | None = _setting(None, "Seconds for the whole run, the final refit included: trials are queued "
                                           "a few at a time and the search stops in time for the refit.")
    sampler: str = _setting("tpe", " | ".join(SAMPLERS))
    pruner: str = _setting("hyperband", " | ".join(PRUNERS))
    metric: str | None = _setting(None, "accuracy | log_loss | balanced_accuracy | f1 (macro: the unweighted mean of "
                                        "the classes' F1) | rmse | r2 (default: accuracy, r2).")
    cv: int | str = _setting("auto", "Folds: auto = 5 folds under 500 rows in the search part, 3 under 1,000, else one "
                                     "validation split (with --timeout: 2 repeats of those folds when 20 trials "
                                     "still fit, fewer folds when they would not); 1 = one validation split; K "
                                     "folds; or RxK, R repeats of K folds (2x3).")
    storage: str | None = _setting(None, f"Optuna storage URL or journal file (default ./{DEFAULT_STORAGE}).")
    study_name: str | None = _setting(None, "Study name (default DATA-SPACE-METRIC); same name resumes.")
    experiment: str = _setting(DEFAULT_EXPERIMENT, "MLflow experiment.")
    tracking_uri: str | None = _setting(None, f"MLflow tracking URI (default {DEFAULT_TRACKING_URI}).")
    n_jobs: int = _setting(1, "Worker processes running trials in parallel.")
    seed: int = _setting(0, "Seed of the split, the sampler and every trial.")
    device: str = _setting("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps.")
    test_size: float = _setting(0.2, "Share of the rows held out as the test part (0: none).")
    val_size: float = _setting(0.2, "Share of the rows in a validation split.")
    retry_failed: int = _setting(0, "Re-queue a trial whose worker died, up to N times, same params.")
    heartbeat_interval: int | None = _setting(None, "Heartbeat interval in seconds (database storages).")
    grace_period: int | None = _setting(None, "Seconds without heartbeat before a trial is failed.")
    progress: bool = _setting(True, "A progress bar.")
    log_model: bool = _setting(True, "Log the final model to MLflow.")
    # Measured in benchmarks/final_model_ab.py: after the same 30 s search, the ensemble's test
    # score beat the best trial's on 9 of 10 unseen datasets (mean +0.006).
    ensemble: int = _setting(5, "The logged model averages up to K of the best trials, chosen by greedy ensemble "
                                "selection on their out-of-fold predictions; 1: the best trial alone.")
    cohort: int | str = _setting(1, "K >= 2: train up to K trials of one structure as one batched network, each "
                                    "member the same trial as trained alone; auto: the K that trains the most "
                                    "trials per minute here, measured on the first cohort; 1: every trial alone.")
    # An nn.Module class or factory, or "file.py:Name" / "package.module:Name".
    module: Any = _setting(None, "Your network instead of the built-in one: path/to/file.py:ClassName or "
                                 "package.module:ClassName (this imports and runs that code).")
    module_params: Mapping[str, Any] = _setting(help="Fixed constructor arguments of module (no module__ prefix).",
                                                factory=dict)
    # The RegTune estimators' criterion, class_weight, precision, channels_last.
    estimator_params: Mapping[str, Any] = _setting(help="Fixed parameters of every trial's estimator, never searched.",
                                                   factory=dict)
    register_model: str | None = _setting(None, "Register the logged model under this name in the MLflow Model "
                                                "Registry: each run that logs a new model adds a version.")

    def __post_init__(self) -> None:
        if isinstance(self.n_trials, bool) or not isinstance(self.n_trials, int) or self.n_trials < 1:
            raise TuneError(f"trials={self.n_trials!r} must be a whole number >= 1")
        if self.timeout is not None and (not _is_number(self.timeout) or not self.timeout > 0):
            raise TuneError(f"timeout={self.timeout!r} must be > 0 seconds")
        if self.sampler not in SAMPLERS:
            raise TuneError(f"sampler {self.sampler!r} is unknown; choose one of {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise TuneError(f"pruner {self.pruner!r} is unknown; choose one of {', '.join(PRUNERS)}")
        if isinstance(self.n_jobs, bool) or not isinstance(self.n_jobs, int) or self.n_jobs < 1:
            raise TuneError(f"jobs={self.n_jobs!r} must be a whole number >= 1")
        if self.storage == MEMORY and self.n_jobs > 1:
            raise TuneError(f"storage={MEMORY!r} lives in one process, but n_jobs={self.n_jobs} starts several; "
                            "use storage=None (a journal file), a journal file path or a database URL")
        if self.cv != "auto":  # the default needs no check, and the CLI's start no pandas
            from regtune.data.split import parse_cv

            try:
                parse_cv(self.cv)
            except DataError as exc:
                raise TuneError(str(exc)) from None
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise TuneError(f"seed={self.seed!r} must be a whole number >= 0")
        if not _is_number(self.test_size) or not 0 <= self.test_size < 1:
            raise TuneError(f"test_size={self.test_size!r} must be in [0, 1) (0 = no test part)")
        if not _is_number(self.val_size) or not 0 < self.val_size < 1 - self.test_size:
            raise TuneError(f"val_size={self.val_size!r} must be > 0 and leave rows to train on "
                            f"(test_size + val_size < 1, test_size={self.test_size!r})")
        if isinstance(self.retry_failed, bool) or not isinstance(self.retry_failed, int) or self.retry_failed < 0:
            raise TuneError(f"retry_failed={self.retry_failed!r} must be a whole number >= 0")
        if isinstance(self.ensemble, bool) or not isinstance(self.ensemble, int) or self.ensemble < 0:
            raise TuneError(f"ensemble={self.ensemble!r} must be a whole number: 0 or 1 for the best model alone, "
                            "K >= 2 to average up to K of the best trials")
        if self.cohort != "auto" and (isinstance(self.cohort, bool) or not isinstance(self.cohort, int)
                                      or self.cohort < 1):
            raise TuneError(f"cohort={self.cohort!r} must be 'auto' or a whole number: 1 trains each trial alone, "
                            "K >= 2 trains up to K trials of one structure as one batched network, 'auto' measures "
                            "which K trains the most trials per minute on this device")
        for name in ("heartbeat_interval", "grace_period"):
            value = getattr(self, name)
            if value is not None and (not _is_number(value) or value < 1):
                raise TuneError(f"{name}={value!r} must be >= 1 second")
        if not isinstance(self.experiment, str) or not self.experiment.strip():
            raise TuneError(f"experiment={self.experiment!r} must be a non-empty name")
        if self.study_name is not None and (not isinstance(self.study_name, str) or not self.study_name.strip()):
            raise TuneError(f"study_name={self.study_name!r} must be a non-empty name")
        self._check_registered_name()

    def _check_registered_name(self) -> None:
        name = self.register_model
        if name is None:
            return
        if not isinstance(name, str) or not name.strip() or any(c in name for c in "/:"):
            raise TuneError(f"register_model={name!r} must be a Model Registry name without '/' or ':', "
                            "such as 'digits-classifier'")
        if self.tracking_uri == OFF or not self.log_model:
            why = "tracking_uri='off' logs nothing" if self.log_model else "log_model=False logs no model"
            raise TuneError(f"register_model={name!r} registers the logged model, but {why}; pass a tracking URI "
                            "(e.g. sqlite:///mlflow.db) or leave register_model unset")


def help_of(name: str) -> str:
    """The help text of setting ``name`` (a :class:`TuneSettings` field)."""
    return _HELP[name]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


#: The default settings: what every other declaration of a default reads.
DEFAULTS = TuneSettings()
_HELP = {f.name: f.metadata["help"] for f in fields(TuneSettings)}
