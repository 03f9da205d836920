"""The networks regtune trains: the built-in MLP and CNN, or any ``nn.Module`` a user brings.

Every network is built through one path, :class:`ModuleFactory`: a module class or factory
callable, its own constructor arguments (``module__NAME`` on the estimators) and the arguments
regtune routes to it when its signature names them: the sizes it knows from the data
(:data:`SIZE_ARGS`) and the architecture and structural regularizers (:data:`ROUTED_ARGS`).
The built-in :class:`MLP` and :class:`CNN` are two such factories. A dropout rate a factory
does not take is set on every dropout layer of the built module; any other setting a factory
does not take is refused with an error, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import math
import os
import re
import sys
import sysconfig
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from regtune.config import RegConfig
from regtune.exceptions import ModuleError, RegConfigError, RegtuneError
from regtune.nn.embeddings import NumericEmbedding
from regtune.nn.regularizers import (
    CONSTRAINED_ATTR,
    GaussianDropout,
    Regularizer,
    constrain_layers,
    decay_parameters,
    layer_block,
    make_dropout,
    weight_layers,
)
from regtune.regularizer_table import REGULARIZERS

__all__ = [
    "CNN",
    "MLP",
    "ROUTED_ARGS",
    "SET_ON_LAYERS",
    "SIZE_ARGS",
    "TARGETS",
    "ModuleFactory",
    "build_model",
    "build_network",
    "check_output",
    "dropout_layers",
    "file_module_name",
    "load_module",
    "module_reference",
    "module_source",
]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "selu": nn.SELU, "tanh": nn.Tanh, "silu": nn.SiLU}

#: What regtune knows from the data; a factory gets each one its signature names.
#: ``n_features`` counts every input value (``C*H*W`` for images); ``n_classes`` is ``None``
#: for regression; ``image_shape`` is ``(C, H, W)``, or ``None`` for tables. With a
#: ``numeric_embedding``, ``numeric_columns`` are the columns with more than two distinct
#: training values and ``bin_edges`` (``piecewise_linear``) their quantile edges
#: (:func:`regtune.nn.embeddings.fit_numeric_columns`); both are ``None`` otherwise.
SIZE_ARGS = ("n_features", "n_outputs", "n_classes", "image_shape", "numeric_columns", "bin_edges")
_ARCHITECTURE_ARGS = ("hidden_layer_sizes", "conv_channels", "activation")
_EMBEDDING_ARGS = ("numeric_embedding", "embedding_dim", "n_frequencies", "frequency_sigma")
_ENSEMBLE_ARGS = ("tabm",)
# The settings only the built-in MLP takes: the CNN refuses them, as a user's module does.
_MLP_ONLY = ("numeric_embedding", *_ENSEMBLE_ARGS)
#: Estimator parameters a factory gets when its signature names them: the architecture, the
#: fields of the regularizers the table marks ``routed`` (dropout, batch norm), the numeric
#: embedding and the TabM-mini ensemble (``tabm``). A factory that does not take one refuses
#: any value but the default, unless the technique acts on layers found by type (dropout:
#: regtune sets the rate of the module's own dropout layers; :data:`SET_ON_LAYERS`).
ROUTED_ARGS = (*_ARCHITECTURE_ARGS, *(name for spec in REGULARIZERS if spec.routed for name in spec.fields),
               *_EMBEDDING_ARGS, *_ENSEMBLE_ARGS)
# The embedding's own settings matter only when numeric_embedding is on.
_EMBEDDING_SETTINGS = _EMBEDDING_ARGS[1:]
_DEFAULT = RegConfig()  # the built-in networks' defaults are the estimators': declared once, there
_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
                  GaussianDropout)


# ---------------------------------------------------------------- the built-in networks


def _dense_blocks(n_in: int, sizes: tuple[int, ...], activation: str, dropout: float, dropout_variant: str,
                  batch_norm: str) -> tuple[list[nn.Module], int]:
    """The hidden dense blocks and the width they end at. With no hidden layer (``sizes=()``)
    dropout drops the head's inputs, where it sits in every MLP."""
    if not sizes:
        return [m for m in (make_dropout(dropout, dropout_variant),) if m is not None], n_in
    modules: list[nn.Module] = []
    for width in sizes:
        modules += layer_block(
            nn.Linear(n_in, width),
            _ACTIVATIONS[activation](),
            norm=nn.BatchNorm1d(width),
            batch_norm=batch_norm,
            dropout=make_dropout(dropout, dropout_variant),
        )
        n_in = width
    return modules, n_in


