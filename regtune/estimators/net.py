"""scikit-learn estimators over the training loop: one network, explicit regularization."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from regtune.config import DEFAULT_LR, FIELD_CONSTRAINTS, PRECISIONS, RegConfig
from regtune.data.images import as_rows, to_numpy
from regtune.data.scaling import fit_scaling, scale_features
from regtune.exceptions import DataError, ModuleError, RegConfigError
from regtune.nn.callbacks import Callback, EarlyStopping
from regtune.nn.embeddings import fit_numeric_columns
from regtune.nn.models import ModuleFactory, build_network, check_output, module_reference
from regtune.nn.regularizers import build_regularizers
from regtune.nn.trainer import Trainer, predict_exact, resolve_device
from regtune.regularizer_table import REGULARIZERS, Constraint

__all__ = ["EXPECTED_FAILED_CHECKS", "ModuleParams", "RegularizedNetClassifier", "RegularizedNetRegressor"]

_PREFIX = "module__"

#: scikit-learn checks the estimators cannot pass, with why: pass it to
#: ``parametrize_with_checks(..., expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)``.
EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": (
        "training is stochastic: a row of weight 2 and the same row twice fall into different shuffled "
        "mini-batches and validation splits, so the two networks agree only approximately"),
}


def _sklearn_constraint(constraint: Constraint) -> list[Any]:
    """A RegConfig field's :class:`~regtune.regularizer_table.Constraint` in sklearn's terms."""
    if constraint.kind == "choice":
        return [StrOptions(set(constraint.choices))]
    if constraint.kind == "bool":
        return ["boolean"]
    if constraint.kind == "sizes":
        return ["array-like", Interval(Integral, 1, None, closed="left")]
    number = Integral if constraint.kind == "int" else Real
    return [Interval(number, constraint.low, constraint.high, closed=constraint.closed)]


class ModuleParams:
    """skorch's convention for a network's own constructor arguments: ``module__NAME=value``.

    They are parameters like the declared ones, so ``get_params``, ``set_params``, ``clone``,
    ``GridSearchCV`` and pickle see them; they are kept in one private dict (scikit-learn's
    checks allow no other public attributes), and read back as ``est.module__NAME``.
    """

    def _keep_module_params(self, kwargs: dict[str, Any]) -> None:
        for key in kwargs:
            if not key.startswith(_PREFIX) or key == _PREFIX:
                raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {key!r}; "
                                "keywords beyond its parameters are the module's own constructor "
                                "arguments, given as module__NAME=value")
        self._module_kwargs = dict(kwargs)

    def module_params(self) -> dict[str, Any]:
        """The ``module__NAME`` arguments without their prefix: what the module is built with."""
        return {k[len(_PREFIX):]: v for k, v in self.__dict__.get("_module_kwargs", {}).items()}

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        params = super().get_params(deep=deep)
        params.update(self.__dict__.get("_module_kwargs", {}))
        return params

    def set_params(self, **params: Any) -> ModuleParams:
        routed = {k: params.pop(k) for k in list(params) if k.startswith(_PREFIX)}
        if _PREFIX in routed:
            raise ValueError("module__ needs a name: module__NAME=value")
        super().set_params(**params)
        self._module_kwargs = {**self.__dict__.get("_module_kwargs", {}), **routed}
        return self

    def __getattr__(self, name: str) -> Any:
        if name.startswith(_PREFIX):
            kwargs = self.__dict__.get("_module_kwargs", {})
            if name in kwargs:
                return kwargs[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


class _RegularizedNet(ModuleParams, BaseEstimator):
    """Shared parameters, fitting and persistence of the two estimators."""

    _parameter_constraints: dict = {
        **{name: _sklearn_constraint(c) for name, c in FIELD_CONSTRAINTS.items()},
        "lr": [None, *_sklearn_constraint(FIELD_CONSTRAINTS["lr"])],  # None: the optimizer's DEFAULT_LR
        "module": [None, callable, str],
        "criterion": [None, callable],
        "class_weight": [None, dict, StrOptions({"balanced"})],
        "precision": [StrOptions(set(PRECISIONS))],
        "channels_last": ["boolean"],
        "constrained_layers": [None, str, list, tuple],
        "image_shape": [None, "array-like"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "callbacks": [None, list],
    }

    def __init__(
        self,
        hidden_layer_sizes: Sequence[int] = (128, 128),
        *,
        module: Any = None,
        architecture: str = "mlp",
        conv_channels: Sequence[int] = (16, 32),
        image_shape: Sequence[int] | None = None,
        activation: str = "relu",
        optimizer: str = "adam",
        lr: float | None = None,
        lr_schedule: str = "constant",
        warmup_epochs: int = 0,
        batch_size: int = 128,
        max_epochs: int = 100,
        feature_scaling: str = "standard",
        numeric_embedding: str = "none",
        embedding_dim: int = 16,
        n_frequencies: int = 16,
        frequency_sigma: float = 0.1,
        n_bins: int = 16,
        l1: float = 0.0,
        l2: float = 0.0,
        weight_decay: float = 0.0,
        elastic_net: float = 0.0,
        l1_ratio: float = 0.5,
        dropout: float = 0.0,
        dropout_variant: str = "standard",
        batch_norm: str = "none",
        spectral_norm: bool = False,
        input_noise: float = 0.0,
        weight_noise: float = 0.0,
        gradient_noise: float = 0.0,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        augment: str = "none",
        label_smoothing: float = 0.0,
        max_norm: float = 0.0,
        constrained_layers: Sequence[str] | None = None,
        early_stopping: bool = True,
        validation_fraction: float = 0.1,
        patience: int = 10,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        callbacks: list[Callback] | None = None,
        criterion: Any = None,
        class_weight: dict[Any, float] | str | None = None,
        precision: str = "32",
        channels_last: bool = False,
        **module__params: Any,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.module = module
        self.architecture = architecture
        self.conv_channels = conv_channels
        self.image_shape = image_shape
        self.activation = activation
        self.optimizer = optimizer
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.warmup_epochs = warmup_epochs
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.feature_scaling = feature_scaling
        self.numeric_embedding = numeric_embedding
        self.embedding_dim = embedding_dim
        self.n_frequencies = n_frequencies
        self.frequency_sigma = frequency_sigma
        self.n_bins = n_bins
        self.l1 = l1
        self.l2 = l2
        self.weight_decay = weight_decay
        self.elastic_net = elastic_net
        self.l1_ratio = l1_ratio
        self.dropout = dropout
        self.dropout_variant = dropout_variant
        self.batch_norm = batch_norm
        self.spectral_norm = spectral_norm
        self.input_noise = input_noise
        self.weight_noise = weight_noise
        self.gradient_noise = gradient_noise
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.augment = augment
        self.label_smoothing = label_smoothing
        self.max_norm = max_norm
        self.constrained_layers = constrained_layers
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.criterion = criterion
        self.class_weight = class_weight
        self.precision = precision
        self.channels_last = channels_last
        self._keep_module_params(module__params)

    _task = ""

    # ---- fitting -------------------------------------------------------------------------

    def fit(
        self, X: Any, y: Any, sample_weight: Any = None, *, X_val: Any = None, y_val: Any = None,
        sample_weight_val: Any = None,
    ) -> _RegularizedNet:
        """Train the network; with ``early_stopping`` a validation split picks the best epoch.

        ``sample_weight`` weighs each row's loss (a weighted mean per batch) and, through the
        validation split it shares, the validation loss and score; ``class_weight`` multiplies
        it. ``X_val, y_val`` (and ``sample_weight_val``) replace the validation split: early
        stopping watches them, and training uses every row of ``X``.
        """
        if (X_val is None) != (y_val is None):
            raise DataError("pass both X_val and y_val (a validation set), or neither")
        if sample_weight_val is not None and X_val is None:
            raise DataError("sample_weight_val weighs the rows of X_val; pass X_val and y_val with it")
        validation = None if X_val is None else (X_val, y_val, sample_weight_val)
        for _ in self.fit_iter(X, y, validation, sample_weight=sample_weight):
            pass
        return self

    def fit_iter(
        self,
        X: Any,
        y: Any,
        validation_data: tuple[Any, ...] | None = None,
        *,
        sample_weight: Any = None,
        callbacks: Sequence[Callback] = (),
        score_fn: Any = None,
    ) -> Iterator[dict[str, Any]]:
        """Fit epoch by epoch, yielding each epoch's history record; fitted when exhausted.

        ``validation_data`` ``(X_val, y_val)`` or ``(X_val, y_val, sample_weight_val)``
        replaces the internal validation split (the tuner passes its own folds). Stepping
        several of these generators in lockstep is how cross-validated trials report a mean
        score per epoch.
        """
        trainer = Trainer(**self.trainer_arguments(X, y, validation_data, sample_weight=sample_weight,
                                                   callbacks=callbacks, score_fn=score_fn))
        while not trainer.done:
            record = trainer.step()
            if self.verbose:
                print(_format_record(record))
            if (yield record):  # the caller sent True: stop here (fitted on the epochs so far)
                break
        self.adopt_trainer(trainer)

    def trainer_arguments(
        self,
        X: Any,
        y: Any,
        validation_data: tuple[Any, ...] | None = None,
        *,
        sample_weight: Any = None,
        callbacks: Sequence[Callback] = (),
        score_fn: Any = None,
    ) -> dict[str, Any]:
        """Validate, scale and seed as :meth:`fit_iter` does; the keyword arguments of its
        :class:`~regtune.nn.trainer.Trainer`. A cohort (:mod:`regtune.nn.cohort`) trains K of
        these in one batched network, then hands each member back with :meth:`adopt_trainer`,
        so a trial trained in a cohort is this estimator fitted alone."""
        self._validate_params()
        config = self._config()
        factory = self._factory(config)
        X, y = self._validate_xy(X, y)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        self.device_ = resolve_device(self.device)
        self._fit_scaling(X)
        y_enc = self._encode_y(y, fit=True)
        w = self._sample_weight(X, y_enc, sample_weight, fit=True)
        if validation_data is not None:
            X_val, y_val = self._validate_xy(*validation_data[:2], reset=False)
            y_val = self._encode_y(y_val)
            w_val = self._sample_weight(X_val, y_val, validation_data[2] if len(validation_data) > 2 else None)
            X_tr, y_tr, w_tr = X, y_enc, w
        elif self.early_stopping:
            X_tr, X_val, y_tr, y_val, w_tr, w_val = self._split_validation(X, y_enc, seed, w)
        else:
            X_tr, y_tr, w_tr, X_val, y_val, w_val = X, y_enc, w, None, None, None
        image_shape = self.image_shape_
        regs = build_regularizers(config, n_classes=self._n_classes(), image_shape=image_shape)
        self.n_outputs_ = self._n_outputs(y_enc)
        self._network_args_ = (config, self.n_features_in_, self.n_outputs_, image_shape)
        cbs = list(self.callbacks or []) + list(callbacks)
        if self.early_stopping and X_val is not None:
            cbs.append(EarlyStopping(config.patience))
        X_tr = self._tensor(X_tr)
        self._fit_embedding(X_tr, config)
        return {
            "build": lambda: self._build_network(regs, check=(factory.name, X_tr[:2])),
            "config": config,
            "X": X_tr,
            "y": self._target_tensor(y_tr),
            "X_val": self._tensor(X_val) if X_val is not None else None,
            "y_val": self._target_tensor(y_val) if y_val is not None else None,
            "task": self._task,
            "regularizers": regs,
            "callbacks": cbs,
            "score_fn": score_fn,
            "seed": seed,
            "sample_weight": _weight_tensor(w_tr, self.device_),
            "sample_weight_val": _weight_tensor(w_val, self.device_),
            "criterion": self.criterion,
            "precision": self.precision,
            "channels_last": self.channels_last,
        }

    def adopt_trainer(self, trainer: Any) -> _RegularizedNet:
        """Take the fitted state of a finished trainer built from :meth:`trainer_arguments`."""
        self.module_ = trainer.finish()
        self.config_ = trainer.config
        self.history_ = trainer.history
        self.n_iter_ = trainer.epoch
        self.best_epoch_ = trainer.best_epoch
        return self

    def _config(self) -> RegConfig:
        params = self.get_params()
        if params["lr"] is None:
            params["lr"] = DEFAULT_LR.get(params["optimizer"], DEFAULT_LR["adam"])
        config = RegConfig.from_params(params)
        if self.class_weight is not None and self._task != "classification":
            raise RegConfigError(f"class_weight={self.class_weight!r} applies to classifiers only; leave it None "
                                 "(weigh rows with fit(..., sample_weight=...))")
        for spec in REGULARIZERS:
            if self._task not in spec.tasks and spec.is_on(config):
                raise RegConfigError(f"{spec.switch}={getattr(config, spec.switch)!r} applies to "
                                     f"{' and '.join(spec.tasks)} only; use {spec.off!r}")
        return config

    def _factory(self, config: RegConfig) -> ModuleFactory:
        """The module factory, its ``module__`` arguments and the routed settings checked
        before any data is touched."""
        if self.module is not None and config.architecture != "mlp":
            raise ModuleError(f"architecture={config.architecture!r} picks a built-in network; with "
                              f"module={getattr(self.module, '__qualname__', self.module)!s} leave architecture at 'mlp'")
        factory = ModuleFactory.of(self.module, config.architecture)
        factory.check(config, self.module_params())
        return factory

    def _build_network(self, regs: list, check: tuple[str, torch.Tensor] | None = None) -> torch.nn.Module:
        """The network with its build-time regularizers; ``check`` = (name, batch) runs the
        batch through it first, so a module that cannot work fails before training starts."""
        config, n_features, n_outputs, image_shape = self._network_args_
        model = build_network(
            config, n_features, n_outputs, image_shape, regs, module=self.module,
            module_params=self.module_params(), n_classes=self._n_classes(),
            constrained_layers=self.constrained_layers,
            numeric_columns=getattr(self, "_x_numeric_", None), bin_edges=getattr(self, "_x_bin_edges_", None),
        )
        if check is not None:
            name, batch = check
            check_output(model.to(batch.device), batch, n_outputs, name)
        return model

    def _validate_xy(self, X: Any, y: Any, reset: bool = True) -> tuple[np.ndarray, np.ndarray]:
        X, image_shape = self._images(X, reset)
        with _numbers_only(self, X):
            X, y = validate_data(
                self, X, to_numpy(y), reset=reset, dtype=[np.float64, np.float32],
                y_numeric=self._task == "regression", multi_output=self._task == "regression",
            )
        if reset:
            if image_shape is not None and int(np.prod(image_shape)) != X.shape[1]:
                raise DataError(f"image_shape={image_shape} holds {int(np.prod(image_shape))} values but X has "
                                f"{X.shape[1]} features; fix image_shape, or pass the images as (N, C, H, W)")
            self.image_shape_ = image_shape
        return X, y

    def _validate_x(self, X: Any) -> np.ndarray:
        X, _ = self._images(X, reset=False)
        with _numbers_only(self, X):
            return validate_data(self, X, reset=False, dtype=[np.float64, np.float32])

    def _images(self, X: Any, reset: bool) -> tuple[Any, tuple[int, int, int] | None]:
        """Images ``(N, C, H, W)`` or ``(N, H, W)`` as rows of ``C*H*W`` values, and their shape.

        Rows are what scikit-learn's checks, the scaling and the splits work on; the module gets
        the batches back as images (:meth:`_tensor`).
        """
        given = _image_shape(self.image_shape)
        X, shape = as_rows(X)
        if shape is None:
            return X, (given if reset else self.image_shape_)
        if given is not None and given != shape:
            raise DataError(f"X holds images of shape {shape} but image_shape={given}; leave image_shape unset "
                            "(it is inferred from the images) or fix it")
        if not reset and self.image_shape_ != shape:
            raise DataError(f"X holds images of shape {shape}, but the network was fitted on "
                            f"{'images of shape ' + str(self.image_shape_) if self.image_shape_ else 'rows'}")
        return X, shape

    def _fit_scaling(self, X: np.ndarray) -> None:
        # Images share one scale across pixels so shifts and rotations keep their meaning.
        # A column constant in fit carries nothing the network learned (its weights get no
        # gradient): an infinite scale maps every value of it to 0 at predict time too.
        if self.image_shape_ is not None:
            mean, std, constant = _standardization(X.reshape(-1, 1))
            self._x_mean_, self._x_scale_ = float(mean[0]), 1.0 if constant[0] else float(std[0])
        else:
            mean, std, constant = _standardization(X)
            self._x_mean_, self._x_scale_ = mean, np.where(constant, np.inf, std)
        self._x_quantiles_ = None
        if self.image_shape_ is None and self.feature_scaling != "standard":
            self._x_mean_, self._x_scale_, self._x_quantiles_ = fit_scaling(X, self.feature_scaling)

    def _fit_embedding(self, X_tr: torch.Tensor, config: RegConfig) -> None:
        # From the scaled training rows only (never the validation split): which columns are
        # numeric and, for piecewise_linear, their bin edges; kept so every rebuild matches.
        self._x_numeric_, self._x_bin_edges_ = None, None
        if config.numeric_embedding != "none":
            rows = X_tr.reshape(X_tr.shape[0], -1).cpu().numpy()
            n_bins = config.n_bins if config.numeric_embedding == "piecewise_linear" else None
            self._x_numeric_, self._x_bin_edges_ = fit_numeric_columns(rows, n_bins)

    def _tensor(self, X: np.ndarray) -> torch.Tensor:
        """Scaled rows as a float32 tensor on the device; images as ``(N, C, H, W)``."""
        if self.image_shape_ is None and self.feature_scaling != "standard":
            Xs = scale_features(X, self.feature_scaling, self._x_mean_, self._x_scale_,
                                getattr(self, "_x_quantiles_", None))
        else:
            Xs = (X - self._x_mean_) / self._x_scale_
        tensor = torch.as_tensor(np.ascontiguousarray(Xs, dtype=np.float32), device=self.device_)
        return tensor if self.image_shape_ is None or self._flat_input() else tensor.reshape(-1, *self.image_shape_)

    def _flat_input(self) -> bool:
        """Whether the module takes images as rows of ``C*H*W`` values: a user's module that
        asks for ``n_features`` and not ``image_shape`` is a network of flat features (an MLP)."""
        if self.module is None:
            return False
        factory = ModuleFactory.of(self.module)
        return factory.takes("n_features") and not factory.takes("image_shape")

    def _sample_weight(self, X: np.ndarray, y_enc: np.ndarray, sample_weight: Any,
                       fit: bool = False) -> np.ndarray | None:
        """Each row's weight: ``sample_weight`` times its class's ``class_weight`` (fitted on the
        training rows, applied to validation rows too); ``None`` when all are equal, so equal
        weights train exactly as no weights."""
        if fit:
            self._class_weights = None if self.class_weight is None else compute_class_weight(
                self.class_weight, classes=self.classes_, y=self.classes_[y_enc])
        if sample_weight is None and self._class_weights is None:
            return None
        try:
            w = _check_sample_weight(None if sample_weight is None else to_numpy(sample_weight), X, dtype=np.float64,
                                     ensure_non_negative=True, allow_all_zero_weights=not fit)
        except ValueError as exc:
            name = "sample_weight" if fit else "sample_weight_val"
            raise DataError(f"{name}: {exc} It takes one weight >= 0 per row ({X.shape[0]} rows), not all "
                            "zero.") from None
        if self._class_weights is not None:
            w = w * self._class_weights[y_enc]
        if fit and not np.any(w > 0):
            raise DataError("sample_weight (times class_weight) is zero for every row; give some rows a weight > 0")
        if fit and self._task == "classification" and len(np.unique(y_enc[w > 0])) < 2:
            raise DataError(f"{type(self).__name__} needs at least 2 classes among the rows with a weight > 0; "
                            f"sample_weight leaves only class {self.classes_[y_enc[w > 0][0]].item()!r}")
        return None if np.all(w == w[0]) else w

    def _split_validation(self, X: np.ndarray, y: np.ndarray, seed: int, w: np.ndarray | None = None) -> tuple:
        """``X_tr, X_val, y_tr, y_val, w_tr, w_val`` (weights ``None`` without ``w``)."""
        n_val = int(np.ceil(self.validation_fraction * X.shape[0]))
        if X.shape[0] - n_val < 1:
            return X, None, y, None, w, None
        stratify = None
        if self._task == "classification":
            counts = np.bincount(y)
            if counts.min() >= 2 and n_val >= len(counts):
                stratify = y
        if w is None:
            return (*train_test_split(X, y, test_size=n_val, random_state=seed, stratify=stratify), None, None)
        return tuple(train_test_split(X, y, w, test_size=n_val, random_state=seed, stratify=stratify))

    def _predict_raw(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = self._validate_x(X)
        return predict_exact(self.module_, self._tensor(X)).cpu().numpy().astype(np.float64)

    # ---- persistence: weights travel as a torch state dict, loaded with weights_only=True ----

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # object.__getstate__ returns the live __dict__
        module = state.pop("module_", None)
        if module is not None:
            buffer = io.BytesIO()
            torch.save(module.state_dict(), buffer)
            state["_module_state"] = buffer.getvalue()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        blob = state.pop("_module_state", None)
        # Pickles from before module= (regtune 0.1) lack these, and pickles from before the
        # schedules and scalings (issue 12) their parameters: they trained with the defaults.
        for key, default in (("module", None), ("constrained_layers", None), ("_module_kwargs", {}),
                             ("lr_schedule", "constant"), ("warmup_epochs", 0), ("feature_scaling", "standard"),
                             ("numeric_embedding", "none"), ("embedding_dim", 16), ("n_frequencies", 16),
                             ("frequency_sigma", 0.1), ("n_bins", 16), ("_x_numeric_", None), ("_x_bin_edges_", None),
                             ("criterion", None), ("class_weight", None), ("precision", "32"), ("channels_last", False)):
            state.setdefault(key, default)
        if "n_features_in_" in state:
            state.setdefault("image_shape_", _image_shape(state.get("image_shape")))
        super().__setstate__(state)
        if blob is not None:
            if self.device_.type != "cpu" and resolve_device("auto").type != self.device_.type:
                self.device_ = torch.device("cpu")
            self.module_ = self.load_weights(blob)

    _FITTED = ("classes_", "n_features_in_", "n_outputs_", "_x_mean_", "_x_scale_", "_x_quantiles_", "_y_mean_", "_y_scale_",
               "_y_1d_", "n_iter_", "best_epoch_", "image_shape_", "_x_numeric_", "_x_bin_edges_")

    def export_state(self) -> tuple[dict[str, Any], bytes]:
        """A JSON-ready description of the fitted estimator and its weights as bytes.

        Together they rebuild it with :meth:`from_state`, with no pickle involved.
        """
        check_is_fitted(self)
        # The loss plays no part in predicting: a saved model keeps none (a refit uses the default).
        params = {k: v for k, v in self.get_params().items() if k not in ("callbacks", "criterion")}
        if isinstance(self.class_weight, dict):  # JSON keys are text: keep the class labels as they are
            params["class_weight"] = [[k, v] for k, v in self.class_weight.items()]
        if self.module is not None:  # by reference: "package.module:Name", imported again on load
            params["module"] = module_reference(ModuleFactory.of(self.module).factory)
        for key, value in self.__dict__.get("_module_kwargs", {}).items():
            if not _json_plain(value):
                raise ModuleError(f"{key}={value!r} cannot be saved: a saved model keeps module__ arguments "
                                  "as JSON (numbers, text, lists); pass a plain value and build the object "
                                  "inside the module")
        fitted = {k: _jsonable(getattr(self, k)) for k in self._FITTED if hasattr(self, k)}
        buffer = io.BytesIO()
        torch.save(self.module_.state_dict(), buffer)
        return {"class": type(self).__name__, "params": _jsonable(params), "fitted": fitted}, buffer.getvalue()

    @staticmethod
    def from_state(state: dict[str, Any], weights: bytes, device: str = "cpu") -> _RegularizedNet:
        """Inverse of :meth:`export_state`; weights load with ``torch.load(weights_only=True)``."""
        classes = {c.__name__: c for c in (RegularizedNetClassifier, RegularizedNetRegressor)}
        if state.get("class") not in classes:
            raise DataError(f"saved model class {state.get('class')!r} is not a regtune estimator")
        params = dict(state["params"])
        if isinstance(params.get("class_weight"), list):
            params["class_weight"] = {k: v for k, v in params["class_weight"]}
        est = classes[state["class"]](**params)
        for key, value in state["fitted"].items():
            setattr(est, key, np.asarray(value) if isinstance(value, list) else value)
        est.image_shape_ = _image_shape(state["fitted"].get("image_shape_", est.image_shape))
        est.device_ = torch.device(device)
        est.config_ = est._config()
        est._network_args_ = (est.config_, est.n_features_in_, est.n_outputs_, est.image_shape_)
        est.module_ = est.load_weights(weights)
        return est

    def load_weights(self, blob: bytes) -> torch.nn.Module:
        """Rebuild the fitted network and load weights saved by :meth:`__getstate__`."""
        config, _, _, image_shape = self._network_args_
        regs = build_regularizers(config, n_classes=self._n_classes(), image_shape=image_shape)
        module = self._build_network(regs)
        weights = torch.load(io.BytesIO(blob), map_location=self.device_, weights_only=True)
        module.load_state_dict(weights)
        return module.to(self.device_).eval()


# The estimators' shared "Parameters" section; tests/test_docstrings.py checks it covers __init__.
_PARAMETERS = """Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(128, 128)
        Width of each hidden dense layer (after the conv blocks when ``architecture="cnn"``).
        ``()``: no hidden layer, a linear model (see :class:`regtune.nn.models.MLP`).
    module : nn.Module class, callable or str, optional
        Your own network: a ``torch.nn.Module`` class or a factory returning one (or
        ``"path/file.py:Name"``, ``"package.module:Name"``). It is called with its
        ``module__NAME`` arguments, plus those of ``n_features``, ``n_outputs``, ``n_classes``,
        ``image_shape``, ``numeric_columns``, ``bin_edges``, ``hidden_layer_sizes``,
        ``conv_channels``, ``activation``, ``dropout``, ``dropout_variant``, ``batch_norm``,
        ``numeric_embedding``, ``embedding_dim``, ``n_frequencies`` and ``frequency_sigma`` its
        signature names. ``dropout`` it does not take
        sets ``p`` of its ``nn.Dropout*`` layers; the others, when not at their defaults, must
        be taken. It gets images as ``(batch, C, H, W)`` and must return ``(batch, n_outputs)``.
        ``None``: the built-in MLP, or CNN with ``architecture="cnn"``.
    architecture : {"mlp", "cnn"}, default="mlp"
        The built-in network when ``module`` is ``None``: ``"cnn"`` adds 3x3 conv blocks for
        images.
    conv_channels : tuple of int, default=(16, 32)
        Output channels of each conv block (``"cnn"`` only); each block halves the image with
        2x2 max pooling while it is at least 4 pixels wide.
    image_shape : tuple of int (C, H, W), optional
        The shape of one image stored as a row of ``C*H*W`` values; inferred from images given
        as ``(N, C, H, W)`` or ``(N, H, W)`` arrays or tensors. With it the network gets
        ``(batch, C, H, W)`` batches, and pixels share one mean and std, so shifts keep their
        meaning. ``"cnn"`` and ``augment`` need images.
    activation : {"relu", "gelu", "selu", "tanh", "silu"}, default="relu"
        ``"selu"`` also gets LeCun-normal weights; pair it with ``dropout_variant="alpha"``.
    optimizer : {"adam", "adamw", "sgd", "rmsprop"}, default="adam"
        ``"sgd"`` has Nesterov momentum 0.9. ``"adamw"`` is torch's AdamW: it decays weights
        (never biases or normalization parameters) by ``weight_decay``; ``"adam"`` with
        ``weight_decay`` makes the same update through a hook.
    lr : float, optional
        Learning rate: the peak of ``lr_schedule``. ``None``: the optimizer's default
        (:data:`regtune.config.DEFAULT_LR`: 1e-3 for Adam, AdamW and RMSprop, 0.05 for SGD).
    lr_schedule : {"constant", "cosine", "onecycle", "flat_anneal"}, default="constant"
        How the rate moves over ``max_epochs``, set before every optimizer step: ``"cosine"``
        anneals to 0; ``"onecycle"`` rises from ``lr / 25`` over the first 30% then anneals;
        ``"flat_anneal"`` holds ``lr`` for half the epochs then anneals (cosine).
    warmup_epochs : int, default=0
        Epochs of linear warm-up from ``lr / steps`` to ``lr`` before the schedule starts.
    batch_size : int, default=128
        Rows per optimizer step (at most the training rows).
    max_epochs : int, default=100
        Passes over the training rows; early stopping may end training sooner.
    feature_scaling : {"standard", "robust_clip", "quantile"}, default="standard"
        How each column is scaled, fitted on the rows ``fit`` gets: standardized;
        ``"robust_clip"`` centred on the median, divided by the interquartile range and
        smoothly bounded by ``z / sqrt(1 + (z/3)^2)`` (RealMLP), so outliers end below 3;
        ``"quantile"`` mapped through its quantiles onto a normal. Image rows
        (``image_shape``) always share one standard scale.
    numeric_embedding : {"none", "periodic", "piecewise_linear"}, default="none"
        How the built-in MLP embeds each column with more than two distinct training values
        (binary and one-hot columns pass through) before its first layer (Gorishniy et al.
        2022): ``"periodic"`` as ``[cos(2 pi c x), sin(2 pi c x)]`` with learnable frequencies
        ``c``; ``"piecewise_linear"`` against quantile bins of the training rows (kept with
        the fitted model); each then a per-column linear map and ReLU. L1, L2, decay, noise
        and constraints act on the Linear layers only, not on the embedding.
    embedding_dim : int, default=16
        Width of each embedded column's vector.
    n_frequencies : int, default=16
        Frequencies per column of ``"periodic"``.
    frequency_sigma : float, default=0.1
        Standard deviation of the initial ``"periodic"`` frequencies, in units of the scaled
        column: larger fits sharper functions (and overfits sooner).
    n_bins : int, default=16
        Quantile bins per column of ``"piecewise_linear"`` (fewer where a column has fewer
        distinct values).
    l1 : float, default=0
        Penalty ``l1 * sum|w|`` on the weights: drives uninformative weights to exactly zero.
    l2 : float, default=0
        Penalty ``l2 / 2 * sum w^2`` added to the loss (coupled: Adam rescales it per weight).
    weight_decay : float, default=0
        Decoupled (AdamW-style) decay ``w -= lr * weight_decay * w`` at every optimizer step.
    elastic_net : float, default=0
        Strength of the elastic-net penalty, which mixes L1 and L2 like sklearn's ``ElasticNet``.
    l1_ratio : float in [0, 1], default=0.5
        The L1 share of ``elastic_net`` (1 = pure L1, 0 = pure L2).
    dropout : float in [0, 1), default=0
        Dropout rate after every hidden dense layer.
    dropout_variant : {"standard", "alpha", "gaussian"}, default="standard"
        Inverted dropout, alpha dropout (keeps SELU's mean and variance) or multiplicative
        Gaussian noise.
    batch_norm : {"none", "before_activation", "after_activation"}, default="none"
        Where each hidden layer's batch normalization goes.
    spectral_norm : bool, default=False
        Divide each hidden layer's weight by its largest singular value (the output layer
        stays free).
    input_noise : float, default=0
        Std of Gaussian noise added to the standardized training inputs.
    weight_noise : float, default=0
        Std of Gaussian noise on the weights in each training forward pass, removed before
        the step.
    gradient_noise : float, default=0
        Std of Gaussian noise added to the gradients, annealed over the steps.
    mixup_alpha : float, default=0
        Mix sample pairs and their targets with a Beta(alpha, alpha) weight (mixup).
    cutmix_alpha : float, default=0
        Like ``mixup_alpha``, but swaps a random share of feature columns between pairs.
    augment : {"none", "image", "image_flip"}, default="none"
        Shifts, small rotations and cutout of ``image_shape`` rows; ``"image_flip"`` adds
        horizontal flips (wrong for digits and text).
    label_smoothing : float in [0, 1), default=0
        Share of each target's probability spread over all classes (classifiers only).
    max_norm : float, default=0
        Upper bound on the L2 norm of each hidden unit's incoming weights, enforced after every
        step (every Linear and convolution layer but the output layer).
    constrained_layers : list of str, optional
        Names (as in ``named_modules()``) of the layers ``max_norm`` and ``spectral_norm`` act
        on, for a module whose output layer is not its last Linear or convolution layer.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the rows, stop after ``patience`` epochs without a
        better validation loss and keep the best epoch's weights.
    validation_fraction : float in (0, 1), default=0.1
        Share of the rows held out for early stopping (stratified for classifiers).
    patience : int, default=10
        Epochs without a better validation loss before early stopping ends training.
    device : str, default="auto"
        Torch device; ``"auto"`` picks CUDA, then Apple MPS, then CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds the validation split, the initial weights, the batch order and every noise.
    verbose : int, default=0
        Print each epoch's history record when > 0.
    callbacks : list of Callback, optional
        Extra :class:`~regtune.nn.callbacks.Callback` observers of every epoch (logging,
        pruning); early stopping adds its own.
    criterion : torch loss class or instance, optional
        The training and validation loss, e.g. ``torch.nn.CrossEntropyLoss(weight=...)`` or
        ``torch.nn.HuberLoss``; a class is built without arguments, an instance is copied. It
        gets the network's outputs and, for a classifier, class indices (class probabilities
        under ``mixup_alpha``, ``cutmix_alpha`` or ``label_smoothing``, which therefore need
        ``CrossEntropyLoss`` or a loss with ``soft_targets = True``), for a regressor the
        standardized targets ``(batch, n_outputs)``. It must return one number; with sample
        weights it runs with ``reduction="none"``. ``None``: cross-entropy or mean squared error.
    class_weight : dict, "balanced" or None, default=None
        Classifiers only: weights of the classes, as in scikit-learn (``"balanced"``:
        ``n_samples / (n_classes * count)``), multiplying ``sample_weight`` in the training
        and validation losses and the validation score.
    precision : {"32", "bf16-mixed", "16-mixed"}, default="32"
        Lightning's names: ``"bf16-mixed"`` and ``"16-mixed"`` run the forward pass and the loss
        under ``torch.autocast`` in bfloat16 / float16 (float16 with a gradient scaler); the
        weights, the optimizer and predictions stay float32. ``"16-mixed"`` needs CUDA;
        ``"bf16-mixed"`` works on CPU too (slower there: it saves memory, not time).
    channels_last : bool, default=False
        On CUDA, 4-D inputs (images) and convolution weights are stored channels-last, which
        tensor cores run faster (with mixed precision); ignored on other devices.
    **module__params
        The module's own constructor arguments as ``module__NAME=value`` (skorch's
        convention); ``get_params``, ``set_params`` and ``GridSearchCV`` see them.
