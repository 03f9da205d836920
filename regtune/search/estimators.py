"""scikit-learn estimators whose ``fit`` runs a regularization study and refits the best.

``RegTuneClassifier(...).fit(X, y)`` is :func:`regtune.tuning.tuner.tune` on ``X, y`` with no test
part held out (hold out your own test set and call ``score`` on it): every row takes part in
the cross-validated search, and the best configuration is then refit on all of them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import Tags, check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from regtune.config import PRECISIONS
from regtune.data.checks import check_target_spread
from regtune.data.images import as_rows
from regtune.data.loading import Dataset
from regtune.data.split import parse_cv
from regtune.estimators.routing import ModuleParams
from regtune.exceptions import DataError, RegConfigError
from regtune.metrics import METRICS
from regtune.nn.trainer import resolve_device
from regtune.tuning.final import trials_frame
from regtune.tuning.settings import DEFAULTS, MEMORY, PRUNERS, SAMPLERS, TuneSettings
from regtune.tuning.storage import make_storage
from regtune.tuning.tuner import quiet_optuna, tune

__all__ = ["EXPECTED_FAILED_CHECKS", "RegTuneClassifier", "RegTuneRegressor"]

_DTYPES = [np.float64, np.float32]
#: Fixed parameters of every trial's network (never searched), with their defaults.
_FIXED = {"criterion": None, "class_weight": None, "precision": "32", "channels_last": False}

#: scikit-learn checks these estimators cannot pass, with why (see ``parametrize_with_checks``'s
#: ``expected_failed_checks``).
EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": (
        "the check hands cv a list of splits; cv takes a number of folds, 'RxK' or 'auto' (and a search "
        "trains stochastic networks, so weighted and repeated rows agree only approximately)"),
}


class _RegTune(ModuleParams, BaseEstimator):
    """Parameters, ``fit`` and delegation shared by the classifier and the regressor."""

    _task = ""
    _parameter_constraints: dict = {
        "module": [None, callable, str],
        "space": [str, os.PathLike],
        "n_trials": [Interval(Integral, 1, None, closed="left")],
        "timeout": [None, Interval(Real, 0, None, closed="neither")],
        "sampler": [StrOptions(set(SAMPLERS))],
        "pruner": [StrOptions(set(PRUNERS))],
        "cv": [str, Interval(Integral, 1, None, closed="left")],  # "auto" or "RxK": TuneSettings checks it
        "image_shape": [None, "array-like"],
        "metric": [None],  # each task adds its metric names
        "storage": [None, str, os.PathLike],
        "study_name": [None, str],
        "tracking_uri": [None, str],
        "experiment": [str],
        "register_model": [None, str],
        "n_jobs": [Interval(Integral, 1, None, closed="left"), Options(Integral, {-1})],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "ensemble": [Interval(Integral, 0, None, closed="left")],
        "cohort": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "criterion": [None, callable],
        "class_weight": [None, dict, StrOptions({"balanced"})],
        "precision": [StrOptions(set(PRECISIONS))],
        "channels_last": ["boolean"],
    }

    def __init__(
        self,
        *,
        module: Any = None,
        space: str | os.PathLike[str] = DEFAULTS.space,
        n_trials: int = DEFAULTS.n_trials,
        timeout: float | None = DEFAULTS.timeout,
        sampler: str = DEFAULTS.sampler,
        pruner: str = DEFAULTS.pruner,
        cv: int | str = DEFAULTS.cv,
        image_shape: Sequence[int] | None = None,
        metric: str | None = DEFAULTS.metric,
        storage: str | None = None,  # not the CLI's journal file: None keeps the study in memory
        study_name: str | None = DEFAULTS.study_name,
        tracking_uri: str | None = DEFAULTS.tracking_uri,
        experiment: str = DEFAULTS.experiment,
        register_model: str | None = DEFAULTS.register_model,
        n_jobs: int = DEFAULTS.n_jobs,
        device: str = DEFAULTS.device,
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        ensemble: int = DEFAULTS.ensemble,
        cohort: int | str = DEFAULTS.cohort,
        criterion: Any = None,
        class_weight: dict[Any, float] | str | None = None,
        precision: str = "32",
        channels_last: bool = False,
        **module__params: Any,
    ) -> None:
        self.module = module
        self.space = space
        self.n_trials = n_trials
        self.timeout = timeout
        self.sampler = sampler
        self.pruner = pruner
        self.cv = cv
        self.image_shape = image_shape
        self.metric = metric
        self.storage = storage
        self.study_name = study_name
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.register_model = register_model
        self.n_jobs = n_jobs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.ensemble = ensemble
        self.cohort = cohort
        self.criterion = criterion
        self.class_weight = class_weight
        self.precision = precision
        self.channels_last = channels_last
        self._keep_module_params(module__params)

    # ---- fitting -------------------------------------------------------------------------

    def fit(
        self, X: Any, y: Any, sample_weight: Any = None, *, X_val: Any = None, y_val: Any = None,
        sample_weight_val: Any = None,
    ) -> _RegTune:
        """Run the study on all of ``X, y``, then refit the best configuration on all of it.

        ``sample_weight`` weighs the rows in every trial's training loss and validation score
        and in the refit. ``X_val, y_val`` (and ``sample_weight_val``) replace the folds:
        every trial trains on ``X`` and is scored on them, and the best configuration is refit
        on ``X`` alone.

        Raises ``ValueError`` for bad parameters or data before any study, MLflow run or file
        is created.
        """
        settings = self._settings()
        was_frame = isinstance(X, pd.DataFrame)
        X, self._images_ = as_rows(X)  # (N, C, H, W) images: rows of pixels and their shape
        X, y = validate_data(
            self, X, y, dtype=_DTYPES, ensure_all_finite="allow-nan", ensure_min_samples=2,
            y_numeric=self._task == "regression",
        )
        weights = self._weights(X, y, sample_weight, X_val, y_val, sample_weight_val)
        classes = self._check_target(y, settings)
        data = self._dataset(X, y, "dataframe" if was_frame else "array")
        # n_jobs > 1 without a storage: the worker processes share a journal file that lives
        # only as long as this call; the study is copied into memory before it goes.
        temporary = self.storage is None and settings.n_jobs > 1
        with quiet_optuna(), _temporary_journal(settings, temporary) as settings:
            result = tune(data, settings=settings, **weights)
            study = _in_memory(result.study_name, settings.storage) if temporary else result.study
        if classes is not None:
            self.classes_ = classes
        self.study_ = study
        self.best_params_ = dict(result.best_params)
        self.best_score_ = result.best_value
        self.baseline_score_ = float(result.scores.loc["baseline", "val"])
        self.best_estimator_ = result.best_estimator
        self.ensemble_ = result.ensemble_estimator
        self.preprocessor_ = result.preprocessor
        self.trials_ = trials_frame(study)
        self.selection_ = dict(result.selection)
        self.notes_ = list(result.notes)
        self.mlflow_run_id_ = result.parent_run_id or None
        self.registered_model_version_ = result.registered_version
        self._fitted_data = data  # for report(); left out of pickles
        return self

    def _weights(self, X: np.ndarray, y: np.ndarray, sample_weight: Any, X_val: Any, y_val: Any,
                 sample_weight_val: Any) -> dict[str, Any]:
        """The checked ``sample_weight`` and validation set, as :func:`~regtune.tuning.tuner.tune` takes them."""
        if (X_val is None) != (y_val is None):
            raise DataError("pass both X_val and y_val (a validation set), or neither")
        if sample_weight_val is not None and X_val is None:
            raise DataError("sample_weight_val weighs the rows of X_val; pass X_val and y_val with it")
        out: dict[str, Any] = {}
        if sample_weight is not None:
            out["sample_weight"] = w = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
            kept = np.unique(y[w > 0])
            if self._task == "classification" and len(kept) < 2:
                raise DataError(f"{type(self).__name__} needs at least 2 classes among the rows with a weight > 0; "
                                f"sample_weight leaves only class {kept[0].item()!r}")
        if X_val is not None:
            rows, _ = as_rows(X_val)
            out["X_val"], out["y_val"] = validate_data(self, rows, y_val, reset=False, dtype=_DTYPES,
                                                       ensure_all_finite="allow-nan",
                                                       y_numeric=self._task == "regression")
            if sample_weight_val is not None:
                out["sample_weight_val"] = _check_sample_weight(sample_weight_val, out["X_val"], dtype=np.float64,
                                                                ensure_non_negative=True)
        return out

    def _settings(self) -> TuneSettings:
        """Check every parameter and map them onto the tuner's settings; creates nothing."""
        self._validate_params()
        if self.class_weight is not None and self._task != "classification":
            raise RegConfigError(f"class_weight={self.class_weight!r} applies to classifiers only; leave it None "
                                 "(weigh rows with fit(..., sample_weight=...))")
        parse_cv(self.cv)  # "auto", K or "RxK": a string sklearn's constraints cannot spell
        resolve_device(self.device)
        n_jobs = (os.cpu_count() or 1) if self.n_jobs == -1 else self.n_jobs
        # An int random_state is the study's seed as given (what MLflow logs as ``seed``); None
        # or a RandomState draws one.
        seed = (int(self.random_state) if isinstance(self.random_state, Integral)
                else int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max)))
        # A study that lives only for this fit is named after its seed: Hyperband assigns trials
        # to brackets by hashing the study name, so a random name would make refits differ.
        fresh = self.storage is None or self.storage == MEMORY
        default_name = f"regtune-{seed:08x}" if fresh else f"regtune-{uuid.uuid4().hex[:12]}"
        if self.storage is not None:
            storage = str(self.storage)
        else:  # n_jobs > 1: fit() puts a temporary journal file here (_temporary_journal)
            storage = MEMORY if n_jobs == 1 else None
        return TuneSettings(
            space=str(self.space), n_trials=self.n_trials, timeout=self.timeout, sampler=self.sampler,
            pruner=self.pruner, metric=self.metric, cv=self.cv, storage=storage,
            study_name=self.study_name or default_name, experiment=self.experiment,
            tracking_uri=self.tracking_uri, n_jobs=n_jobs, seed=seed, device=self.device, test_size=0.0,
            progress=bool(self.verbose), ensemble=self.ensemble, module=self.module,
            cohort=self.cohort, module_params=self.module_params(), register_model=self.register_model,
            estimator_params={k: getattr(self, k) for k, default in _FIXED.items() if getattr(self, k) != default},
        )

    def _check_target(self, y: np.ndarray, settings: TuneSettings) -> np.ndarray | None:
        """The classes of ``y``; ``None`` for regression, whose values ``validate_data`` checked."""
        check_target_spread(y, "y", lambda i: f"row {i}")
        return None

    def _dataset(self, X: np.ndarray, y: np.ndarray, name: str) -> Dataset:
        """The validated ``X, y`` as the tuner takes them."""
        names = [str(c) for c in getattr(self, "feature_names_in_", [])]
        if len(set(names)) != X.shape[1]:
            names = [f"x{i}" for i in range(X.shape[1])]
        return Dataset(name=name, X=pd.DataFrame(X, columns=names), y=pd.Series(y, name="target"), task=self._task,
                       image_shape=self._image_shape(X), target="target")

    def _image_shape(self, X: np.ndarray) -> tuple[int, int, int] | None:
        """``image_shape`` as (C, H, W), checked against the rows of ``X``; inferred from images."""
        inferred = self.__dict__.get("_images_")
        if inferred is not None and self.image_shape is not None and tuple(self.image_shape) != inferred:
            raise DataError(f"X holds images of shape {inferred} but image_shape={tuple(self.image_shape)}; leave "
                            "image_shape unset (it is inferred from the images) or fix it")
        if self.image_shape is None:
            return inferred
        shape = tuple(int(d) for d in self.image_shape)
        if len(shape) != 3 or min(shape) < 1 or int(np.prod(shape)) != X.shape[1]:
            raise DataError(f"image_shape={self.image_shape!r} must be (channels, height, width) holding the "
                            f"{X.shape[1]} values of each row of X, e.g. (1, 8, 8) for 64 grayscale pixels")
        return shape  # type: ignore[return-value]

    # ---- using the fitted model ------------------------------------------------------------

    def _features(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X, _ = as_rows(X)
        X = validate_data(self, X, reset=False, dtype=_DTYPES, ensure_all_finite="allow-nan")
        return X if self.preprocessor_ is None else self.preprocessor_.transform(X)  # images: no preprocessor

    def predict(self, X: Any) -> np.ndarray:
        """Predictions of :attr:`ensemble_` (if any, else :attr:`best_estimator_`) on ``X`` as
        given to ``fit`` (not preprocessed)."""
        X = self._features(X)
        return self._model().predict(X)

    def _model(self) -> Any:
        ensemble = getattr(self, "ensemble_", None)
        return self.best_estimator_ if ensemble is None else ensemble

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "best_estimator_")

    def report(self, X: Any = None, y: Any = None, **kwargs: Any) -> Any:
        """:func:`regtune.analysis.report.report` of :attr:`study_`; ``kwargs`` go to that function.

        A report refits the baseline and the best configuration on the rows ``fit`` saw when
        MLflow holds no scores for them: the estimator keeps those rows for that, except in a
        pickle (pass ``X`` and ``y`` again after unpickling).
        """
        check_is_fitted(self)
        from regtune.analysis.report import report

        data = getattr(self, "_fitted_data", None)
        if X is not None or y is not None:
            if X is None or y is None:
                raise DataError("report(X, y): pass both X and y (the rows fit saw), or neither")
            name = "dataframe" if isinstance(X, pd.DataFrame) else "array"
            X, y = validate_data(self, X, y, reset=False, dtype=_DTYPES, ensure_all_finite="allow-nan",
                                 y_numeric=self._task == "regression")
            data = self._dataset(X, y, name)
        if data is None:
            raise DataError(f"{type(self).__name__}.report(): this estimator was unpickled and no longer holds "
                            "the rows it was fitted on; pass them: report(X, y)")
        kwargs.setdefault("data", data)
        return report(self.study_, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_fitted_data", None)  # training rows stay out of shared model files
        return state

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # the preprocessor fills missing values with the median
        return tags


def _choices(names: Sequence[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


# The estimators' shared "Parameters" section, around each one's ``metric``;
# tests/test_docstrings.py checks it covers __init__.
_PARAMETERS_BEFORE_METRIC = f"""Parameters
    ----------
    module : nn.Module class, callable or str, optional
        Your own network, as for :class:`~regtune.RegularizedNetClassifier`; its constructor
        arguments go as ``module__NAME=value``, and a space's ``module:`` section searches them.
        Search dimensions the module cannot take (``batch_norm`` placement, ``dropout_variant``,
        layer sizes, ``dropout`` without dropout layers) are left out of the space. It is built
        and trained on one batch before the study starts.
    space : str or path, default="{DEFAULTS.space}"
        A shipped search space name (``regtune spaces``) or a YAML file; ``"auto"``: ``"image"``
        (a CNN with image augmentation) when ``X`` holds images (or ``image_shape`` is given),
        ``"default"`` for table rows.
    n_trials : int, default={DEFAULTS.n_trials}
        Trials in the study, the baseline included.
    timeout : float, optional
        Seconds after which no new trial starts.
    sampler : {{{_choices(SAMPLERS)}}}, default="{DEFAULTS.sampler}"
        How Optuna picks each trial's params.
    pruner : {{{_choices(PRUNERS)}}}, default="{DEFAULTS.pruner}"
        How Optuna stops trials that fall behind, from their per-epoch validation scores.
    cv : int, "RxK" or "auto", default="{DEFAULTS.cv}"
        Folds per trial; ``1`` is one 80/20 validation split; ``"2x3"`` is 2 repeats of 3-fold
        (each repeat shuffled anew); ``"auto"``: 5 folds under 500 rows in the search part, 3
        under 1,000, else one validation split (fewer folds on tiny data, so that every
        validation fold holds at least 2 rows and every class). With a ``timeout``, ``"auto"``
        also weighs the time: it takes 2 repeats of those folds when 20 trials still fit, and
        fewer folds (down to one split) when they would not.
    image_shape : tuple of int (C, H, W), optional
        Each row of ``X`` is an image of this shape (``C*H*W`` values): spaces that train a CNN
        or augment images, such as ``"image"``, need it; ``(1, 8, 8)`` for ``load_digits``.
        Inferred when ``X`` holds images ``(N, C, H, W)`` or ``(N, H, W)``.
"""
_PARAMETERS_AFTER_METRIC = f"""storage : str, optional
        Optuna storage URL or journal file. ``None`` keeps the study in memory (``n_jobs=1``)
        or in a temporary journal file that the worker processes share (``n_jobs > 1``);
        either way :attr:`study_` ends up in memory.
    study_name : str, optional
        ``None`` gives each fit a new ``regtune-<hex>`` name, so fits never resume each other;
        name it (with a persistent ``storage``) to resume or extend a study.
    tracking_uri : str, optional
        MLflow tracking URI; ``None`` is MLflow's default (``sqlite:///mlflow.db`` here, or
        ``$MLFLOW_TRACKING_URI``) like the CLI, ``"off"`` logs nothing.
    experiment : str, default="{DEFAULTS.experiment}"
        MLflow experiment: one parent run per fit, one child run per trial.
    register_model : str, optional
        Register the logged model (the refit best, or the ensemble) under this name in the
        MLflow Model Registry: each fit adds a version (:attr:`registered_model_version_`).
    n_jobs : int, default={DEFAULTS.n_jobs}
        Worker processes; ``-1`` uses every CPU.
    device : str, default="{DEFAULTS.device}"
        CUDA, then Apple MPS, then CPU.
    random_state : int, RandomState or None
        Seeds the sampler, the folds and every trial's training.
    verbose : int, default=0
        A progress bar when > 0.
    ensemble : int, default={DEFAULTS.ensemble}
        ``K >= 2``: the final model averages up to ``K`` of the best trials, chosen by greedy
        ensemble selection (Caruana et al. 2004) on their out-of-fold predictions and refit
        on all rows (:attr:`ensemble_`); 0 or 1: the best trial alone. The default was
        measured: after the same search, the ensemble beat the best trial on test on 9 of 10
        unseen datasets (``benchmarks/final_model_ab.py``).
    cohort : int or "auto", default={DEFAULTS.cohort}
        ``K >= 2``: up to ``K`` trials that share the network's structure train as one batched
        network, each member the same trial as trained alone (own seed, batch order, optimizer
        state, pruning and MLflow run), for every regularizer in the table; ``"auto"``: the
        first cohort is timed against its members alone and the fastest ``K`` kept (1 where
        nothing pays). 1 trains every trial alone (as do trials with sample weights, a
        ``criterion`` or mixed ``precision``, and networks that cannot be batched).
    criterion : torch loss class or instance, optional
        Every trial's loss, fixed (not searched), as for
        :class:`~regtune.RegularizedNetClassifier`.
    class_weight : dict, "balanced" or None, default=None
        Classifiers only: class weights in every trial's training and validation, as for
        :class:`~regtune.RegularizedNetClassifier`.
    precision : {{{_choices(PRECISIONS)}}}, default="32"
        Every trial's precision (Lightning's names), as for
        :class:`~regtune.RegularizedNetClassifier`.
    channels_last : bool, default=False
        Channels-last images and convolutions on CUDA, in every trial.
    **module__params
        The module's fixed constructor arguments as ``module__NAME=value``.

"""


class RegTuneClassifier(ClassifierMixin, _RegTune):
    __doc__ = f"""Search the regularization of a network classifier, then refit the best configuration.

    ``fit`` runs an Optuna study over ``space`` (each trial cross-validated on ``cv`` folds of
    all the rows given; the first trial is the unregularized baseline), then trains the best
    configuration on every row. Hold out your own test set: :meth:`score` on it measures the
    refit model. ``X`` must be numeric (missing values are filled with the training median);
    for tables with text or categorical columns put the preprocessor in front::

        make_pipeline(regtune.make_preprocessor(), RegTuneClassifier(...))

    {_PARAMETERS_BEFORE_METRIC}    metric : {{"accuracy", "balanced_accuracy", "f1", "log_loss"}}, optional
        What the study optimizes; ``accuracy`` by default.
    {_PARAMETERS_AFTER_METRIC}    Attributes
    ----------
    best_params_ : dict
        The best trial's Optuna params (``study_.best_params``).
    best_score_ : float
        Its mean cross-validated ``metric``.
    baseline_score_ : float
        The same for the unregularized baseline trial (NaN if it failed).
    best_estimator_ : RegularizedNetClassifier
        The best configuration refit on all rows. It takes ``preprocessor_.transform(X)``,
        not ``X``; :meth:`predict` does that for you.
    ensemble_ : WeightedEnsemble or None
        With ``ensemble >= 2``: the selected trials refit on all rows and their weights;
        :meth:`predict` uses it. ``None`` otherwise, or when fewer than two trials qualified
        or greedy selection kept the best trial alone (:attr:`notes_` says which); the same
        rule as ``regtune tune``, whose table then has no ``ensemble`` row.
    preprocessor_ : TabularPreprocessor or None
        Median filling and scaling fitted on ``X`` (the ``TabularPreprocessor`` that
        ``regtune.make_preprocessor()`` returns); ``None`` for images, which the network scales.
    study_ : optuna.Study
        The study. In-memory studies pickle with the estimator; a study in a file or database
        pickles as a reference to it.
    trials_ : pandas.DataFrame
        One row per trial that ran (baseline first): state, value, params, MLflow run id;
        trials queued but never started (a timeout, ``n_trials`` reached) are left out.
    notes_ : list of str
        What the summary says besides the scores: why there is no ensemble, work skipped
        for time, a better trial found meanwhile by another run of the same study.
    selection_ : dict
        Whether the search could tell its best trials apart: ``top_mean`` / ``top_std`` of the
        ``top`` best validation scores, ``best_se`` (the best trial's standard error over its
        ``n_folds`` folds; ``None`` with one split) and ``within_one_se`` (how many trials lie
        within it of the best: when several do, the choice among them is noise). ``optimism``
        (validation minus test score) is ``None`` here, as ``fit`` holds out no test part:
        score your own test set and compare it with :attr:`best_score_`.
    mlflow_run_id_ : str or None
        The study's parent MLflow run (``None`` with ``tracking_uri="off"``).
    registered_model_version_ : int or None
        The model's version under ``register_model`` in the MLflow Model Registry.
    classes_, n_features_in_, feature_names_in_
    """

    _task = "classification"
    _parameter_constraints = {
        **_RegTune._parameter_constraints,
        "metric": [None, StrOptions({m for m, v in METRICS.items() if v.task == "classification"})],
    }

    def _check_target(self, y: np.ndarray, settings: TuneSettings) -> np.ndarray:
        check_classification_targets(y)
        classes, counts = np.unique(y, return_counts=True)
        if len(classes) < 2:
            raise DataError(
                f"{type(self).__name__} needs at least 2 classes in y; got 1 class: {classes[0].item()!r}"
            )
        if settings.cv != 1 and counts.min() < 2:
            lone = classes[counts.argmin()].item()
            raise DataError(
                f"class {lone!r} has 1 row in y, but cross-validation needs at least 2 rows per class "
                "so every training fold sees every class; add rows or drop that class"
            )
        return classes

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns ordered as ``classes_``."""
        X = self._features(X)
        return self._model().predict_proba(X)


class RegTuneRegressor(RegressorMixin, _RegTune):
    __doc__ = f"""Search the regularization of a network regressor, then refit the best configuration.

    Works as :class:`RegTuneClassifier` does, with the same attributes (without ``classes_``
    and ``predict_proba``). ``y`` is one target column.

    {_PARAMETERS_BEFORE_METRIC}    metric : {{"r2", "rmse"}}, optional
        What the study optimizes: ``"r2"`` (the default, maximized) or ``"rmse"`` (minimized,
        so a lower :attr:`best_score_` is better).
    {_PARAMETERS_AFTER_METRIC}"""

    _task = "regression"
    _parameter_constraints = {
        **_RegTune._parameter_constraints,
        "metric": [None, StrOptions({m for m, v in METRICS.items() if v.task == "regression"})],
    }


@contextmanager
def _temporary_journal(settings: TuneSettings, temporary: bool) -> Iterator[TuneSettings]:
    """``settings``, with ``temporary`` a journal file in a directory removed on the way out."""
    if not temporary:
        yield settings
        return
    tmp = tempfile.mkdtemp(prefix="regtune-")
    try:
        yield replace(settings, storage=str(Path(tmp) / "study.journal"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _in_memory(study_name: str, storage: str) -> optuna.Study:
    """A copy of the study in memory, to outlive the temporary file it was run in."""
    memory = optuna.storages.InMemoryStorage()
    optuna.copy_study(from_study_name=study_name, from_storage=make_storage(storage), to_storage=memory)
    return optuna.load_study(study_name=study_name, storage=memory)
