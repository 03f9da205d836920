"""The one table of regularizers: every fact about a technique, declared once.

Each :class:`RegularizerSpec` names a technique, the :class:`~regtune.config.RegConfig` fields
it owns with the values they accept, the value that switches it off, its search-space family,
the hook that applies it during training and its report category. The rest derives from
:data:`REGULARIZERS`: RegConfig's validation and ``REGULARIZER_OFF``, the estimators'
``_parameter_constraints``, the YAML families, ``build_regularizers`` and the report's groups.

The table lives at the top of the package, beside :mod:`regtune.config`, because the config
and the search spaces read it and neither may import ``nn/`` (torch). It imports neither torch
nor scikit-learn; hooks are named by path and loaded only when a network is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from regtune.exceptions import RegConfigError

__all__ = [
    "ACTS_ON",
    "BOOL",
    "CATEGORIES",
    "HIDDEN_SIZES",
    "NON_NEGATIVE",
    "POSITIVE",
    "POSITIVE_INT",
    "RATE",
    "REGULARIZERS",
    "SIZES",
    "TASKS",
    "UNIT",
    "Constraint",
    "RegularizerSpec",
    "choice",
]

CATEGORIES = ("penalty", "structural", "data", "noise", "constraint", "training")
#: What a technique acts on, which says what a network must have for it to apply:
#: ``weights`` of its Linear, convolution and embedding layers (found by type); every trainable
#: ``parameter``; its ``hidden_layers`` (Linear and convolution layers but the output layer, or
#: those it names); its ``dropout_layers`` (found by type); an ``argument`` of its constructor
#: (nothing else can place it); the training ``batch``; the ``loss``; the ``training`` loop.
ACTS_ON = ("weights", "parameters", "hidden_layers", "dropout_layers", "argument", "batch", "loss", "training")
TASKS = ("classification", "regression")


@dataclass(frozen=True)
class Constraint:
    """The values one configuration field accepts; checks itself when built.

    Parameters
    ----------
    kind : {"float", "int", "bool", "choice", "sizes"}
        ``sizes`` is a sequence of positive integers, one per layer (a bare int is one layer),
        non-empty unless ``empty``.
    low, high : number, optional
        Bounds of a ``float`` or ``int``; ``None`` leaves that side open-ended.
    closed : {"left", "right", "both", "neither"}
        Which bounds are allowed values, as in :class:`sklearn.utils._param_validation.Interval`.
    choices : tuple of str
        The values of a ``choice``.
    note : str
        Said after the message when a value falls below ``low``, e.g. ``"0 switches it off"``.
    empty : bool
        Whether a ``sizes`` may have no layer at all (``()``: an MLP that is its linear head).
    """

    kind: Literal["float", "int", "bool", "choice", "sizes"]
    low: float | None = None
    high: float | None = None
    closed: Literal["left", "right", "both", "neither"] = "neither"
    choices: tuple[str, ...] = ()
    note: str = ""
    empty: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        numeric = self.kind in ("float", "int")
        if self.kind not in ("float", "int", "bool", "choice", "sizes"):
            raise ValueError(f"kind={self.kind!r} is not float, int, bool, choice or sizes")
        if not numeric and (self.low is not None or self.high is not None):
            raise ValueError(f"a {self.kind} constraint takes no bounds")
        if self.empty and self.kind != "sizes":
            raise ValueError("empty goes with kind='sizes'")
        if (self.kind == "choice") != bool(self.choices):
            raise ValueError("choices go with kind='choice', and it needs at least one")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low={self.low!r} must be <= high={self.high!r}")
        if (self.low is None and self.closed in ("left", "both")) or (
                self.high is None and self.closed in ("right", "both")):
            raise ValueError(f"closed={self.closed!r} includes a bound that is not set")

    def check(self, name: str, value: Any) -> Any:
        """``value`` if ``name`` may take it (``sizes`` as a tuple of int), else RegConfigError."""
        if self.kind == "sizes":
            return _sizes(name, value, self.empty)
        if self.kind == "choice":
            if value not in self.choices:
                raise RegConfigError(f"{name}={value!r} is not allowed; choose one of "
                                     f"{', '.join(map(repr, self.choices))}")
        elif self.kind == "bool":
            if not isinstance(value, (bool, int)):
                raise RegConfigError(f"{name}={value!r} must be True or False")
        elif self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int) or not self._within(value):
                raise RegConfigError(f"{name}={value!r} must be {self.describe()}")
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise RegConfigError(f"{name}={value!r} must be a finite number")
            if not self._within(value):
                below = self.note and self.low is not None and value < self.low
                raise RegConfigError(f"{name}={value!r} must be {self.describe()}"
                                     + (f" ({self.note})" if below else ""))
        return value

    def describe(self) -> str:
        """What is allowed, as it reads after "must be": ``in [0, 1)``, ``>= 0``, ``one of ...``."""
        if self.kind == "choice":
            return "one of " + ", ".join(map(repr, self.choices))
        if self.kind in ("bool", "sizes"):
            if self.kind == "bool":
                return "True or False"
            return f"a {'' if self.empty else 'non-empty '}sequence of positive integers"
        prefix = "an integer " if self.kind == "int" else ""
        left_in, right_in = self.closed in ("left", "both"), self.closed in ("right", "both")
        if self.low is not None and self.high is not None:
            return (f"{prefix}in {'[' if left_in else '('}{self.low:g}, "
                    f"{self.high:g}{']' if right_in else ')'}")
        if self.low is not None:
            return f"{prefix}{'>=' if left_in else '>'} {self.low:g}"
        if self.high is not None:
            return f"{prefix}{'<=' if right_in else '<'} {self.high:g}"
        return "an integer" if self.kind == "int" else "a number"

    def _within(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (value == self.low and self.closed in ("right", "neither"))):
            return False
        return self.high is None or not (
            value > self.high or (value == self.high and self.closed in ("left", "neither")))


def choice(*options: str) -> Constraint:
    """One of ``options``."""
    return Constraint("choice", choices=options)


NON_NEGATIVE = Constraint("float", low=0.0, closed="left", note="0 switches it off")
POSITIVE = Constraint("float", low=0.0, closed="neither")
RATE = Constraint("float", low=0.0, high=1.0, closed="left")
UNIT = Constraint("float", low=0.0, high=1.0, closed="both")
POSITIVE_INT = Constraint("int", low=1, closed="left")
BOOL = Constraint("bool")
SIZES = Constraint("sizes")
HIDDEN_SIZES = Constraint("sizes", empty=True)  # () = no hidden layer: a linear model


@dataclass(frozen=True)
class RegularizerSpec:
    """One regularization technique: its fields, off value, search family, hook and category.

    Parameters
    ----------
    name : str
        The technique and its search family: the YAML key under ``regularizers:`` and the
        trial's ``use_<name>`` switch.
    fields : mapping of str to Constraint
        The RegConfig fields it owns and the values each accepts. The first is the *switch*:
        the field whose ``off`` value turns the technique off.
    off : bool, float or str
        The switch's value when the technique is off (the no-regularization baseline).
    category : str
        One of :data:`CATEGORIES`; groups techniques in reports.
    hook : str, optional
        ``"module.Class"`` under :mod:`regtune.nn.regularizers`: the Regularizer whose
        ``from_config(config, n_classes=..., image_shape=...)`` builds the hook.
        ``None`` when the model, the loss or a callback applies it (dropout, batch norm,
        label smoothing, early stopping).
    switch_on : optional
        The switch's value when a search space turns the family on without sampling the
        switch (``batch_norm: before_activation``); ``None``: the family must sample it.
    tasks : tuple of str
        The tasks it applies to; switching it on for another one is an error.
    cohort : {"member", "shared"}, optional
        Whether a cohort (K trials trained as one batched network) replays it as each member
        trained alone would: ``"member"``, its fields may differ between members; ``"shared"``,
        they shape the network and every member takes the same values; ``None``, a trial with
        it on trains alone.
    acts_on : str
        One of :data:`ACTS_ON`: what it acts on in the network or the training. A user's
        module that has none of it (no dropout layer, no hidden layer, ...) gets no trial of it.
    routed : bool
        Its fields are passed to the network's constructor when the signature names them (the
        built-in networks place dropout and batch norm this way); a module that takes none of
        them is refused any value but the default, unless the technique can act on what it
        finds by type (``acts_on="dropout_layers"``: regtune sets their rate).
    """

    name: str
    fields: Mapping[str, Constraint]
    off: Any
    category: str
    hook: str | None = None
    switch_on: Any = None
    tasks: tuple[str, ...] = TASKS
    cohort: Literal["member", "shared"] | None = None
    acts_on: str = field(kw_only=True)  # no default: every technique says what it needs
    routed: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))
        if self.acts_on not in ACTS_ON:
            raise ValueError(f"acts_on={self.acts_on!r} is not one of {', '.join(ACTS_ON)}")
        if self.acts_on == "argument" and not self.routed:
            raise ValueError(f"{self.name!r} acts through a constructor argument: it must be routed")
        if not self.fields:
            raise ValueError(f"regularizer {self.name!r} owns no field")
        if self.category not in CATEGORIES:
            raise ValueError(f"category={self.category!r} is not one of {', '.join(CATEGORIES)}")
        if not set(self.tasks) <= set(TASKS) or not self.tasks:
            raise ValueError(f"tasks={self.tasks!r} must be some of {', '.join(TASKS)}")
        if self.cohort not in (None, "member", "shared"):
            raise ValueError(f"cohort={self.cohort!r} must be 'member', 'shared' or None")
        if self.hook is not None and self.hook.count(".") != 1:
            raise ValueError(f"hook={self.hook!r} must look like 'module.Class'")
        self.fields[self.switch].check(self.switch, self.off)
        if self.switch_on is not None:
            self.fields[self.switch].check(self.switch, self.switch_on)
            if self.switch_on == self.off:
                raise ValueError(f"switch_on={self.switch_on!r} is the off value")

    @property
    def switch(self) -> str:
        """The RegConfig field that turns the technique on or off."""
        return next(iter(self.fields))

    def is_on(self, config: object) -> bool:
        """Whether ``config`` (a RegConfig or anything with its fields) switches it on."""
        return getattr(config, self.switch) != self.off


def _sizes(name: str, value: Any, empty: bool = False) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise RegConfigError(f"{name}={value!r} must be a sequence of positive integers") from None
    if (not out and not empty) or any(v < 1 for v in out):
        raise RegConfigError(f"{name}={value!r} must be a {'' if empty else 'non-empty '}sequence of positive "
                             "integers")
    return out


# Hooks run in table order, and reports list techniques in it. Where order matters: weight noise
# comes off before decay and penalties read the weights; decay acts before the L1 step puts
# weights on exactly zero; data-side hooks transform the batch in turn; spectral norm is last,
# so its after-step sees the final weights.
REGULARIZERS: tuple[RegularizerSpec, ...] = (
    # Weight side, in the order the step needs.
    RegularizerSpec("weight_noise", {"weight_noise": NON_NEGATIVE}, off=0.0, category="noise",
                    hook="noise.WeightNoise", acts_on="weights", cohort="member"),
    RegularizerSpec("weight_decay", {"weight_decay": NON_NEGATIVE}, off=0.0, category="penalty",
                    hook="penalties.DecoupledWeightDecay", acts_on="weights", cohort="member"),
    RegularizerSpec("l1", {"l1": NON_NEGATIVE}, off=0.0, category="penalty", hook="penalties.L1Penalty",
                    acts_on="weights", cohort="member"),
    RegularizerSpec("l2", {"l2": NON_NEGATIVE}, off=0.0, category="penalty", hook="penalties.L2Penalty",
                    acts_on="weights", cohort="member"),
    RegularizerSpec("elastic_net", {"elastic_net": NON_NEGATIVE, "l1_ratio": UNIT}, off=0.0,
                    category="penalty", hook="penalties.ElasticNetPenalty", acts_on="weights", cohort="member"),
    RegularizerSpec("gradient_noise", {"gradient_noise": NON_NEGATIVE}, off=0.0, category="noise",
                    hook="noise.GradientNoise", acts_on="parameters", cohort="member"),
    # Built into the network by regtune.nn.models.
    RegularizerSpec("dropout", {"dropout": RATE, "dropout_variant": choice("standard", "alpha", "gaussian")},
                    off=0.0, category="structural", acts_on="dropout_layers", routed=True, cohort="shared"),
    RegularizerSpec("batch_norm", {"batch_norm": choice("none", "before_activation", "after_activation")},
                    off="none", switch_on="before_activation", category="structural",
                    acts_on="argument", routed=True, cohort="shared"),
    # Data side: each training batch goes through these in turn.
    RegularizerSpec("augment", {"augment": choice("none", "image", "image_flip")}, off="none",
                    switch_on="image", category="data", hook="augment.ImageAugment", acts_on="batch", cohort="member"),
    RegularizerSpec("mixup", {"mixup_alpha": NON_NEGATIVE}, off=0.0, category="data",
                    hook="augment.Mixup", acts_on="batch", cohort="member"),
    RegularizerSpec("cutmix", {"cutmix_alpha": NON_NEGATIVE}, off=0.0, category="data",
                    hook="augment.CutMix", acts_on="batch", cohort="member"),
    RegularizerSpec("input_noise", {"input_noise": NON_NEGATIVE}, off=0.0, category="noise",
                    hook="noise.InputNoise", acts_on="batch", cohort="member"),
    # The loss reads it.
    RegularizerSpec("label_smoothing", {"label_smoothing": RATE}, off=0.0, category="training",
                    tasks=("classification",), acts_on="loss", cohort="member"),
    # Constraints on the weights after each step.
    RegularizerSpec("max_norm", {"max_norm": NON_NEGATIVE}, off=0.0, category="constraint",
                    hook="constraints.MaxNorm", acts_on="hidden_layers", cohort="member"),
    RegularizerSpec("spectral_norm", {"spectral_norm": BOOL}, off=False, switch_on=True,
                    category="constraint", hook="constraints.SpectralNorm",
                    acts_on="hidden_layers", cohort="shared"),
    # The estimators add an EarlyStopping callback.
    RegularizerSpec("early_stopping", {"early_stopping": BOOL, "patience": POSITIVE_INT}, off=False,
                    switch_on=True, category="training", acts_on="training", cohort="member"),
)