"""


class RegularizedNetClassifier(ClassifierMixin, _RegularizedNet):
    __doc__ = f"""A PyTorch network classifier with explicit, composable regularization.

    Parameters follow :class:`sklearn.neural_network.MLPClassifier` where the idea is the same
    (``hidden_layer_sizes``, ``batch_size``, ``early_stopping``, ``validation_fraction``,
    ``random_state``). Every regularizer is off at its default (``0``, ``"none"``, ``False``)
    except early stopping.

    {_PARAMETERS}
    Attributes
    ----------
    classes_, module_, history_, n_iter_, best_epoch_, config_, n_features_in_
    """

    _task = "classification"

    def _encode_y(self, y: np.ndarray, fit: bool = False) -> np.ndarray:
        if fit:
            check_classification_targets(y)
            self.classes_, encoded = np.unique(y, return_inverse=True)
            if len(self.classes_) < 2:
                raise DataError(
                    f"{type(self).__name__} needs at least 2 classes in y; got 1 class: {self.classes_[0].item()!r}"
                )
            return encoded
        lookup = {c: i for i, c in enumerate(self.classes_)}
        unknown = [v for v in np.unique(y) if v not in lookup]
        if unknown:
            raise DataError(
                f"validation labels {[v.item() for v in unknown]!r} were not seen in the training labels "
                f"{self.classes_.tolist()!r}"
            )
        return np.array([lookup[v] for v in y])

    def _n_classes(self) -> int:
        return len(self.classes_)

    def _n_outputs(self, y: np.ndarray) -> int:
        return len(self.classes_)

    def _target_tensor(self, y: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(y, dtype=torch.long, device=self.device_)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns ordered as ``classes_``."""
        logits = self._predict_raw(X)
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        scores = self._predict_raw(X)
        return self.classes_[scores.argmax(1)]

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags


