"""The network estimators' parameter documentation, written once per parameter.

Each parameter has one description here; its default comes from the estimator's signature
(whose defaults are :class:`~regtune.config.RegConfig`'s) and, for a RegConfig field, its type
and accepted values from :data:`~regtune.config.FIELD_CONSTRAINTS`. :func:`parameters_section`
writes the numpydoc "Parameters" section of :class:`~regtune.RegularizedNetClassifier` and
:class:`~regtune.RegularizedNetRegressor` from them, so no default is written down twice.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable, Iterable
from typing import Any

from regtune.config import DEFAULT_LR, FIELD_CONSTRAINTS, PRECISIONS
from regtune.nn.models import ROUTED_ARGS, SIZE_ARGS
from regtune.regularizer_table import Constraint

__all__ = ["DESCRIPTIONS", "format_default", "parameters_section"]


def _choices(options: Iterable[str]) -> str:
    return "{" + ", ".join(f'"{o}"' for o in options) + "}"


#: Parameter -> (type, description). A type of ``None`` is read from the field's constraint.
DESCRIPTIONS: dict[str, tuple[str | None, str]] = {
    "hidden_layer_sizes": (None, """
        Width of each hidden dense layer (after the conv blocks when ``architecture="cnn"``).
        ``()``: no hidden layer, a linear model (see :class:`regtune.nn.models.MLP`)."""),
    "module": ('nn.Module class, callable or str', """
        Your own network: a ``torch.nn.Module`` class or a factory returning one (or
        ``"path/file.py:Name"``, ``"package.module:Name"``). It is called with its
        ``module__NAME`` arguments, plus those of {ROUTED} its signature names.
        ``dropout`` it does not take sets ``p`` of its ``nn.Dropout*`` layers; the others, when
        not at their defaults, must be taken. It gets images as ``(batch, C, H, W)`` and must
        return ``(batch, n_outputs)``. ``None``: the built-in MLP, or CNN with
        ``architecture="cnn"``."""),
    "architecture": (None, """
        The built-in network when ``module`` is ``None``: ``"cnn"`` adds 3x3 conv blocks for
        images."""),
    "conv_channels": (None, """
        Output channels of each conv block (``"cnn"`` only); each block halves the image with
        2x2 max pooling while it is at least 4 pixels wide."""),
    "image_shape": ('tuple of int (C, H, W)', """
        The shape of one image stored as a row of ``C*H*W`` values; inferred from images given
        as ``(N, C, H, W)`` or ``(N, H, W)`` arrays or tensors. With it the network gets
        ``(batch, C, H, W)`` batches, and pixels share one mean and std, so shifts keep their
        meaning. ``"cnn"`` and ``augment`` need images."""),
    "activation": (None, """
        ``"selu"`` also gets LeCun-normal weights; pair it with ``dropout_variant="alpha"``."""),
    "optimizer": (None, """
        ``"sgd"`` has Nesterov momentum 0.9. ``"adamw"`` is torch's AdamW: it decays weights
        (never biases or normalization parameters) by ``weight_decay``; ``"adam"`` with
        ``weight_decay`` makes the same update through a hook."""),
    "lr": ('float', """
        Learning rate: the peak of ``lr_schedule``. ``None``: the optimizer's default
        (:data:`regtune.config.DEFAULT_LR`: {DEFAULT_LR})."""),
    "lr_schedule": (None, """
        How the rate moves over ``max_epochs``, set before every optimizer step: ``"cosine"``
        anneals to 0; ``"onecycle"`` rises from ``lr / 25`` over the first 30% then anneals;
        ``"flat_anneal"`` holds ``lr`` for half the epochs then anneals (cosine)."""),
    "warmup_epochs": (None, """
        Epochs of linear warm-up from ``lr / steps`` to ``lr`` before the schedule starts."""),
    "batch_size": (None, """
        Rows per optimizer step (at most the training rows)."""),
    "max_epochs": (None, """
        Passes over the training rows; early stopping may end training sooner."""),
    "feature_scaling": (None, """
        How each column is scaled, fitted on the rows ``fit`` gets: standardized;
        ``"robust_clip"`` centred on the median, divided by the interquartile range and
        smoothly bounded by ``z / sqrt(1 + (z/3)^2)`` (RealMLP), so outliers end below 3;
        ``"quantile"`` mapped through its quantiles onto a normal. Image rows
        (``image_shape``) always share one standard scale."""),
    "numeric_embedding": (None, """
        How the built-in MLP embeds each column with more than two distinct training values
        (binary and one-hot columns pass through) before its first layer (Gorishniy et al.
        2022): ``"periodic"`` as ``[cos(2 pi c x), sin(2 pi c x)]`` with learnable frequencies
        ``c``; ``"piecewise_linear"`` against quantile bins of the training rows (kept with
        the fitted model); each then a per-column linear map and ReLU. L1, L2, decay, noise
        and constraints act on the Linear layers only, not on the embedding."""),
    "embedding_dim": (None, """
        Width of each embedded column's vector."""),
    "n_frequencies": (None, """
        Frequencies per column of ``"periodic"``."""),
    "frequency_sigma": (None, """
        Standard deviation of the initial ``"periodic"`` frequencies, in units of the scaled
        column: larger fits sharper functions (and overfits sooner)."""),
    "n_bins": (None, """
        Quantile bins per column of ``"piecewise_linear"`` (fewer where a column has fewer
        distinct values)."""),
    "tabm": (None, """
        Members of a TabM-mini ensemble in the built-in MLP (Gorishniy et al. 2025): each
        member scales the (embedded) inputs by its own adapter (initialized to random signs),
        all share the hidden layers, each has its own linear head. Members train
        independently (the loss is the mean of their losses); predictions average their
        probabilities (classification) or outputs (regression). ``1``: the plain MLP. Costs
        about ``tabm`` times the compute of the hidden layers; trains alone, not in a cohort."""),
    "l1": (None, """
        Penalty ``l1 * sum|w|`` on the weights: drives uninformative weights to exactly zero."""),
    "l2": (None, """
        Penalty ``l2 / 2 * sum w^2`` added to the loss (coupled: Adam rescales it per weight)."""),
    "weight_decay": (None, """
        Decoupled (AdamW-style) decay ``w -= lr * weight_decay * w`` at every optimizer step."""),
    "elastic_net": (None, """
        Strength of the elastic-net penalty, which mixes L1 and L2 like sklearn's ``ElasticNet``."""),
    "l1_ratio": (None, """
        The L1 share of ``elastic_net`` (1 = pure L1, 0 = pure L2)."""),
    "dropout": (None, """
        Dropout rate after every hidden dense layer."""),
    "dropout_variant": (None, """
        Inverted dropout, alpha dropout (keeps SELU's mean and variance) or multiplicative
        Gaussian noise."""),
    "batch_norm": (None, """
        Where each hidden layer's batch normalization goes."""),
    "spectral_norm": (None, """
        Divide each hidden layer's weight by its largest singular value (the output layer
        stays free)."""),
    "input_noise": (None, """
        Std of Gaussian noise added to the standardized training inputs."""),
    "weight_noise": (None, """
        Std of Gaussian noise on the weights in each training forward pass, removed before
        the step."""),
    "gradient_noise": (None, """
        Std of Gaussian noise added to the gradients, annealed over the steps."""),
    "mixup_alpha": (None, """
        Mix sample pairs and their targets with a Beta(alpha, alpha) weight (mixup)."""),
    "cutmix_alpha": (None, """
        Like ``mixup_alpha``, but swaps a random share of feature columns between pairs."""),
    "augment": (None, """
        Shifts, small rotations and cutout of ``image_shape`` rows; ``"image_flip"`` adds
        horizontal flips (wrong for digits and text)."""),
    "label_smoothing": (None, """
        Share of each target's probability spread over all classes (classifiers only)."""),
    "max_norm": (None, """
        Upper bound on the L2 norm of each hidden unit's incoming weights, enforced after every
        step (every Linear and convolution layer but the output layer)."""),
    "constrained_layers": ('list of str', """
        Names (as in ``named_modules()``) of the layers ``max_norm`` and ``spectral_norm`` act
        on, for a module whose output layer is not its last Linear or convolution layer."""),
    "early_stopping": (None, """
        Hold out ``validation_fraction`` of the rows, stop after ``patience`` epochs without a
        better validation loss and keep the best epoch's weights."""),
    "validation_fraction": ('float in (0, 1)', """
        Share of the rows held out for early stopping (stratified for classifiers)."""),
    "patience": (None, """
        Epochs without a better validation loss before early stopping ends training."""),
    "device": ('str', """
        Torch device; ``"auto"`` picks CUDA, then Apple MPS, then CPU."""),
    "random_state": ('int, RandomState instance or None', """
        Seeds the validation split, the initial weights, the batch order and every noise."""),
    "verbose": ('int', """
        Print each epoch's history record when > 0."""),
    "callbacks": ('list of Callback', """
        Extra :class:`~regtune.nn.callbacks.Callback` observers of every epoch (logging,
        pruning); early stopping adds its own."""),
    "criterion": ('torch loss class or instance', """
        The training and validation loss, e.g. ``torch.nn.CrossEntropyLoss(weight=...)`` or
        ``torch.nn.HuberLoss``; a class is built without arguments, an instance is copied. It
        gets the network's outputs and, for a classifier, class indices (class probabilities
        under ``mixup_alpha``, ``cutmix_alpha`` or ``label_smoothing``, which therefore need
        ``CrossEntropyLoss`` or a loss with ``soft_targets = True``), for a regressor the
        standardized targets ``(batch, n_outputs)``. It must return one number; with sample
        weights it runs with ``reduction="none"``. ``None``: cross-entropy or mean squared error."""),
    "class_weight": ('dict, "balanced" or None', """
        Classifiers only: weights of the classes, as in scikit-learn (``"balanced"``:
        ``n_samples / (n_classes * count)``), multiplying ``sample_weight`` in the training
        and validation losses and the validation score."""),
    "precision": (_choices(PRECISIONS), """
        Lightning's names: ``"bf16-mixed"`` and ``"16-mixed"`` run the forward pass and the loss
        under ``torch.autocast`` in bfloat16 / float16 (float16 with a gradient scaler); the
        weights, the optimizer and predictions stay float32. ``"16-mixed"`` needs CUDA;
        ``"bf16-mixed"`` works on CPU too (slower there: it saves memory, not time)."""),
    "channels_last": ('bool', """
        On CUDA, 4-D inputs (images) and convolution weights are stored channels-last, which
        tensor cores run faster (with mixed precision); ignored on other devices."""),
    "**module__params": ("", """
        The module's own constructor arguments as ``module__NAME=value`` (skorch's
        convention); ``get_params``, ``set_params`` and ``GridSearchCV`` see them."""),
}


