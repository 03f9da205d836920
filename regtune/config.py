"""The resolved configuration of one network: architecture, optimizer and every regularizer.

A :class:`RegConfig` is plain data. The tuner samples one per trial, the estimators build one
from their parameters in ``fit``, and MLflow logs it whole, so any run can be reproduced from
what was logged.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from regtune.exceptions import RegConfigError

__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURES",
    "AUGMENTS",
    "BATCH_NORM",
    "DROPOUT_VARIANTS",
    "OPTIMIZERS",
    "RegConfig",
    "RegConfigError",
    "no_regularization",
]

ACTIVATIONS = ("relu", "gelu", "selu", "tanh", "silu")
ARCHITECTURES = ("mlp", "cnn")
AUGMENTS = ("none", "image", "image_flip")
BATCH_NORM = ("none", "before_activation", "after_activation")
DROPOUT_VARIANTS = ("standard", "alpha", "gaussian")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")

# Fields that switch a regularizer on; their "off" values define the no-regularization baseline.
REGULARIZER_OFF: dict[str, Any] = {
    "l1": 0.0,
    "l2": 0.0,
    "weight_decay": 0.0,
    "elastic_net": 0.0,
    "dropout": 0.0,
    "batch_norm": "none",
    "input_noise": 0.0,
    "weight_noise": 0.0,
    "gradient_noise": 0.0,
    "mixup_alpha": 0.0,
    "cutmix_alpha": 0.0,
    "augment": "none",
    "label_smoothing": 0.0,
    "max_norm": 0.0,
    "spectral_norm": False,
    "early_stopping": False,
}


@dataclass(frozen=True)
class RegConfig:
    """Everything that decides how one network is built and trained.

    Penalty strengths multiply the mean training loss. ``0`` (or ``"none"``/``False``) switches
    a technique off, so the default instance is an unregularized network.
    """

    # architecture
    architecture: str = "mlp"
    hidden_layer_sizes: tuple[int, ...] = (128, 128)
    conv_channels: tuple[int, ...] = (16, 32)
    activation: str = "relu"
    # optimizer
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 128
    max_epochs: int = 100
    # penalties
    l1: float = 0.0
    l2: float = 0.0
    weight_decay: float = 0.0
    elastic_net: float = 0.0
    l1_ratio: float = 0.5
    # structural
    dropout: float = 0.0
    dropout_variant: str = "standard"
    batch_norm: str = "none"
    spectral_norm: bool = False
    # data-side
    input_noise: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    augment: str = "none"
    label_smoothing: float = 0.0
    # optimisation-side noise and constraints
    weight_noise: float = 0.0
    gradient_noise: float = 0.0
    max_norm: float = 0.0
    # early stopping
    early_stopping: bool = True
    patience: int = 10
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_layer_sizes", _int_tuple("hidden_layer_sizes", self.hidden_layer_sizes))
        object.__setattr__(self, "conv_channels", _int_tuple("conv_channels", self.conv_channels))
        _choice("architecture", self.architecture, ARCHITECTURES)
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("dropout_variant", self.dropout_variant, DROPOUT_VARIANTS)
        _choice("batch_norm", self.batch_norm, BATCH_NORM)
        _choice("augment", self.augment, AUGMENTS)
        _positive("lr", self.lr)
        _positive_int("batch_size", self.batch_size)
        _positive_int("max_epochs", self.max_epochs)
        _positive_int("patience", self.patience)
        for name in ("l1", "l2", "weight_decay", "elastic_net", "input_noise", "weight_noise",
                     "gradient_noise", "mixup_alpha", "cutmix_alpha", "max_norm"):
            _non_negative(name, getattr(self, name))
        for name in ("dropout", "label_smoothing"):
            _rate(name, getattr(self, name))
        _in_unit("l1_ratio", self.l1_ratio)
        for name in ("spectral_norm", "early_stopping"):
            if not isinstance(getattr(self, name), (bool, int)):
                raise RegConfigError(f"{name}={getattr(self, name)!r} must be True or False")

    def replace(self, **changes: Any) -> RegConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Flat, loggable view (tuples kept, ``extra`` dropped)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "extra")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RegConfig:
        """Build from a mapping, ignoring keys that are not configuration fields."""
        names = set(cls.field_names())
        return cls(**{k: v for k, v in params.items() if k in names})

    def active_regularizers(self) -> list[str]:
        """Names of the regularizer switches that are on, in a stable order."""
        return [name for name, off in REGULARIZER_OFF.items() if getattr(self, name) != off]


def no_regularization(config: RegConfig) -> RegConfig:
    """The same architecture and optimizer with every regularizer switched off."""
    return config.replace(**REGULARIZER_OFF)


def _int_tuple(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, (int,)) and not isinstance(value, bool):
        value = (value,)
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise RegConfigError(f"{name}={value!r} must be a sequence of positive integers") from None
    if not out or any(v < 1 for v in out):
        raise RegConfigError(f"{name}={value!r} must be a non-empty sequence of positive integers")
    return out


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise RegConfigError(f"{name}={value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RegConfigError(f"{name}={value!r} must be a finite number")
    return float(value)


def _positive(name: str, value: Any) -> None:
    if _number(name, value) <= 0:
        raise RegConfigError(f"{name}={value!r} must be > 0")


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RegConfigError(f"{name}={value!r} must be an integer >= 1")


def _non_negative(name: str, value: Any) -> None:
    if _number(name, value) < 0:
        raise RegConfigError(f"{name}={value!r} must be >= 0 (0 switches it off)")


def _rate(name: str, value: Any) -> None:
    if not 0 <= _number(name, value) < 1:
        raise RegConfigError(f"{name}={value!r} must be in [0, 1)")


def _in_unit(name: str, value: Any) -> None:
    if not 0 <= _number(name, value) <= 1:
        raise RegConfigError(f"{name}={value!r} must be in [0, 1]")