class RegularizedNetRegressor(RegressorMixin, _RegularizedNet):
    __doc__ = f"""A PyTorch network regressor with explicit, composable regularization.

    The parameters are :class:`RegularizedNetClassifier`'s (``label_smoothing`` must stay 0).
    Targets are standardized for training and mapped back in :meth:`predict`; 2-D targets
    give a multi-output network.

    {_PARAMETERS}
    Attributes
    ----------
    module_, history_, n_iter_, best_epoch_, config_, n_features_in_
    """

    _task = "regression"

    def _encode_y(self, y: np.ndarray, fit: bool = False) -> np.ndarray:
        y2 = y.reshape(len(y), -1).astype(np.float64)
        if fit:
            self._y_1d_ = y.ndim == 1
            self._y_mean_, std, constant = _standardization(y.reshape(len(y), -1))
            self._y_scale_ = np.where(constant, 1.0, std)
        return (y2 - self._y_mean_) / self._y_scale_

    def _n_classes(self) -> None:
        return None

    def _n_outputs(self, y: np.ndarray) -> int:
        return y.shape[1]

    def _target_tensor(self, y: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(y, dtype=np.float32), device=self.device_)

    def predict(self, X: Any) -> np.ndarray:
        y = self._predict_raw(X) * self._y_scale_ + self._y_mean_
        return y.ravel() if self._y_1d_ else y

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


