"""The resolved configuration of one network: architecture, optimizer and every regularizer.

A :class:`RegConfig` is plain data. The tuner samples one per trial, the estimators build one
from their parameters in ``fit``, and MLflow logs it whole, so any run can be reproduced from
what was logged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from regtune.exceptions import RegConfigError
from regtune.regularizer_table import (
    HIDDEN_SIZES,
    POSITIVE,
    POSITIVE_INT,
    REGULARIZERS,
    SIZES,
    Constraint,
    choice,
)

__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURES",
    "AUGMENTS",
    "BATCH_NORM",
    "DEFAULT_LR",
    "DROPOUT_VARIANTS",
    "FEATURE_SCALINGS",
    "FIELD_CONSTRAINTS",
    "LR_SCHEDULES",
    "NUMERIC_EMBEDDINGS",
    "OPTIMIZERS",
    "PRECISIONS",
    "REGULARIZER_OFF",
    "RegConfig",
    "RegConfigError",
    "no_regularization",
]

ACTIVATIONS = ("relu", "gelu", "selu", "tanh", "silu")
ARCHITECTURES = ("mlp", "cnn")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
#: The learning rate each optimizer gets when the estimators' ``lr`` is ``None``: SGD (Nesterov
#: momentum 0.9) needs a far larger step than Adam's 1e-3 (measured on digits: 0.28 validation
#: accuracy after 5 epochs at 1e-3).
DEFAULT_LR: dict[str, float] = {"adam": 1e-3, "adamw": 1e-3, "sgd": 0.05, "rmsprop": 1e-3}
#: Lightning's names: float32, or the forward pass and loss under torch.autocast in bfloat16 / float16.
PRECISIONS = ("32", "bf16-mixed", "16-mixed")
# Implemented by regtune.nn.schedules (one shape each) and regtune.data.scaling.
LR_SCHEDULES = ("constant", "cosine", "onecycle", "flat_anneal")
FEATURE_SCALINGS = ("standard", "robust_clip", "quantile")
# Implemented by regtune.nn.embeddings; "none" feeds the scaled columns to the MLP as they are.
NUMERIC_EMBEDDINGS = ("none", "periodic", "piecewise_linear")

_SPECS = {spec.name: spec for spec in REGULARIZERS}
AUGMENTS = _SPECS["augment"].fields["augment"].choices
BATCH_NORM = _SPECS["batch_norm"].fields["batch_norm"].choices
DROPOUT_VARIANTS = _SPECS["dropout"].fields["dropout_variant"].choices

# Every field's accepted values: the network and optimizer here, the regularizers from their table.
FIELD_CONSTRAINTS: dict[str, Constraint] = {
    "architecture": choice(*ARCHITECTURES),
    "hidden_layer_sizes": HIDDEN_SIZES,
    "conv_channels": SIZES,
    "activation": choice(*ACTIVATIONS),
    "optimizer": choice(*OPTIMIZERS),
    "lr": POSITIVE,
    "lr_schedule": choice(*LR_SCHEDULES),
    "warmup_epochs": Constraint("int", low=0, closed="left"),
    "feature_scaling": choice(*FEATURE_SCALINGS),
    "numeric_embedding": choice(*NUMERIC_EMBEDDINGS),
    "embedding_dim": POSITIVE_INT,
    "n_frequencies": POSITIVE_INT,
    "frequency_sigma": POSITIVE,
    "n_bins": Constraint("int", low=2, closed="left"),
    "tabm": POSITIVE_INT,
    "batch_size": POSITIVE_INT,
    "max_epochs": POSITIVE_INT,
    **{name: constraint for spec in REGULARIZERS for name, constraint in spec.fields.items()},
}

# The switch fields of the regularizers; their "off" values define the no-regularization baseline.
REGULARIZER_OFF: dict[str, Any] = {spec.switch: spec.off for spec in REGULARIZERS}


@dataclass(frozen=True)
class RegConfig:
    """Everything that decides how one network is built and trained.

    Penalty strengths multiply the mean training loss. ``0`` (or ``"none"``/``False``) switches
    a technique off, so the default instance is an unregularized network. The values each field
    accepts are declared once, in :data:`FIELD_CONSTRAINTS` (the regularizers' come from
    :data:`regtune.regularizer_table.REGULARIZERS`), and checked here.
    """

    # architecture
    architecture: str = "mlp"
    hidden_layer_sizes: tuple[int, ...] = (128, 128)
    conv_channels: tuple[int, ...] = (16, 32)
    activation: str = "relu"
    # optimizer
    optimizer: str = "adam"
    lr: float = 1e-3
    lr_schedule: str = "constant"
    warmup_epochs: int = 0
    batch_size: int = 128
    max_epochs: int = 100
    # inputs: how numeric columns are scaled before the network sees them
    feature_scaling: str = "standard"
    # inputs: how the built-in MLP embeds numeric columns (regtune.nn.embeddings)
    numeric_embedding: str = "none"
    embedding_dim: int = 16
    n_frequencies: int = 16
    frequency_sigma: float = 0.1
    n_bins: int = 16
    # the built-in MLP as a TabM-mini ensemble of this many members (1: the plain MLP)
    tabm: int = 1
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
        for name, constraint in FIELD_CONSTRAINTS.items():
            object.__setattr__(self, name, constraint.check(name, getattr(self, name)))

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