class MLP(nn.Module):
    """Fully connected blocks ``Linear -> [BN] -> act -> [BN] -> [dropout]`` and a linear head.

    Images (``(batch, C, H, W)``) are flattened, so the MLP takes any input regtune gives it.
    ``tabm=k > 1`` makes it a TabM-mini ensemble (:class:`_Members`; ``tabm=1``: no member
    module, the state dict of earlier versions).
    ``numeric_embedding`` puts a :class:`~regtune.nn.embeddings.NumericEmbedding` of the
    ``numeric_columns`` before the first block (``"none"``: no module, the state dict of
    earlier versions).

    ``hidden_layer_sizes=()`` leaves the head alone: a linear model (logistic, softmax or
    linear regression; additive in the embedded columns with an embedding) that the search
    can pick when no hidden layer pays. The regularizers still act on it: penalties, decay and
    weight noise on the head's weights; max-norm and spectral norm, which otherwise leave the
    head free, constrain the head, the only layer; dropout drops the head's inputs, where it
    sits in every MLP (on a linear model an adaptive L2 penalty, Wager et al. 2013); batch
    norm and the activation have no hidden layer to act on and do nothing.
    """

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        hidden_layer_sizes: tuple[int, ...] = _DEFAULT.hidden_layer_sizes,
        activation: str = _DEFAULT.activation,
        dropout: float = _DEFAULT.dropout,
        dropout_variant: str = _DEFAULT.dropout_variant,
        batch_norm: str = _DEFAULT.batch_norm,
        numeric_embedding: str = _DEFAULT.numeric_embedding,
        embedding_dim: int = _DEFAULT.embedding_dim,
        n_frequencies: int = _DEFAULT.n_frequencies,
        frequency_sigma: float = _DEFAULT.frequency_sigma,
        tabm: int = _DEFAULT.tabm,
        n_classes: int | None = None,
        numeric_columns: tuple[int, ...] | None = None,
        bin_edges: Any = None,
    ) -> None:
        super().__init__()
        self.members: _Members | None = None
        self.embedding: NumericEmbedding | None = None
        n_in = n_features
        if numeric_embedding != "none":
            self.embedding = NumericEmbedding(n_features, numeric_embedding, numeric_columns, bin_edges,
                                              embedding_dim, n_frequencies, frequency_sigma)
            n_in = self.embedding.n_out
        sizes = tuple(hidden_layer_sizes)
        blocks, width = _dense_blocks(n_in, sizes, activation, dropout, dropout_variant, batch_norm)
        self.body = nn.Sequential(*blocks)
        if tabm > 1:
            self.members = _Members(tabm, n_in, width, n_outputs, classification=n_classes is not None)
            # max-norm and spectral norm act on the shared hidden layers, or on each head alone
            hidden = [f"body.{i}" for i, m in enumerate(self.body) if isinstance(m, nn.Linear)]
            setattr(self, CONSTRAINED_ATTR, tuple(hidden) or tuple(f"members.heads.{i}" for i in range(tabm)))
        else:
            if not sizes:  # the head is the only layer: constraints act on it
                setattr(self, CONSTRAINED_ATTR, ("head",))
            self.head = nn.Linear(width, n_outputs)
        _init_weights(self, activation)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        if self.embedding is not None:
            x = self.embedding(x)
        if self.members is None:
            return self.head(self.body(x))
        members = self.members
        k, batch = members.k, x.shape[0]
        hidden = self.body((x.unsqueeze(0) * members.adapters.unsqueeze(1)).flatten(0, 1))
        return members(hidden.unflatten(0, (k, batch)))