@contextmanager
def _numbers_only(estimator: BaseEstimator, X: Any) -> Iterator[None]:
    """Turn numpy's bare "could not convert string to float" into what to do about it."""
    try:
        yield
    except ValueError as err:
        if "could not convert" not in str(err) or isinstance(err, DataError):
            raise
        name = type(estimator).__name__
        dtypes = getattr(X, "dtypes", None)  # a DataFrame: name its text columns
        columns = [str(c) for c, d in dtypes.items() if getattr(d, "kind", "O") not in "biufc"] \
            if hasattr(dtypes, "items") else []
        text = f" in the column(s) {', '.join(columns[:10])}" if columns else ""
        raise DataError(
            f"{name}: X holds text{text} ({err}); it takes numbers only: put the preprocessor in front, "
            f"make_pipeline(regtune.make_preprocessor(), {name}(...)), which one-hot encodes categories"
        ) from None


def _standardization(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column means, stds and which columns are constant, computed in float64.

    float32 round-off makes the std of a constant column ~1e-7 instead of 0, and dividing by
    it turned the one row of another value (in a CV fold that never saw it in fit) into ~1e7
    standard deviations. A column is constant when its std is within a few round-off units of
    its input dtype, relative to its magnitude.
    """
    X = np.asarray(X)
    dtype = X.dtype if np.issubdtype(X.dtype, np.floating) else np.dtype(np.float64)
    X64 = X.astype(np.float64)
    mean, std = X64.mean(0), X64.std(0)
    magnitude = np.abs(X64).max(0)
    constant = ~(std > _CONSTANT_ULPS * np.finfo(dtype).eps * magnitude)  # NaN counts as constant
    return mean, std, constant


_CONSTANT_ULPS = 16


def _weight_tensor(w: np.ndarray | None, device: torch.device) -> torch.Tensor | None:
    return None if w is None else torch.as_tensor(np.ascontiguousarray(w, dtype=np.float32), device=device)


def _image_shape(value: Any) -> tuple[int, int, int] | None:
    """``image_shape`` as ``(C, H, W)``; ``(H, W)`` is one channel."""
    if value is None:
        return None
    shape = tuple(int(v) for v in value)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or min(shape) < 1:
        raise RegConfigError(f"image_shape={tuple(value)!r} must be (channels, height, width), e.g. (1, 28, 28)")
    return shape


def _json_plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_json_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_plain(v) for k, v in value.items())
    return False


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _format_record(record: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
