"""Every regularization technique as a small hook object, and the factory that picks them."""

from __future__ import annotations

from regtune.config import RegConfig

from .augment import CutMix, ImageAugment, Mixup
from .base import Regularizer, decay_parameters, overrides, weight_layers
from .constraints import MaxNorm, SpectralNorm
from .noise import GradientNoise, InputNoise, WeightNoise
from .penalties import DecoupledWeightDecay, ElasticNetPenalty, L1Penalty, L2Penalty
from .structural import GaussianDropout, layer_block, make_dropout

__all__ = [
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
    "decay_parameters",
    "layer_block",
    "make_dropout",
    "overrides",
    "weight_layers",
]


def build_regularizers(
    config: RegConfig, *, n_classes: int | None, image_shape: tuple[int, int, int] | None
) -> list[Regularizer]:
    """The hook objects a configuration switches on (dropout and batch norm are built into the model)."""
    regs: list[Regularizer] = []
    if config.augment != "none":
        if image_shape is None:
            raise ValueError(f"augment={config.augment!r} needs image data: set image_shape, e.g. (1, 8, 8)")
        regs.append(ImageAugment(image_shape, flip=config.augment == "image_flip"))
    if config.mixup_alpha > 0:
        regs.append(Mixup(config.mixup_alpha, n_classes))
    if config.cutmix_alpha > 0:
        regs.append(CutMix(config.cutmix_alpha, n_classes))
    if config.input_noise > 0:
        regs.append(InputNoise(config.input_noise))
    # Hooks run in list order. Weight noise comes off first, so decay and penalties read clean
    # weights; decay acts before the L1 step puts weights on exactly zero; spectral norm is last.
    if config.weight_noise > 0:
        regs.append(WeightNoise(config.weight_noise))
    if config.weight_decay > 0:
        regs.append(DecoupledWeightDecay(config.weight_decay))
    if config.l1 > 0:
        regs.append(L1Penalty(config.l1))
    if config.l2 > 0:
        regs.append(L2Penalty(config.l2))
    if config.elastic_net > 0:
        regs.append(ElasticNetPenalty(config.elastic_net, config.l1_ratio))
    if config.gradient_noise > 0:
        regs.append(GradientNoise(config.gradient_noise))
    if config.max_norm > 0:
        regs.append(MaxNorm(config.max_norm))
    if config.spectral_norm:
        regs.append(SpectralNorm())
    return regs