class _Members(nn.Module):
    """The per-member parts of a TabM-mini ensemble (Gorishniy et al. 2025) of ``k`` members.

    Member ``i`` sees the inputs times its adapter ``adapters[i]`` (random signs at start, as in
    the paper: the shared layers then see ``k`` different views), goes through the MLP's
    shared hidden blocks, and ends in its own linear head ``heads[i]``. The heads are
    ``nn.Linear`` layers, so penalties, decay and weight noise find them by type; the
    adapters scale the inputs, as a normalization's scale does, and are not decayed.

    In training mode the output is ``(batch, k, n_outputs)``, one prediction per member:
    :class:`~regtune.nn.losses.Loss` averages the members' losses (members train
    independently). In eval mode it is one ``(batch, n_outputs)`` prediction, the ensemble's:
    the log of the members' mean class probability (a logit vector whose softmax is that
    mean), or the members' mean output for regression.
    """

    def __init__(self, k: int, n_in: int, width: int, n_outputs: int, *, classification: bool) -> None:
        super().__init__()
        self.k = k
        self.classification = classification
        self.adapters = nn.Parameter(torch.randint(0, 2, (k, n_in)).float() * 2 - 1)
        self.heads = nn.ModuleList(nn.Linear(width, n_outputs) for _ in range(k))

    def forward(self, hidden: Tensor) -> Tensor:
        """``hidden``: ``(k, batch, width)``, each member's last hidden layer."""
        weight = torch.stack([head.weight for head in self.heads])
        bias = torch.stack([head.bias for head in self.heads])
        out = torch.baddbmm(bias.unsqueeze(1), hidden, weight.transpose(1, 2))  # (k, batch, n_outputs)
        if self.training:
            return out.transpose(0, 1)
        if self.classification:
            return torch.logsumexp(torch.log_softmax(out, dim=-1), dim=0) - math.log(self.k)
        return out.mean(0)


