"""The training loss: the task's own (cross-entropy, MSE) or the user's ``criterion``, with
label smoothing, soft (mixed) targets and per-sample weights applied the same way for both."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from regtune.config import RegConfig
from regtune.exceptions import RegConfigError

__all__ = ["Loss", "make_criterion"]


def make_criterion(criterion: Any) -> nn.Module | None:
    """``criterion`` as a module of its own: a class is instantiated with no argument, an
    instance is copied (a fit never changes the user's object); ``None`` stays ``None``."""
    if criterion is None:
        return None
    if isinstance(criterion, type):
        try:
            return criterion()
        except TypeError as exc:
            raise RegConfigError(f"criterion={criterion.__qualname__} cannot be built without arguments ({exc}); "
                                 f"pass an instance, e.g. criterion={criterion.__qualname__}(...)") from None
    if not callable(criterion):
        raise RegConfigError(f"criterion={criterion!r} is not a loss; pass a torch loss class or instance, "
                             "e.g. torch.nn.CrossEntropyLoss or torch.nn.HuberLoss(delta=0.5)")
    return copy.deepcopy(criterion)


def _name(criterion: Any) -> str:
    return type(criterion).__name__


class Loss:
    """``loss(output, target, weight=None)``: one scalar per batch.

    ``weight`` (one per row, mean 1 over the training rows) gives the weighted mean of the
    per-row losses; the criterion then runs with ``reduction="none"``. A classifier's targets
    are class indices, or class probabilities under mixup and cutmix, so those two and label
    smoothing need a criterion that takes probabilities: ``nn.CrossEntropyLoss`` or one that
    says so with a ``soft_targets = True`` attribute (which then always gets probabilities:
    one-hot rows where nothing mixed or smoothed them).

    With ``config.tabm = k > 1`` (training only) the network gives one prediction per member,
    ``(batch, k, n_outputs)``, and the loss is the mean over members of each member's loss
    against the same targets: the members train independently (Gorishniy et al. 2025), and
    smoothing, mixed targets and weights apply to each as to one network.
    """

    def __init__(self, criterion: nn.Module | None, config: RegConfig, task: str, *, training: bool = True) -> None:
        self.task = task
        self.smoothing = config.label_smoothing if training else 0.0
        self.criterion = criterion
        self.members = config.tabm if training else 1
        self._per_row: nn.Module | None = None
        self._smooth_targets = self._one_hot = False
        if criterion is None:
            return
        name = _name(criterion)
        takes_probabilities = isinstance(criterion, nn.CrossEntropyLoss) or getattr(criterion, "soft_targets", False)
        # A soft-target loss gets probabilities always (one-hot rows where nothing mixed them).
        self._one_hot = task == "classification" and not isinstance(criterion, nn.CrossEntropyLoss) \
            and bool(getattr(criterion, "soft_targets", False))
        if task == "classification" and training:
            mixing = [f"{f}={getattr(config, f)!r}" for f in ("mixup_alpha", "cutmix_alpha") if getattr(config, f) > 0]
            if self.smoothing > 0:
                mixing.append(f"label_smoothing={self.smoothing!r}")
            if mixing and not takes_probabilities:
                raise RegConfigError(
                    f"{' and '.join(mixing)} {'make' if len(mixing) > 1 else 'makes'} the targets class "
                    f"probabilities, but criterion={name} takes "
                    "class indices; use torch.nn.CrossEntropyLoss (or a loss with soft_targets = True), "
                    "or switch them off")
        if self.smoothing > 0 and isinstance(criterion, nn.CrossEntropyLoss):
            self.criterion = copy.copy(criterion)
            self.criterion.label_smoothing = self.smoothing
        elif self.smoothing > 0:
            self._smooth_targets = True
        self._name = name

    def _per_row_criterion(self) -> nn.Module:
        if self._per_row is None:
            if not isinstance(getattr(self.criterion, "reduction", None), str):
                raise RegConfigError(
                    f"criterion={self._name} has no reduction argument, so sample weights (sample_weight or "
                    "class_weight) cannot weigh its rows; use a torch loss (they take reduction='none') or "
                    "fit without weights")
            self._per_row = copy.copy(self.criterion)
            self._per_row.reduction = "none"
        return self._per_row

    def __call__(self, output: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        if self.members > 1:
            return self._members_mean(output, target, weight)
        return self._loss(output, target, weight)

    def _members_mean(self, output: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
        k = self.members
        if output.ndim != 3 or output.shape[1] != k:
            raise RegConfigError(f"tabm={k}: the network returned shape {tuple(output.shape)} in training mode; "
                                 f"a TabM ensemble returns (batch, {k}, n_outputs), one prediction per member")
        if self.criterion is not None and weight is None:  # any reduction: each member's loss, then their mean
            return torch.stack([self._loss(output[:, i], target, None) for i in range(k)]).mean()
        # Mean (or weighted mean) over the batch of each member, then over members: one mean over
        # the rows repeated per member (row b's k members are rows b*k .. b*k + k-1).
        return self._loss(output.flatten(0, 1), target.repeat_interleave(k, dim=0),
                          None if weight is None else weight.repeat_interleave(k))

    def _loss(self, output: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        if self.criterion is None:
            if self.task == "classification":
                loss = F.cross_entropy(output, target, label_smoothing=self.smoothing,
                                       reduction="mean" if weight is None else "none")
            else:
                loss = F.mse_loss(output, target, reduction="mean" if weight is None else "none")
            return loss if weight is None else _weighted_mean(loss, weight)
        if self._one_hot and target.dtype == torch.long:
            target = F.one_hot(target, output.shape[-1]).to(output.dtype)
        if self._smooth_targets:
            target = target * (1 - self.smoothing) + self.smoothing / output.shape[-1]
        try:
            loss = (self.criterion if weight is None else self._per_row_criterion())(output, target)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise RegConfigError(
                f"criterion={self._name} failed on outputs of shape {tuple(output.shape)} and targets of shape "
                f"{tuple(target.shape)} ({target.dtype}): {exc}. A classifier's targets are class indices, a "
                "regressor's standardized values of shape (batch, n_outputs)") from exc
        if weight is not None:
            return _weighted_mean(loss, weight)
        if loss.ndim != 0:
            raise RegConfigError(
                f"criterion={self._name} returned a tensor of shape {tuple(loss.shape)}, not one number: the "
                "training loop needs a scalar loss; use reduction='mean' (or 'sum')")
        return loss


def _weighted_mean(loss: Tensor, weight: Tensor) -> Tensor:
    """Mean over the batch of each row's loss times its weight (a row's several outputs averaged)."""
    if loss.ndim == 0 or loss.shape[0] != weight.shape[0]:
        raise RegConfigError(f"the criterion returned shape {tuple(loss.shape)} with reduction='none'; sample "
                             f"weights need one loss per row ({weight.shape[0]} rows)")
    if loss.ndim > 1:
        loss = loss.reshape(loss.shape[0], -1).mean(1)
    return (loss * weight).mean()

