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
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from regtune.config import DEFAULT_LR, FIELD_CONSTRAINTS, PRECISIONS, RegConfig
from regtune.data.images import as_rows, to_numpy
from regtune.data.scaling import fit_scaling, scale_features
from regtune.data.torch_data import (
    DatasetSource,
    as_map_dataset,
    dataset_labels,
    dataset_statistics,
    input_shape,
    is_dataset,
    item_shape,
    sample_indices,
    split_indices,
)
from regtune.estimators.parameters import parameters_section
from regtune.estimators.routing import ModuleParams
from regtune.exceptions import DataError, ModuleError, RegConfigError
from regtune.nn.callbacks import Callback, EarlyStopping
from regtune.nn.embeddings import fit_numeric_columns
from regtune.nn.models import ModuleFactory, build_network, check_output, module_reference
from regtune.nn.regularizers import build_regularizers
from regtune.nn.trainer import Trainer, predict_exact, resolve_device
from regtune.regularizer_table import REGULARIZERS, Constraint

__all__ = ["EXPECTED_FAILED_CHECKS", "RegularizedNetClassifier", "RegularizedNetRegressor"]

#: The network's defaults, declared once (in RegConfig): the estimators' signature reads them.
_DEFAULT = RegConfig()

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
        hidden_layer_sizes: Sequence[int] = _DEFAULT.hidden_layer_sizes,
        *,
        module: Any = None,
        architecture: str = _DEFAULT.architecture,
        conv_channels: Sequence[int] = _DEFAULT.conv_channels,
        image_shape: Sequence[int] | None = None,
        activation: str = _DEFAULT.activation,
        optimizer: str = _DEFAULT.optimizer,
        lr: float | None = None,
        lr_schedule: str = _DEFAULT.lr_schedule,
        warmup_epochs: int = _DEFAULT.warmup_epochs,
        batch_size: int = _DEFAULT.batch_size,
        max_epochs: int = _DEFAULT.max_epochs,
        feature_scaling: str = _DEFAULT.feature_scaling,
        numeric_embedding: str = _DEFAULT.numeric_embedding,
        embedding_dim: int = _DEFAULT.embedding_dim,
        n_frequencies: int = _DEFAULT.n_frequencies,
        frequency_sigma: float = _DEFAULT.frequency_sigma,
        n_bins: int = _DEFAULT.n_bins,
        tabm: int = _DEFAULT.tabm,
        l1: float = _DEFAULT.l1,
        l2: float = _DEFAULT.l2,
        weight_decay: float = _DEFAULT.weight_decay,
        elastic_net: float = _DEFAULT.elastic_net,
        l1_ratio: float = _DEFAULT.l1_ratio,
        dropout: float = _DEFAULT.dropout,
        dropout_variant: str = _DEFAULT.dropout_variant,
        batch_norm: str = _DEFAULT.batch_norm,
        spectral_norm: bool = _DEFAULT.spectral_norm,
        input_noise: float = _DEFAULT.input_noise,
        weight_noise: float = _DEFAULT.weight_noise,
        gradient_noise: float = _DEFAULT.gradient_noise,
        mixup_alpha: float = _DEFAULT.mixup_alpha,
        cutmix_alpha: float = _DEFAULT.cutmix_alpha,
        augment: str = _DEFAULT.augment,
        label_smoothing: float = _DEFAULT.label_smoothing,
        max_norm: float = _DEFAULT.max_norm,
        constrained_layers: Sequence[str] | None = None,
        early_stopping: bool = _DEFAULT.early_stopping,
        validation_fraction: float = 0.1,
        patience: int = _DEFAULT.patience,
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
        self.tabm = tabm
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
        self, X: Any, y: Any = None, sample_weight: Any = None, *, X_val: Any = None, y_val: Any = None,
        sample_weight_val: Any = None,
    ) -> _RegularizedNet:
        """Train the network; with ``early_stopping`` a validation split picks the best epoch.

        ``sample_weight`` weighs each row's loss (a weighted mean per batch) and, through the
        validation split it shares, the validation loss and score; ``class_weight`` multiplies
        it. ``X_val, y_val`` (and ``sample_weight_val``) replace the validation split: early
        stopping watches them, and training uses every row of ``X``.

        ``X`` may be a map-style ``torch.utils.data.Dataset`` of ``(x, y)`` items (``X_val`` a
        dataset too; ``y`` / ``y_val`` None, or one label per item to skip reading them), or a
        ``DataLoader`` over one (its ``num_workers`` read the items): it is read one batch at a time, never whole (see
        :mod:`regtune.data.torch_data` for how labels, the validation split by index and the
        per-channel standardization from a sample of items are found).
        """
        if (X_val is None) != (y_val is None) and not (is_dataset(X_val) and y_val is None):
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
        if validation_data is not None and is_dataset(validation_data[0]) != is_dataset(X):
            kinds = ["a torch dataset" if is_dataset(v) else "arrays" for v in (X, validation_data[0])]
            raise DataError(f"X is {kinds[0]} but X_val is {kinds[1]}; pass both as torch datasets of (x, y) "
                            "items, or both as arrays")
        if is_dataset(X):
            return self._dataset_arguments(X, y, validation_data, sample_weight, [*callbacks], score_fn)
        if y is None:
            raise DataError(f"{type(self).__name__} requires y to be passed, but the target y is None; pass y "
                            "(one label or target per row), or X as a torch Dataset of (x, y) items")
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

    def _dataset_arguments(self, X: Any, y: Any, validation_data: tuple[Any, ...] | None, sample_weight: Any,
                           callbacks: list[Callback], score_fn: Any) -> dict[str, Any]:
        """:meth:`trainer_arguments` for a torch Dataset: the labels are ``y`` if given (one per item),
        else read (``targets``, else one pass); the validation split is by index, the scaling per
        channel from a sample of items."""
        self._validate_params()
        config = self._config()
        factory = self._factory(config)
        if config.feature_scaling != "standard":
            raise RegConfigError(f"feature_scaling={config.feature_scaling!r} needs the whole table; a torch Dataset "
                                 "is standardized per channel / feature from a sample: use 'standard'")
        dataset, workers = as_map_dataset(X)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self.device_ = resolve_device(self.device)
        shape = item_shape(dataset)
        self.image_shape_ = input_shape(shape)
        self.n_features_in_ = int(np.prod(shape))
        labels = dataset_labels(dataset, workers, given=y)
        y_enc = self._encode_y(labels, fit=True)
        w = self._sample_weight(labels.reshape(len(labels), -1), y_enc, sample_weight, fit=True)
        positions = np.arange(len(labels)).reshape(-1, 1)
        X_val = y_val = w_val = None
        if validation_data is not None:
            val_set, val_workers = as_map_dataset(validation_data[0])
            if item_shape(val_set) != shape:
                raise DataError(f"X_val holds items of shape {item_shape(val_set)}, X items of shape {shape}; "
                                "they need the same shape")
            val_labels = dataset_labels(val_set, val_workers, given=validation_data[1], name="y_val")
            y_val = self._encode_y(val_labels)
            w_val = self._sample_weight(val_labels.reshape(len(val_labels), -1), y_val,
                                        validation_data[2] if len(validation_data) > 2 else None)
            X_val = np.arange(len(val_set))
            train, y_tr, w_tr = positions, y_enc, w
        elif self.early_stopping:
            train, X_val, y_tr, y_val, w_tr, w_val = self._split_validation(positions, y_enc, seed, w)
        else:
            train, y_tr, w_tr = positions, y_enc, w
        train = train.ravel()
        self._x_mean_, self._x_scale_ = dataset_statistics(dataset, train, seed)
        self._x_quantiles_ = None
        regs = build_regularizers(config, n_classes=self._n_classes(), image_shape=self.image_shape_)
        self.n_outputs_ = self._n_outputs(y_enc)
        self._network_args_ = (config, self.n_features_in_, self.n_outputs_, self.image_shape_)
        net_shape = (self.n_features_in_,) if self.image_shape_ is None or self._flat_input() else self.image_shape_
        def rows(items: Any, indices: np.ndarray, n_workers: int) -> DatasetSource:
            return DatasetSource(items, indices, mean=self._x_mean_, scale=self._x_scale_, shape=net_shape,
                                 device=self.device_, num_workers=n_workers)

        source = rows(dataset, train, workers)
        n_sample = 2 if config.numeric_embedding == "none" else 256  # the embedding's columns and bins
        sample = torch.cat(list(source.subset(sample_indices(len(train), n_sample, seed)).inputs()))
        self._fit_embedding(sample, config)
        cbs = list(self.callbacks or []) + callbacks
        if self.early_stopping and X_val is not None:
            cbs.append(EarlyStopping(config.patience))
        if X_val is not None:
            X_val = rows(dataset, X_val.ravel(), workers) if validation_data is None else rows(val_set, X_val, val_workers)
        return {
            "build": lambda: self._build_network(regs, check=(factory.name, sample[:2])),
            "config": config, "X": source, "y": self._target_tensor(y_tr), "X_val": X_val,
            "y_val": self._target_tensor(y_val) if y_val is not None else None,
            "task": self._task, "regularizers": regs, "callbacks": cbs, "score_fn": score_fn, "seed": seed,
            "sample_weight": _weight_tensor(w_tr, self.device_), "sample_weight_val": _weight_tensor(w_val, self.device_),
            "criterion": self.criterion, "precision": self.precision, "channels_last": self.channels_last,
        }

    def _dataset_source(self, X: Any) -> DatasetSource:
        """The items of a torch Dataset to predict, scaled as in fit."""
        dataset, workers = as_map_dataset(X)
        shape = item_shape(dataset)
        if int(np.prod(shape)) != self.n_features_in_ or input_shape(shape) not in (None, self.image_shape_):
            raise DataError(f"the dataset holds items of shape {shape}, but the network was fitted on "
                            f"{self.image_shape_ or self.n_features_in_} inputs")
        net_shape = (self.n_features_in_,) if self.image_shape_ is None or self._flat_input() else self.image_shape_
        return DatasetSource(dataset, np.arange(len(dataset)), mean=np.broadcast_to(self._x_mean_, shape=(self.n_features_in_,)),
                             scale=np.broadcast_to(self._x_scale_, (self.n_features_in_,)), shape=net_shape,
                             device=self.device_, num_workers=workers)

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
        if X.shape[0] - int(np.ceil(self.validation_fraction * X.shape[0])) < 1:
            return X, None, y, None, w, None
        train, val = split_indices(y, self.validation_fraction, seed, stratify=self._task == "classification")
        return X[train], X[val], y[train], y[val], *((None, None) if w is None else (w[train], w[val]))

    def _predict_raw(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        if is_dataset(X):
            if getattr(self, "_x_quantiles_", None) is not None:
                raise DataError(f"feature_scaling={self.feature_scaling!r} was fitted on a table; predict a table too")
            return predict_exact(self.module_, self._dataset_source(X)).cpu().numpy().astype(np.float64)
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


# The estimators' shared numpydoc "Parameters" section, written from the signature.
_PARAMETERS = parameters_section(_RegularizedNet.__init__)


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
