"""Per-batch data augmentation, vectorized over the batch: images and tables."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from regtune.exceptions import RegConfigError

from .base import Regularizer

if TYPE_CHECKING:
    from regtune.config import RegConfig

__all__ = ["CutMix", "ImageAugment", "Mixup"]


class ImageAugment(Regularizer):
    """Random shifts, small rotations and cutout on a batch of images; flips only if asked.

    Batches are images ``(batch, C, H, W)`` or rows of ``C*H*W`` values; either way every
    sample gets its own affine transform in one ``grid_sample`` call, on the batch's device.
    Horizontal flips are off by default because they change digits.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        *,
        max_shift: float = 0.125,
        max_degrees: float = 10.0,
        cutout: float = 0.25,
        flip: bool = False,
    ) -> None:
        self.image_shape = tuple(image_shape)
        self.max_shift = max_shift
        self.max_degrees = max_degrees
        self.cutout = cutout
        self.flip = flip

    @classmethod
    def from_config(cls, config: RegConfig, *, n_classes: int | None, image_shape: tuple[int, int, int] | None) -> ImageAugment:
        if image_shape is None:
            raise RegConfigError(f"augment={config.augment!r} needs image data: set image_shape, e.g. (1, 8, 8)")
        return cls(image_shape, flip=config.augment == "image_flip")

    def on_batch(self, X: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        n = X.shape[0]
        c, h, w = self.image_shape
        images = X.reshape(n, c, h, w)  # a view: rows become images, images stay as they are
        angle = (torch.rand(n, device=X.device) * 2 - 1) * math.radians(self.max_degrees)
        shift = (torch.rand(n, 2, device=X.device) * 2 - 1) * 2 * self.max_shift
        cos, sin = torch.cos(angle), torch.sin(angle)
        flip = 1.0 - 2.0 * (torch.rand(n, device=X.device) < 0.5).float() if self.flip else 1.0
        theta = torch.stack(
            [torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)],
            1,
        )
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        out = F.grid_sample(images, grid, padding_mode="border", align_corners=False)
        if self.cutout > 0:
            out = out * self._cutout_mask(n, h, w, X.device)
        return out.reshape(X.shape), y

    def _cutout_mask(self, n: int, h: int, w: int, device: torch.device) -> Tensor:
        size_h, size_w = max(1, round(h * self.cutout)), max(1, round(w * self.cutout))
        top = torch.randint(0, h - size_h + 1, (n, 1, 1), device=device)
        left = torch.randint(0, w - size_w + 1, (n, 1, 1), device=device)
        rows = torch.arange(h, device=device).view(1, h, 1)
        cols = torch.arange(w, device=device).view(1, 1, w)
        hole = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)
        return (~hole).unsqueeze(1).float()


class _Mixing(Regularizer):
    """Shared target handling for mixup and cutmix: one-hot classes, then mix like inputs."""

    def __init__(self, alpha: float, n_classes: int | None) -> None:
        self.alpha = float(alpha)
        self.n_classes = n_classes

    def _targets(self, y: Tensor) -> Tensor:
        if self.n_classes is not None and y.dtype == torch.long:
            return F.one_hot(y, self.n_classes).float()
        return y

    def _lam(self) -> float:
        return float(torch.distributions.Beta(self.alpha, self.alpha).sample())


class Mixup(_Mixing):
    """Convex combinations of sample pairs and of their targets (Zhang et al. 2018)."""

    @classmethod
    def from_config(cls, config: RegConfig, *, n_classes: int | None, image_shape: tuple[int, int, int] | None) -> Mixup:
        return cls(config.mixup_alpha, n_classes)

    def on_batch(self, X: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        lam = self._lam()
        perm = torch.randperm(X.shape[0], device=X.device)
        t = self._targets(y)
        return lam * X + (1 - lam) * X[perm], lam * t + (1 - lam) * t[perm]


class CutMix(_Mixing):
    """Paste part of a partner sample into each sample; targets mix by the share kept.

    Images ``(batch, C, H, W)`` get a random box of the partner's pixels (Yun et al. 2019);
    rows of a table get a random subset of the partner's feature columns.
    """

    @classmethod
    def from_config(cls, config: RegConfig, *, n_classes: int | None, image_shape: tuple[int, int, int] | None) -> CutMix:
        return cls(config.cutmix_alpha, n_classes)

    def on_batch(self, X: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        lam = self._lam()
        swap = self._box(X.shape[-2:], lam, X.device) if X.ndim == 4 else \
            torch.rand(X.shape[1:], device=X.device) >= lam
        kept = 1.0 - swap.float().mean().item()
        perm = torch.randperm(X.shape[0], device=X.device)
        t = self._targets(y)
        return torch.where(swap, X[perm], X), kept * t + (1 - kept) * t[perm]

    @staticmethod
    def _box(size: torch.Size, lam: float, device: torch.device) -> Tensor:
        """A random ``(H, W)`` mask of one box covering about ``1 - lam`` of the image."""
        h, w = size
        cut_h, cut_w = round(h * math.sqrt(1 - lam)), round(w * math.sqrt(1 - lam))
        top = int(torch.randint(0, h - cut_h + 1, ()))
        left = int(torch.randint(0, w - cut_w + 1, ()))
        mask = torch.zeros(h, w, dtype=torch.bool, device=device)
        mask[top:top + cut_h, left:left + cut_w] = True
        return mask