class CNN(nn.Module):
    """3x3 conv blocks with 2x2 pooling, then the MLP's dense blocks; dropout acts on the dense part
    (on the head's inputs with ``hidden_layer_sizes=()``).

    Takes images ``(batch, C, H, W)``, or rows of ``C*H*W`` values.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] | None,
        n_outputs: int,
        conv_channels: tuple[int, ...] = _DEFAULT.conv_channels,
        hidden_layer_sizes: tuple[int, ...] = _DEFAULT.hidden_layer_sizes,
        activation: str = _DEFAULT.activation,
        dropout: float = _DEFAULT.dropout,
        dropout_variant: str = _DEFAULT.dropout_variant,
        batch_norm: str = _DEFAULT.batch_norm,
    ) -> None:
        super().__init__()
        if image_shape is None:
            raise RegConfigError("architecture='cnn' needs images: pass (N, C, H, W) arrays, or set "
                                 "image_shape, e.g. (1, 8, 8) for digits")
        c, h, w = image_shape
        # Unflatten stays first (it keeps the layer indices of saved 0.1 models); forward
        # flattens images first, two free views.
        convs: list[nn.Module] = [nn.Unflatten(1, (c, h, w))]
        for channels in conv_channels:
            convs += layer_block(
                nn.Conv2d(c, channels, 3, padding=1),
                _ACTIVATIONS[activation](),
                norm=nn.BatchNorm2d(channels),
                batch_norm=batch_norm,
                dropout=None,
            )
            if min(h, w) >= 4:
                convs.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c = channels
        convs.append(nn.Flatten())
        self.features = nn.Sequential(*convs)
        blocks, width = _dense_blocks(c * h * w, tuple(hidden_layer_sizes), activation, dropout,
                                      dropout_variant, batch_norm)
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width, n_outputs)
        _init_weights(self, activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(self.features(x.flatten(1))))


def _init_weights(model: nn.Module, activation: str) -> None:
    # SELU's self-normalization needs LeCun-normal weights; torch's default suits the others.
    if activation != "selu":
        return
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="linear")
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------- one way in for every network


@dataclasses.dataclass(frozen=True)
class ModuleFactory:
    """A module class or factory, and what its signature says it takes.

    Build one with :meth:`of`; ``None`` stands for the built-in MLP (or CNN with
    ``architecture="cnn"``), a string ``"path/file.py:Name"`` or ``"package.module:Name"`` is
    imported with :func:`load_module`.
    """

    factory: Callable[..., nn.Module]
    name: str
    parameters: tuple[str, ...]
    required: tuple[str, ...] = ()
    var_keyword: bool = False

    @classmethod
    def of(cls, module: Any = None, architecture: str = "mlp") -> ModuleFactory:
        if module is None:
            module = CNN if architecture == "cnn" else MLP
        elif isinstance(module, str):
            module = load_module(module)
        if isinstance(module, nn.Module):
            name = type(module).__name__
            raise ModuleError(f"module={name}(...) is a module instance; pass the class (module={name}) "
                              f"and its constructor arguments as module__NAME=value, so every fit gets "
                              f"fresh weights")
        if not callable(module):
            raise ModuleError(f"module={module!r} is not an nn.Module class or a factory callable; pass "
                              "e.g. module=MyNet, or 'path/to/file.py:MyNet'")
        name = getattr(module, "__qualname__", None) or getattr(module, "__name__", None) or repr(module)
        try:
            signature = inspect.signature(module)
        except (TypeError, ValueError):  # a builtin without a signature: it takes what it is given
            return cls(module, name, (), (), True)
        params = [p for p in signature.parameters.values()
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        return cls(
            module, name, tuple(p.name for p in params),
            tuple(p.name for p in params if p.default is p.empty),
            any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()),
        )

    @property
    def builtin(self) -> bool:
        return self.factory in (MLP, CNN)

    def takes(self, name: str) -> bool:
        """Whether the signature names ``name`` (a ``**kwargs`` catches only ``module__`` args)."""
        return name in self.parameters

    def receives(self, name: str) -> bool:
        """Whether a routed setting reaches the module: as an argument it takes, or set on the
        layers the technique finds by type (:data:`SET_ON_LAYERS`)."""
        return self.takes(name) or name in SET_ON_LAYERS

    def missing_arguments(self) -> list[str]:
        """The routed settings that cannot reach the module (a search leaves them out)."""
        return [name for name in ROUTED_ARGS if not self.receives(name)]

    def nothing_to_act_on(self, model: nn.Module) -> list[str]:
        """The switches of the regularizers that find nothing to act on in ``model``, built by
        this factory (no dropout layer, no hidden layer, no weights found by type); a routed one
        the factory takes as an argument acts through it."""
        return [spec.switch for spec in REGULARIZERS if spec.acts_on in TARGETS
                and not (spec.routed and self.takes(spec.switch)) and not TARGETS[spec.acts_on](model)]

    def own_parameters(self) -> list[str]:
        """The arguments a user sets with ``module__NAME``: those regtune does not route."""
        return [p for p in self.parameters if p not in SIZE_ARGS and p not in ROUTED_ARGS]

    def unsupported(self, config: RegConfig) -> list[str]:
        """The routed settings of ``config`` this factory cannot take (default values pass, and
        the embedding's settings while ``numeric_embedding`` is off; the built-in MLP ignores
        ``conv_channels``, as it always has, and the CNN neither embeds nor ensembles)."""
        names = [name for name in ROUTED_ARGS
                 if not self.receives(name) and getattr(config, name) != getattr(_DEFAULT, name)
                 and not (name in _EMBEDDING_SETTINGS and config.numeric_embedding == "none")]
        if self.builtin:
            return [name for name in names if name in _MLP_ONLY]
        return names

    def arguments(self, config: RegConfig, sizes: Mapping[str, Any], module_params: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments the factory is called with; a clear error for any mismatch."""
        self.check(config, module_params)
        kwargs = {name: sizes.get(name) for name in SIZE_ARGS if self.takes(name)}
        kwargs.update({name: getattr(config, name) for name in ROUTED_ARGS if self.takes(name)})
        kwargs.update(module_params)
        return kwargs

    def check(self, config: RegConfig, module_params: Mapping[str, Any]) -> None:
        """Raise :class:`ModuleError` unless the factory can be built with ``config`` and these
        ``module__`` arguments: the settings it cannot take, unknown or missing arguments."""
        self.check_params(module_params)
        for name in self.unsupported(config):
            raise ModuleError(
                f"{name}={getattr(config, name)!r} cannot apply to {self.name}: it takes no {name!r} argument"
                f" (it takes {self._listing()}); leave {name} at {getattr(_DEFAULT, name)!r}, or add a {name} "
                "parameter to the module"
            )
        missing = [p for p in self.required if p not in SIZE_ARGS and p not in ROUTED_ARGS and p not in module_params]
        if missing:
            raise ModuleError(f"{self.name} needs {', '.join(map(repr, missing))}, which regtune does not know; "
                              f"pass {', '.join(f'module__{p}=...' for p in missing)}")

    def check_params(self, module_params: Mapping[str, Any]) -> None:
        """``module__NAME`` keys must be arguments the factory takes and regtune does not route."""
        for key in module_params:
            if key in SIZE_ARGS:
                raise ModuleError(f"module__{key}: regtune passes {key} to {self.name} from the data; "
                                  "drop module__" + key)
            if key in ROUTED_ARGS:
                raise ModuleError(f"module__{key}: set the estimator's {key}= instead; regtune passes it "
                                  f"to {self.name}" + ("" if self.takes(key) or key not in SET_ON_LAYERS
                                                       else f" (or to its {SET_ON_LAYERS[key].replace('_', ' ')})"))
            if not self.takes(key) and not self.var_keyword:
                raise ModuleError(f"module__{key}: {self.name} takes no argument {key!r}; it takes "
                                  f"{self._listing()}")

    def build(
        self,
        config: RegConfig,
        sizes: Mapping[str, Any],
        module_params: Mapping[str, Any] | None = None,
        *,
        constrained_layers: Any = None,
    ) -> nn.Module:
        """Call the factory; set what it does not take on the layers that receive it (the
        dropout rate on its dropout layers)."""
        kwargs = self.arguments(config, sizes, module_params or {})
        try:
            model = self.factory(**kwargs)
        except RegtuneError:
            raise
        except Exception as exc:
            shown = ", ".join(f"{k}={_short(v)}" for k, v in kwargs.items())
            raise ModuleError(f"{self.name}({shown}) failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(model, nn.Module):
            raise ModuleError(f"{self.name}(...) returned a {type(model).__name__}; a module factory must "
                              "return a torch.nn.Module")
        for name, acts_on in SET_ON_LAYERS.items():
            if not self.takes(name):
                _ON_LAYERS[acts_on][0](model, getattr(config, name), self.name)
        if not any(p.requires_grad for p in model.parameters()):
            raise ModuleError(f"{self.name} has no trainable parameters; there is nothing to train or regularize")
        if constrained_layers is not None:
            constrain_layers(model, constrained_layers)
        return model

    def written(self, config: RegConfig, sizes: Mapping[str, Any], module_params: Mapping[str, Any]) -> dict[str, Any]:
        """The regularization the module sets itself, as routed settings: the default of each
        routed regularization argument it takes (``dropout``, ``dropout_variant``,
        ``batch_norm``), else the rate of its own dropout layers as its constructor built them
        (the largest, where they differ: every trial sets one rate on all of them).

        ``config`` and ``sizes`` are what a build would get; the module is built once here,
        without regtune setting its dropout rate. Batch-norm layers a module builds without a
        ``batch_norm`` argument are in every trial anyway.
        """
        signature = inspect.signature(self.factory) if self.parameters else None
        out: dict[str, Any] = {}
        for name in _ROUTED_REGULARIZATION:
            if signature is not None and name in signature.parameters:
                default = signature.parameters[name].default
                if default is not inspect.Parameter.empty:
                    out[name] = default
        on_layers = [name for name in SET_ON_LAYERS if not self.takes(name)]
        if on_layers:
            model = self.factory(**self.arguments(config, sizes, module_params))
            for name in on_layers:
                find, (_, read) = TARGETS[SET_ON_LAYERS[name]], _ON_LAYERS[SET_ON_LAYERS[name]]
                value = read(find(model))
                if value is not None:
                    out[name] = value
        return out

    def _listing(self) -> str:
        own = self.own_parameters()
        return ", ".join(own) if own else "no arguments of its own"


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    """Every dropout layer (``nn.Dropout*``, alpha and Gaussian dropout), found by type."""
    return [m for m in model.modules() if isinstance(m, _DROPOUT_TYPES)]


def _dropout_rate(layers: list[nn.Module]) -> float | None:
    """The rate a module's dropout layers were built with (the largest, where they differ)."""
    return max((float(layer.p) for layer in layers), default=None)


def _set_dropout(model: nn.Module, p: float, name: str) -> None:
    layers = dropout_layers(model)
    if p > 0 and not layers:
        raise ModuleError(f"dropout={p!r} cannot apply to {name}: it has no nn.Dropout layer and takes no "
                          "'dropout' argument; add nn.Dropout layers (regtune sets their p) or a dropout "
                          "parameter, or leave dropout=0")
    for layer in layers:
        layer.p = p


#: How each ``acts_on`` of :data:`~regtune.regularizer_table.REGULARIZERS` finds what it acts on
#: in a built module; a technique that finds nothing cannot apply to it. (What acts on the
#: batch, the loss or the loop needs nothing of the module; ``argument`` only its signature.)
TARGETS: dict[str, Callable[[nn.Module], list[Any]]] = {
    "weights": decay_parameters,
    "parameters": lambda model: [p for p in model.parameters() if p.requires_grad],
    "hidden_layers": lambda model: weight_layers(model, include_head=False),
    "dropout_layers": dropout_layers,
}
# Setting a routed technique's switch on the layers it acts on, and reading it back from them.
_ON_LAYERS: dict[str, tuple[Callable[[nn.Module, Any, str], None], Callable[[list[nn.Module]], Any]]] = {
    "dropout_layers": (_set_dropout, _dropout_rate),
}
#: Routed switches a module need not take as an argument: regtune sets them on the layers
#: the technique acts on (switch -> its ``acts_on``).
SET_ON_LAYERS: dict[str, str] = {spec.switch: spec.acts_on for spec in REGULARIZERS
                                 if spec.routed and spec.acts_on in _ON_LAYERS}
# The regularization settings a module may set itself, through its constructor's defaults.
_ROUTED_REGULARIZATION = tuple(name for spec in REGULARIZERS if spec.routed for name in spec.fields)


def check_output(model: nn.Module, X: Tensor, n_outputs: int, name: str) -> None:
    """Run one batch through ``model`` (eval mode, no gradients): it must give ``(batch, n_outputs)``.

    Called right after a network is built, so a module that cannot work fails before training,
    with the module, the batch shape and the expected output in the message.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(X)
    except Exception as exc:
        raise ModuleError(f"{name}'s forward failed on a batch of shape {tuple(X.shape)}: "
                          f"{type(exc).__name__}: {exc}") from exc
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor):
        raise ModuleError(f"{name}'s forward returned a {type(out).__name__}; it must return one tensor of "
                          f"shape (batch, {n_outputs})")
    if tuple(out.shape) != (X.shape[0], n_outputs) or not out.is_floating_point():
        raise ModuleError(f"{name}'s forward returned {out.dtype} of shape {tuple(out.shape)} for a batch of "
                          f"shape {tuple(X.shape)}; expected floats of shape ({X.shape[0]}, {n_outputs}): "
                          "one column per class (classification) or target (regression)")


def build_model(
    config: RegConfig,
    n_features: int,
    n_outputs: int,
    image_shape: tuple[int, int, int] | None = None,
    *,
    module: Any = None,
    module_params: Mapping[str, Any] | None = None,
    n_classes: int | None = None,
    constrained_layers: Any = None,
    numeric_columns: Any = None,
    bin_edges: Any = None,
) -> nn.Module:
    """The network ``module`` (default: the built-in one ``config.architecture`` names) builds."""
    sizes = {"n_features": n_features, "n_outputs": n_outputs, "n_classes": n_classes,
             "image_shape": tuple(image_shape) if image_shape is not None else None,
             "numeric_columns": tuple(int(j) for j in numeric_columns) if numeric_columns is not None else None,
             "bin_edges": bin_edges}
    factory = ModuleFactory.of(module, config.architecture)
    return factory.build(config, sizes, module_params, constrained_layers=constrained_layers)


def build_network(
    config: RegConfig,
    n_features: int,
    n_outputs: int,
    image_shape: tuple[int, int, int] | None,
    regularizers: list[Regularizer],
    **module: Any,
) -> nn.Module:
    """The model with every regularizer's build-time hook applied (e.g. spectral norm);
    ``module`` takes :func:`build_model`'s keywords."""
    model = build_model(config, n_features, n_outputs, image_shape, **module)
    for reg in regularizers:
        model = reg.build(model)
    return model


# ---------------------------------------------------------------- where a module's code lives


def load_module(spec: str) -> Callable[..., nn.Module]:
    """The class or factory ``"path/to/file.py:Name"`` or ``"package.module:Name"`` names.

    A file is imported under a private top-level name (:func:`file_module_name`), the name under
    which a saved model finds it again; this runs the file's code.
    """
    target, sep, attr = str(spec).rpartition(":")
    if not sep or not target or not attr:
        raise ModuleError(f"model {spec!r} must look like path/to/file.py:ClassName or package.module:ClassName")
    if target.endswith(".py") or "/" in target or os.sep in target:
        module = _import_file(Path(target), spec)
    else:
        module = _import_name(target, spec)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            found = sorted(k for k, v in vars(module).items()
                           if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == module.__name__)
            raise ModuleError(f"model {spec!r}: {target} has no {attr!r}; its nn.Module classes: "
                              f"{', '.join(found) or '(none)'}")
        obj = getattr(obj, part)
    return obj


def _import_file(path: Path, spec: str) -> Any:
    if not path.is_file():
        raise ModuleError(f"model {spec!r}: no such file {str(path)!r}")
    resolved = path.resolve()
    name = file_module_name(resolved)
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) and Path(existing.__file__).resolve() == resolved:
        return existing
    loader_spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ModuleError(f"model {spec!r}: importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def file_module_name(path: Path) -> str:
    """The private module name a user's file is imported under (and a saved model finds it by):
    never a name of the standard library or of an installed package (a ``statistics.py`` is
    not ``statistics``), the same for the same file in every process."""
    stem = re.sub(r"\W", "_", path.stem)
    return f"regtune_user_{hashlib.sha256(str(path).encode()).hexdigest()[:10]}_{stem}"


def _import_name(target: str, spec: str) -> Any:
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        # `regtune` is a console script: the working directory is not on sys.path as with python -m.
        cwd = os.getcwd()
        if exc.name != target.split(".")[0] or cwd in sys.path:
            raise ModuleError(f"model {spec!r}: cannot import {target}: {exc}") from exc
        sys.path.append(cwd)  # last: a file here never shadows the standard library or a package
        try:
            return importlib.import_module(target)
        except ModuleNotFoundError as again:
            sys.path.remove(cwd)
            raise ModuleError(f"model {spec!r}: no module named {target!r} here or on the Python path; "
                              "give a file path (path/to/file.py:ClassName) or install the package") from again
    except Exception as exc:
        raise ModuleError(f"model {spec!r}: importing {target} failed: {type(exc).__name__}: {exc}") from exc


def module_reference(module: Any) -> str:
    """``"package.module:Name"``: how a saved model finds ``module`` again, by import."""
    owner, qualname = getattr(module, "__module__", None), getattr(module, "__qualname__", None)
    why = None
    if owner is None or qualname is None:
        why = "it has no importable name (a lambda or a partial?)"
    elif owner == "__main__":
        why = "it is defined in __main__ (a notebook or the script being run)"
    elif "<locals>" in qualname or "<lambda>" in qualname:
        why = "it is defined inside a function"
    else:
        obj: Any = sys.modules.get(owner)
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        if obj is not module:
            why = f"{owner}.{qualname} is not the same object"
    if why:
        name = getattr(module, "__qualname__", None) or repr(module)
        raise ModuleError(f"module {name} cannot be saved by reference: {why}; define it at the top level "
                          "of a .py file and import it from there (or pass --model file.py:ClassName)")
    return f"{owner}:{qualname}"


def module_source(module: Any) -> Path | None:
    """The file or package directory holding ``module``'s code, to ship with a saved model;
    ``None`` for regtune's own networks and for installed packages (torch, site-packages)."""
    owner = getattr(module, "__module__", "") or ""
    top = owner.split(".")[0]
    if top in ("regtune", "torch", "builtins", ""):
        return None
    loaded = sys.modules.get(top)
    file = getattr(loaded, "__file__", None)
    if not file:
        return None
    path = Path(file).resolve()
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    if {"site-packages", "dist-packages"} & set(path.parts) or path.is_relative_to(stdlib):
        return None
    return path.parent if path.name == "__init__.py" else path


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
