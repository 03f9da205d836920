"""Every regularization technique as a small hook object, and the factory that picks them."""

from __future__ import annotations

import importlib

from regtune.config import RegConfig
from regtune.regularizer_table import REGULARIZERS

from .augment import CutMix, ImageAugment, Mixup
from .base import (
    CONSTRAINED_ATTR,
    Regularizer,
    constrain_layers,
    decay_parameters,
    overrides,
    require_layers,
    weight_layers,
)
from .constraints import MaxNorm, SpectralNorm
from .noise import GradientNoise, InputNoise, WeightNoise
from .penalties import DecoupledWeightDecay, ElasticNetPenalty, L1Penalty, L2Penalty
from .structural import GaussianDropout, layer_block, make_dropout

__all__ = [
    "CONSTRAINED_ATTR",
    "CutMix",
    "DecoupledWeightDecay",
    "ElasticNetPenalty",
    "GaussianDropout",
    "GradientNoise",
    "ImageAugment",
    "InputNoise",
    "L1Penalty",
    "L2Penalty",
    "MaxNorm",
    "Mixup",
    "Regularizer",
    "SpectralNorm",
    "WeightNoise",
    "build_regularizers",
    "constrain_layers",
    "decay_parameters",
    "hook_class",
    "layer_block",
    "make_dropout",
    "overrides",
    "require_layers",
    "weight_layers",
]


def build_regularizers(
    config: RegConfig, *, n_classes: int | None, image_shape: tuple[int, int, int] | None
) -> list[Regularizer]:
    """The hook objects a configuration switches on, in the table's order (the order they run).

    Techniques without a hook in :data:`~regtune.regularizer_table.REGULARIZERS` (dropout,
    batch norm) are built into the model, or read by the loop (label smoothing, early stopping).
    """
    regs: list[Regularizer] = []
    for spec in REGULARIZERS:
        if spec.hook is not None and spec.is_on(config):
            hook = hook_class(spec.hook).from_config(config, n_classes=n_classes, image_shape=image_shape)
            if hook is not None:
                regs.append(hook)
    return regs


def hook_class(path: str) -> type[Regularizer]:
    """The Regularizer a table entry names as ``"module.Class"`` in this package."""
    module, _, name = path.partition(".")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
