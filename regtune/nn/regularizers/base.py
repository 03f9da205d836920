"""The interface every regularizer implements: optional hooks the training loop calls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor, nn
from torch.nn.utils import parametrize

from regtune.exceptions import RegConfigError

if TYPE_CHECKING:
    from regtune.config import RegConfig

__all__ = ["CONSTRAINED_ATTR", "Regularizer", "constrain_layers", "decay_parameters", "overrides", "require_layers",
           "weight_layers"]


class Regularizer:
    """A regularization technique as a set of optional hooks; every hook is a no-op here.

    The training loop calls a hook only on the regularizers that override it, so an inactive
    hook costs nothing per batch. A subclass named by an entry of
    :data:`regtune.regularizer_table.REGULARIZERS` builds itself with :meth:`from_config`.
    """

    @classmethod
    def from_config(
        cls, config: RegConfig, *, n_classes: int | None, image_shape: tuple[int, int, int] | None
    ) -> Regularizer | None:
        """The hook ``config`` asks for, once its table entry is on; ``None`` if training
        applies it some other way (the optimizer, say)."""
        raise NotImplementedError(f"{cls.__name__} does not say how to build itself from a RegConfig")

    def build(self, model: nn.Module) -> nn.Module:
        """Change the network once, before the optimizer is created."""
        return model

    def on_batch(self, X: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Transform a training batch (augmentation, noise, mixing); never called at eval."""
        return X, y

    def before_forward(self, model: nn.Module) -> None:
        """Perturb the model before the forward pass of a training batch."""

    def penalty(self, model: nn.Module) -> Tensor | None:
        """A term added to the batch loss."""
        return None

    def after_backward(self, model: nn.Module) -> None:
        """Act on gradients, or undo a forward-time perturbation, before the optimizer step."""

    def after_step(self, model: nn.Module, lr: float) -> None:
        """Act on weights after the optimizer step (constraints, decoupled decay)."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


def overrides(regularizers: list[Regularizer], hook: str) -> list[Regularizer]:
    """The regularizers whose ``hook`` differs from the no-op base implementation."""
    base = getattr(Regularizer, hook)
    return [r for r in regularizers if getattr(type(r), hook) is not base]


# Layers whose ``weight`` is a weight matrix or kernel: penalties, decay and weight noise act on
# these weights (never on biases or normalization parameters, whatever their names).
_WEIGHT_TYPES = (nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
                 nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Embedding)
# Layers whose rows are units with incoming weights: max-norm and spectral norm act on these.
_CONSTRAINED_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: Attribute of a module naming the layers max-norm and spectral norm act on (set it in a
#: module's class, or with the estimators' ``constrained_layers=``).
CONSTRAINED_ATTR = "regtune_constrained_layers"


def decay_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The weights of the Linear, convolution and embedding layers, found by module type:
    penalties, decay and weight noise never touch biases or normalization parameters."""
    params = []
    for layer in model.modules():
        if not isinstance(layer, _WEIGHT_TYPES):
            continue
        if parametrize.is_parametrized(layer, "weight"):
            weight = layer.parametrizations.weight.original
        else:
            weight = layer.weight
        if weight.requires_grad:
            params.append(weight)
    return params


def weight_layers(model: nn.Module, *, include_head: bool = True) -> list[nn.Module]:
    """Linear and convolution layers in module order; ``include_head=False`` keeps the hidden
    ones: the layers ``model`` names in its ``regtune_constrained_layers`` attribute, else all
    but the last (the output layer, whose logits may take any scale)."""
    layers = [m for m in model.modules() if isinstance(m, _CONSTRAINED_TYPES)]
    if include_head:
        return layers
    names = getattr(model, CONSTRAINED_ATTR, None)
    if names is not None:
        named = dict(model.named_modules())
        return [named[name] for name in names]
    return layers[:-1]


def require_layers(model: nn.Module, setting: str, *, hidden: bool = False) -> None:
    """Raise unless ``model`` has weights ``setting`` can act on (hidden layers for constraints):
    a technique with nothing to act on is refused, never silently ignored."""
    if (weight_layers(model, include_head=False) if hidden else decay_parameters(model)):
        return
    what = ("no hidden Linear or convolution layer (max-norm and spectral norm leave the output layer free; "
            "name the layers with constrained_layers=)" if hidden else
            "no Linear, convolution or embedding layer with trainable weights")
    raise RegConfigError(f"{setting} cannot apply to {type(model).__name__}: it has {what}; switch {setting} off")


def constrain_layers(model: nn.Module, names: Any) -> nn.Module:
    """Make max-norm and spectral norm act on the layers ``names`` (``named_modules`` names)."""
    names = (names,) if isinstance(names, str) else tuple(names)
    candidates = [n for n, m in model.named_modules() if isinstance(m, _CONSTRAINED_TYPES)]
    for name in names:
        if name not in candidates:
            raise RegConfigError(f"constrained_layers: {name!r} is not a Linear or convolution layer of "
                                 f"{type(model).__name__}; its layers are {', '.join(candidates) or '(none)'}")
    setattr(model, CONSTRAINED_ATTR, names)
    return model