def _field_type(constraint: Constraint) -> str:
    """How numpydoc names the values a RegConfig field accepts."""
    if constraint.kind == "choice":
        return _choices(constraint.choices)
    if constraint.kind == "sizes":
        return "tuple of int"
    if constraint.kind == "float" and constraint.low is not None and constraint.high is not None:
        return f"float {constraint.describe()}"
    return constraint.kind


def format_default(value: Any) -> str:
    """A default as a Python literal: ``0`` for ``0.0``, ``"mlp"`` in double quotes."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value)


def _and(items: list[str]) -> str:
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]


def _text(name: str, text: str) -> str:
    text = textwrap.dedent(text).strip("\n")
    if name == "module":  # what regtune passes a module: the same lists the layers route
        routed = _and([f"``{n}``" for n in (*SIZE_ARGS, *ROUTED_ARGS)])
        text = " ".join(text.replace("{ROUTED}", routed).split())
        # never break inside a ``literal``: its spaces wrap as one word
        text = re.sub(r"``[^`]+``", lambda m: m.group(0).replace(" ", "\0"), text)
        text = textwrap.fill(text, 88).replace("\0", " ")
    if name == "lr":
        by_rate: dict[float, list[str]] = {}
        for optimizer, rate in DEFAULT_LR.items():
            by_rate.setdefault(rate, []).append(optimizer)
        text = text.replace("{DEFAULT_LR}", ", ".join(f"{rate:g} for {_and(names)}" for rate, names in by_rate.items()))
    return textwrap.indent(text, "    ")


def parameters_section(init: Callable[..., Any], indent: str = "    ") -> str:
    """The numpydoc "Parameters" section of ``init``'s parameters, in its signature's order,
    each with its default; raises ``KeyError`` for a parameter without a description."""
    lines = ["Parameters", "----------"]
    for param in inspect.signature(init).parameters.values():
        if param.name == "self":
            continue
        name = f"**{param.name}" if param.kind is param.VAR_KEYWORD else param.name
        kind, text = DESCRIPTIONS[name]
        if kind is None:
            kind = _field_type(FIELD_CONSTRAINTS[name])
        if param.default is not param.empty:
            kind += f", default={format_default(param.default)}"
        lines += [f"{name} : {kind}" if kind else name, _text(name, text)]
    return textwrap.indent("\n".join(lines), indent).lstrip() + "\n"
