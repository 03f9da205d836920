"""Search spaces as data: YAML files in ``search_spaces/`` parsed into frozen, validated objects.

A space has always-sampled ``params`` (architecture, optimizer) and regularizer *families*, each
behind a ``use_<family>`` switch whose own params are sampled only when it is on. With every
switch off a trial is the no-regularization baseline, so the search can show which
regularizers help at all, not only how strong they should be.
"""

from __future__ import annotations

import difflib
import importlib.resources
import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regtune.config import REGULARIZER_OFF, RegConfig, RegConfigError, no_regularization
from regtune.regularizer_table import REGULARIZERS, TASKS
from regtune.space.distributions import (
    CategoricalParam,
    FloatParam,
    IntParam,
    Param,
    SearchSpaceError,
)
from regtune.space.yaml import dump_yaml, read_yaml

if TYPE_CHECKING:
    from optuna.trial import BaseTrial

__all__ = [
    "REGULARIZER_FAMILIES",
    "SPACES_DIR",
    "CategoricalParam",
    "FloatParam",
    "IntParam",
    "Param",
    "RegularizerFamily",
    "SearchSpace",
    "SearchSpaceError",
]


def _spaces_dir() -> Path:
    """Where the shipped spaces are: inside the installed package (the wheel carries the
    repository's top-level ``search_spaces/`` as ``regtune/search_spaces/``), else, in an
    editable install or a source checkout, that top-level folder itself."""
    shipped = importlib.resources.files("regtune") / "search_spaces"
    if shipped.is_dir():
        return Path(str(shipped))
    return Path(__file__).resolve().parents[2] / "search_spaces"


SPACES_DIR = _spaces_dir()

# family -> the RegConfig fields it owns; the first one is the switch listed in REGULARIZER_OFF.
REGULARIZER_FAMILIES: dict[str, tuple[str, ...]] = {spec.name: tuple(spec.fields) for spec in REGULARIZERS}
# The switch value of a family that is on but does not sample its switch field.
_SWITCH_ON: dict[str, Any] = {spec.name: spec.switch_on for spec in REGULARIZERS if spec.switch_on is not None}
_TASKS: dict[str, tuple[str, ...]] = {spec.name: spec.tasks for spec in REGULARIZERS}
_DERIVED = ("n_layers", "width")  # -> hidden_layer_sizes = (width,) * n_layers; () when n_layers=0
_MAX_LAYERS = 64


# ---------------------------------------------------------------- families and the space


@dataclass(frozen=True)
class RegularizerFamily:
    """One regularization technique behind the switch ``use_<name>``.

    Its params are sampled only when the switch is on; off maps its switch field to the value in
    ``REGULARIZER_OFF``. A strength param must exclude that off value (``low > 0``), so that "on"
    always means on.

    Parameters
    ----------
    name : str
        A key of ``REGULARIZER_FAMILIES``, e.g. ``"dropout"`` or ``"mixup"``.
    params : tuple of Param
        Distributions over the fields the family owns; none for a plain switch such as
        ``spectral_norm``.
    """

    name: str
    params: tuple[Param, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(self.params))
        if self.name not in REGULARIZER_FAMILIES:
            hint = _hint(self.name, REGULARIZER_FAMILIES)
            raise SearchSpaceError(f"unknown regularizer family {self.name!r}{hint}; "
                                   f"known: {', '.join(REGULARIZER_FAMILIES)}")
        owned, names = REGULARIZER_FAMILIES[self.name], [p.name for p in self.params]
        for param in self.params:
            if param.name not in owned:
                raise SearchSpaceError(f"family {self.name!r} has no param {param.name!r}"
                                       f"{_hint(param.name, owned)}; allowed: {', '.join(owned)}",
                                       key=param.name)
            if names.count(param.name) > 1:
                raise SearchSpaceError("is listed twice", key=param.name)
            _check_values(param, param.name)
        switch, off = self.switch, REGULARIZER_OFF[self.switch]
        if switch in names:
            _check_switch_param(self, self.params[names.index(switch)], off)
        elif self.name not in _SWITCH_ON:
            raise SearchSpaceError(f"needs a {switch!r} param: the strength used when "
                                   f"{self.switch_param} is on")

    @property
    def switch(self) -> str:
        """The RegConfig field that turns this family on or off."""
        return REGULARIZER_FAMILIES[self.name][0]

    @property
    def switch_param(self) -> str:
        """The Optuna param name of the switch."""
        return f"use_{self.name}"


def _check_switch_param(family: RegularizerFamily, param: Param, off: Any) -> None:
    why = f"that is {family.switch} off, which {family.switch_param}=false already covers"
    if isinstance(off, bool):
        raise SearchSpaceError(f"{family.switch} is a true/false switch and takes no param; "
                               f"{family.switch_param} turns it on", key=param.name)
    if isinstance(param, CategoricalParam):
        if param.includes(off):
            raise SearchSpaceError(f"{off!r} must not be a choice: {why}", key=f"{param.name}.choices")
    elif param.low <= off:
        raise SearchSpaceError(f"low={param.low!r} must be > {off!r}: {why}", key=f"{param.name}.low")


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space: what stays fixed, what is always sampled, which regularizers.

    Build one with :meth:`from_yaml`. A regularizer switch set in ``fixed`` holds in every trial
    except the baseline, which is the trial with every ``use_*`` switch off.

    Parameters
    ----------
    name : str
        The file stem, e.g. ``"default"``.
    description : str
        One line for ``regtune spaces``.
    path : Path, optional
        The YAML file it came from.
    fixed : dict
        RegConfig fields (or ``n_layers``/``width``) held constant.
    params : tuple of Param
        Sampled in every trial; each has a ``default`` for the baseline.
    regularizers : tuple of RegularizerFamily
        Switchable families.
    priors : tuple of dict
        Known-good configurations, as trial params, that a study runs right after the
        baseline (before the sampler draws any). Params left out take their default (switches:
        off); :meth:`prior_params` gives them complete.
    module : tuple of Param
        The constructor arguments of a user's module (``--model`` / ``module=``), sampled in
        every trial like ``params``; each is named ``module__NAME``, as the estimators take it
        (the YAML section ``module:`` lists them without the prefix). The baseline uses each
        one's ``default``.
    """

    name: str
    description: str = ""
    path: Path | None = field(default=None, compare=False)
    fixed: dict[str, Any] = field(default_factory=dict, hash=False)
    params: tuple[Param, ...] = ()
    regularizers: tuple[RegularizerFamily, ...] = ()
    priors: tuple[dict[str, Any], ...] = field(default=(), hash=False)
    skipped: tuple[RegularizerFamily, ...] = field(default=(), compare=False, repr=False)
    module: tuple[Param, ...] = ()

    def __post_init__(self) -> None:
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(self.fixed).items()}
        object.__setattr__(self, "fixed", fixed)
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "regularizers", tuple(self.regularizers))
        object.__setattr__(self, "module", tuple(self.module))
        if not isinstance(self.priors, (list, tuple)):
            raise SearchSpaceError(f"{self.priors!r} must be a list of mappings of params", key="priors")
        object.__setattr__(self, "priors", tuple(self.priors))
        if not isinstance(self.description, str):
            raise SearchSpaceError(f"{self.description!r} must be text", key="description")
        _validate(self)

    @classmethod
    def from_yaml(cls, name_or_path: str | os.PathLike[str]) -> SearchSpace:
        """Load a shipped space by name (``"default"``) or any YAML file by path."""
        document = read_yaml(_resolve(name_or_path))
        try:
            return _from_data(document.data, document.path)
        except SearchSpaceError as err:
            raise document.locate(err) from None

    @staticmethod
    def available() -> list[str]:
        """Names of the spaces shipped in ``search_spaces/``."""
        return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))

    def for_task(self, task: str) -> SearchSpace:
        """The space a study of ``task`` searches: families that do not apply to it are left out.

        A regression study never samples ``label_smoothing``, so it neither trains nor reports
        a technique it cannot use. Params of the left-out families (in trials of studies that
        sampled them anyway) are ignored by :meth:`to_config`: those trials trained without them.
        """
        if task not in TASKS:
            raise SearchSpaceError(f"task {task!r} is unknown; use {' or '.join(map(repr, TASKS))}")
        for spec in REGULARIZERS:
            value = self.fixed.get(spec.switch, spec.off)
            if task not in spec.tasks and value != spec.off:
                raise SearchSpaceError(f"{spec.switch}={value!r} applies to {' and '.join(spec.tasks)} only, but "
                                       f"this study is {task}; remove it from 'fixed' (under 'regularizers' a "
                                       "study of another task skips it)", path=self.path, key=f"fixed.{spec.switch}")
        keep = tuple(f for f in self.regularizers if task in _TASKS[f.name])
        skipped = tuple(f for f in self.regularizers if task not in _TASKS[f.name])
        if not skipped:
            return self
        if not keep and not self.params:
            names = ", ".join(f.name for f in skipped)
            raise SearchSpaceError(f"has nothing to search for {task}: {names} apply to another task only; "
                                   "add params or regularizers that apply to it", path=self.path)
        dropped = {f.switch_param for f in skipped} | {p.name for f in skipped for p in f.params}
        priors = tuple({k: v for k, v in prior.items() if k not in dropped} if isinstance(prior, Mapping) else prior
                       for prior in self.priors)
        return replace(self, regularizers=keep, priors=priors, skipped=(*self.skipped, *skipped))

    def for_module(self, unsupported: Collection[str]) -> SearchSpace:
        """The space a user's module can take: what it does not take is left out.

        ``unsupported`` names settings the module takes no argument for (``batch_norm``,
        ``dropout_variant``, ``hidden_layer_sizes``, ...; ``dropout`` when it has no dropout
        layer either): their families, params and fixed values go, and ``hidden_layer_sizes``
        takes ``n_layers`` and ``width`` with it. So no trial asks a module for what it cannot do.
        """
        drop = set(unsupported) | {"architecture"}
        if "hidden_layer_sizes" in drop:
            drop |= set(_DERIVED)
        keep = tuple(RegularizerFamily(f.name, tuple(p for p in f.params if p.name not in drop))
                     for f in self.regularizers if f.switch not in drop)
        skipped = tuple(f for f in self.regularizers if f.switch in drop)
        left = {f.switch_param for f in skipped} | {p.name for f in self.regularizers for p in f.params
                                                   if p.name in drop or f in skipped}
        priors = tuple({k: v for k, v in prior.items() if k not in left and k not in drop}
                       if isinstance(prior, Mapping) else prior for prior in self.priors)
        return replace(self, fixed={k: v for k, v in self.fixed.items() if k not in drop},
                       params=tuple(p for p in self.params if p.name not in drop), regularizers=keep,
                       priors=priors, skipped=(*self.skipped, *skipped))

    def families(self) -> list[str]:
        return [family.name for family in self.regularizers]

    def sample(self, trial: BaseTrial) -> RegConfig:
        """Suggest this trial's values (a family's params only when its switch is on)."""
        values: dict[str, Any] = {p.name: p.suggest(trial) for p in self.params}
        values.update({p.name: p.suggest(trial) for p in self.module})
        for family in self.regularizers:
            values[family.switch_param] = trial.suggest_categorical(family.switch_param, [False, True])
            if values[family.switch_param]:
                values.update({p.name: p.suggest(trial) for p in family.params})
        return self.to_config(values)

    def to_config(self, params: Mapping[str, Any]) -> RegConfig:
        """The RegConfig a trial with these ``params`` trained (``study.best_params``, a log).

        Missing switches count as off and missing always-sampled params take their default.
        """
        try:
            return self._to_config(params)
        except SearchSpaceError as err:
            raise SearchSpaceError(err.detail, path=self.path, key=err.key) from None

    def _to_config(self, params: Mapping[str, Any]) -> RegConfig:
        ignored = {f.switch_param for f in self.skipped} | {p.name for f in self.skipped for p in f.params}
        ignored |= {p.name for p in self.module}  # the module's own: module_params() has them
        params = {k: v for k, v in params.items() if k not in ignored}
        optional = {p.name: p for f in self.regularizers for p in f.params}
        known = {p.name for p in self.params} | {f.switch_param for f in self.regularizers}
        unknown = sorted(set(params) - known - optional.keys())
        if unknown:
            raise SearchSpaceError(f"unknown params {unknown}; this space has: "
                                   f"{', '.join(sorted(known | optional.keys()))}")
        values = dict(self.fixed)
        values.update({p.name: p.parse(params[p.name]) if p.name in params else p.default
                       for p in self.params})
        on = [f for f in self.regularizers
              if _switch(params.get(f.switch_param, False), f.switch_param)]
        for family in on:
            for param in family.params:
                if param.name not in params and param.default is None:
                    raise SearchSpaceError(f"{family.switch_param} is on but {param.name!r} is missing")
                given = param.name in params
                values[param.name] = param.parse(params[param.name]) if given else param.default
            if all(p.name != family.switch for p in family.params):
                values[family.switch] = _SWITCH_ON[family.name]
        try:
            config = RegConfig(**{**REGULARIZER_OFF, **_config_fields(values)})
        except (TypeError, ValueError) as err:
            detail = f"params {dict(params)!r} make no valid configuration: {err}"
            raise SearchSpaceError(detail) from None
        return config if on else no_regularization(config)

    def baseline_params(self) -> dict[str, Any]:
        """Params of the no-regularization trial: ``study.enqueue_trial(space.baseline_params())``."""
        return {**{p.name: p.default for p in self.params},
                **{p.name: p.default for p in self.module},
                **{f.switch_param: False for f in self.regularizers}}

    def as_written_params(self, written: Mapping[str, Any]) -> dict[str, Any] | None:
        """Params of the trial of a user's network as written: the baseline's, with the families
        whose settings the module sets itself (``written``, e.g. ``{"dropout": 0.25}``) on at
        those values. ``None`` where that is the baseline (nothing written, or nothing this
        space can express).

        A written value outside its param's range is kept: it is what the user wrote (Optuna
        warns and takes it, as for any enqueued value).
        """
        params, changed = self.baseline_params(), False
        for family in self.regularizers:
            if written.get(family.switch, REGULARIZER_OFF[family.switch]) == REGULARIZER_OFF[family.switch]:
                continue
            values = {p.name: written[p.name] if p.name in written else p.default for p in family.params}
            if any(v is None for v in values.values()):
                continue  # a strength the module does not say and the space has no default for
            params.update(values, **{family.switch_param: True})
            changed = True
        return params if changed else None

    def module_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The module's own arguments among a trial's ``params``, as ``module__NAME`` estimator
        parameters (defaults for those missing)."""
        return {p.name: p.parse(params[p.name]) if p.name in params else p.default for p in self.module}

    def prior_params(self) -> list[dict[str, Any]]:
        """Each prior as complete trial params (every param and switch set), in file order.

        Complete, because Optuna samples any param an enqueued trial leaves out: a prior is one
        exact configuration, not a region. Priors that come out the same (two that differ only in
        settings a user's module has no argument for, which :meth:`for_module` drops) are one
        trial: the first of them.
        """
        out: list[dict[str, Any]] = []
        for i, prior in enumerate(self.priors):
            params = _complete_prior(self, prior, i)
            if params not in out:
                out.append(params)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The space in the YAML schema, resolved (defaults filled in, no comments)."""
        return {
            "description": self.description,
            "fixed": {k: list(v) if isinstance(v, tuple) else v for k, v in self.fixed.items()},
            "params": {p.name: p.to_spec() for p in self.params},
            "regularizers": {f.name: {p.name: p.to_spec() for p in f.params}
                             for f in self.regularizers},
            **({"priors": [dict(prior) for prior in self.priors]} if self.priors else {}),
            **({"module": {p.name[len(_MODULE):]: p.to_spec() for p in self.module}} if self.module else {}),
        }

    def to_yaml_text(self) -> str:
        """YAML that :meth:`from_yaml` reads back into an equal space (``regtune spaces NAME``)."""
        data = self.to_dict()
        data["regularizers"] = {f: ps or None for f, ps in data["regularizers"].items()}
        return dump_yaml(data)

    def summary(self) -> dict[str, Any]:
        """One row of ``regtune spaces``; ``params`` counts every dimension, switches included."""
        n_params = len(self.params) + len(self.module) + sum(1 + len(f.params) for f in self.regularizers)
        return {"name": self.name, "description": self.description, "params": n_params,
                "families": self.families(), "module": [p.name[len(_MODULE):] for p in self.module]}


def _validate(space: SearchSpace) -> None:
    where: dict[str, str] = {}

    def claim(name: str, key: str) -> None:
        if name in where:
            raise SearchSpaceError(f"{name!r} is already set at {where[name]}; "
                                   "set each field in one place", key=key)
        where[name] = key

    for name, value in space.fixed.items():
        _check_known(name, f"fixed.{name}")
        claim(name, f"fixed.{name}")
        _check_value(name, value, f"fixed.{name}")
    for param in space.params:
        key = f"params.{param.name}"
        _check_known(param.name, key)
        family = next((f for f, owned in REGULARIZER_FAMILIES.items() if owned[0] == param.name), None)
        if family:
            raise SearchSpaceError(f"{param.name!r} is a regularizer: declare it under 'regularizers: "
                                   f"{family}:' so the baseline can switch it off", key=key)
        if param.default is None:
            raise SearchSpaceError("needs a 'default' (the baseline trial uses it)", key=key)
        claim(param.name, key)
        _check_values(param, key)
    for param in space.module:
        name = param.name[len(_MODULE):]
        key = f"module.{name}"
        if not param.name.startswith(_MODULE) or not name.isidentifier():
            raise SearchSpaceError(f"{name!r} must be the name of an argument of the module", key=key)
        if param.default is None:
            raise SearchSpaceError("needs a 'default' (the baseline trial uses it)", key=key)
        claim(param.name, key)
    for family in space.regularizers:
        key = f"regularizers.{family.name}"
        claim(f"use_{family.name}", key)
        claim(family.switch, key)
        for param in family.params:
            if param.name != family.switch:
                claim(param.name, f"{key}.{param.name}")
    derived = [name for name in _DERIVED if name in where]
    if len(derived) == 1:
        missing = next(name for name in _DERIVED if name not in where)
        raise SearchSpaceError(f"needs {missing!r} too: hidden_layer_sizes = (width,) * n_layers",
                               key=where[derived[0]])
    if derived and "hidden_layer_sizes" in where:
        raise SearchSpaceError("n_layers and width replace hidden_layer_sizes; set one or the other",
                               key=where["hidden_layer_sizes"])
    fixed_on = [k for k, v in space.fixed.items() if k in REGULARIZER_OFF and v != REGULARIZER_OFF[k]]
    if fixed_on and not space.regularizers:
        raise SearchSpaceError("a fixed regularizer needs at least one family under 'regularizers': "
                               "with none, every trial is the no-regularization baseline",
                               key=f"fixed.{fixed_on[0]}")
    if not space.params and not space.regularizers:
        raise SearchSpaceError("has no params and no regularizers, so every trial would be the same "
                               "configuration; add entries under 'params:' or 'regularizers:' "
                               "(`regtune spaces default` prints an example)")
    try:
        space.to_config(space.baseline_params())
    except SearchSpaceError as err:
        raise SearchSpaceError(err.detail, key="fixed") from None
    space.prior_params()


def _complete_prior(space: SearchSpace, prior: Any, index: int) -> dict[str, Any]:
    """``prior`` with every param and switch filled in, each value checked against its param.

    Errors carry the key ``priors.<index>[.<param>]``, which the YAML reader maps to a line.
    """
    where = f"priors.{index}"
    if not isinstance(prior, Mapping):
        raise SearchSpaceError(f"{prior!r} must be a mapping of params such as "
                               "{use_dropout: true, dropout: 0.15}", key=where)
    optional = {p.name for f in space.regularizers for p in f.params}
    known = {p.name for p in (*space.params, *space.module)} | {f.switch_param for f in space.regularizers} | optional
    unknown = [name for name in prior if name not in known]
    if unknown:
        raise SearchSpaceError(f"unknown param {unknown[0]!r}{_hint(unknown[0], known)}; "
                               f"this space has: {', '.join(sorted(known))}", key=f"{where}.{unknown[0]}")

    def value(param: Param) -> Any:
        if param.name not in prior:
            if param.default is None:
                raise SearchSpaceError(f"{param.name!r} needs a value (it has no default)", key=where)
            return param.default
        key = f"{where}.{param.name}"
        try:
            parsed = param.parse(prior[param.name])
        except SearchSpaceError as err:
            raise SearchSpaceError(err.detail, key=key) from None
        if not isinstance(param, CategoricalParam) and not param.low <= parsed <= param.high:
            raise SearchSpaceError(f"{param.name}={parsed!r} is outside its range "
                                   f"[{param.low!r}, {param.high!r}]", key=key)
        return parsed

    out = {p.name: value(p) for p in (*space.params, *space.module)}
    for family in space.regularizers:
        on = prior.get(family.switch_param, False)
        if not isinstance(on, bool):
            raise SearchSpaceError(f"{family.switch_param}={on!r} must be true or false",
                                   key=f"{where}.{family.switch_param}")
        out[family.switch_param] = on
        for param in family.params:
            if on:
                out[param.name] = value(param)
            elif param.name in prior:
                raise SearchSpaceError(f"{param.name!r} is set but {family.switch_param} is not true; "
                                       f"add {family.switch_param}: true or drop {param.name!r}",
                                       key=f"{where}.{param.name}")
    try:
        space.to_config(out)
    except SearchSpaceError as err:
        raise SearchSpaceError(err.detail, key=where) from None
    return out


def _check_known(name: str, key: str) -> None:
    fields = RegConfig.field_names()
    if name not in fields and name not in _DERIVED:
        raise SearchSpaceError(f"unknown param {name!r}{_hint(name, fields + _DERIVED)}; a param is a "
                               f"RegConfig field or one of {', '.join(_DERIVED)}", key=key)


def _check_values(param: Param, key: str) -> None:
    """Every value the param can take must make a valid RegConfig (ranges are intervals)."""
    if isinstance(param, CategoricalParam):
        attrs = [("choices", c) for c in param.choices]
    else:
        attrs = [("low", param.low), ("high", param.high)]
    for attr, value in [*attrs, ("default", param.default)]:
        if value is not None or attr == "choices":
            _check_value(param.name, value, f"{key}.{attr}")


def _check_value(name: str, value: Any, key: str) -> None:
    try:
        RegConfig(**_config_fields({name: value}))
    except (TypeError, ValueError) as err:
        raise SearchSpaceError(str(err), key=key) from None


def _config_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """Space values -> RegConfig keywords (derived ``n_layers``/``width``, ``"16-32"`` sizes).

    Optuna choices cannot be tuples, so tuple fields are sampled as text such as ``"64-32"``.
    """
    out = {k: v for k, v in values.items() if k not in _DERIVED}
    if "n_layers" in values or "width" in values:
        n_layers, width = values.get("n_layers", 1), values.get("width", 1)
        # n_layers=0: no hidden layer, the MLP is its linear head (logistic / linear regression).
        for label, value, low in (("n_layers", n_layers, 0), ("width", width, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise RegConfigError(f"{label}={value!r} must be an integer >= {low}")
        if n_layers > _MAX_LAYERS:
            raise RegConfigError(f"n_layers={n_layers!r} must be <= {_MAX_LAYERS}")
        out["hidden_layer_sizes"] = (width,) * n_layers
    for name in ("hidden_layer_sizes", "conv_channels"):
        sizes = out.get(name)
        if isinstance(sizes, str):
            if not re.fullmatch(r"[0-9]+(-[0-9]+)*", sizes):
                raise RegConfigError(f"{name}={sizes!r} must look like '16-32' (one size per layer)")
            out[name] = tuple(int(size) for size in sizes.split("-"))
    return out


def _switch(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise SearchSpaceError(f"{name}={value!r} must be true or false")


def _hint(name: str, options: Any) -> str:
    close = difflib.get_close_matches(str(name), list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---------------------------------------------------------------- from YAML data

_TOP_KEYS = ("description", "fixed", "params", "regularizers", "priors", "module")
_MODULE = "module__"  # the estimators' prefix of a module's own arguments
_NUMERIC_KEYS = ("type", "low", "high", "log", "step", "default")
_SPEC_KEYS = {
    "float": _NUMERIC_KEYS,
    "int": _NUMERIC_KEYS,
    "categorical": ("type", "choices", "default"),
}
_PARAM_CLASSES: dict[str, Callable[..., Param]] = {
    "float": FloatParam, "int": IntParam, "categorical": CategoricalParam,
}


def _resolve(name_or_path: str | os.PathLike[str]) -> Path:
    text = os.fspath(name_or_path)
    available = SearchSpace.available()
    if not isinstance(name_or_path, os.PathLike) and text in available:
        return SPACES_DIR / f"{text}.yaml"
    path = Path(text)
    looks_like_path = isinstance(name_or_path, os.PathLike) or "/" in text or os.sep in text \
        or text.endswith((".yaml", ".yml"))
    if path.is_file():
        return path
    if looks_like_path:
        raise SearchSpaceError(f"no such file: {text}", path=path)
    raise SearchSpaceError(f"no space named {text!r}{_hint(text, available)}; available: "
                           f"{', '.join(available) or '(none)'}, or give a path to a .yaml file")


def _from_data(data: Any, path: Path) -> SearchSpace:
    """The space a YAML file's data describes; errors carry the dotted key of the culprit."""
    if data is None:
        raise SearchSpaceError(f"the file is empty; expected the keys {', '.join(_TOP_KEYS)}")
    if not isinstance(data, dict):
        raise SearchSpaceError(f"expected a mapping with the keys {', '.join(_TOP_KEYS)}", line=1)
    _check_keys(data, _TOP_KEYS, "")
    families = []
    for family, spec in _section(data, "regularizers").items():
        key = f"regularizers.{family}"
        spec = {} if spec is None else spec
        if not isinstance(spec, dict):
            raise SearchSpaceError("expected a mapping of the family's params (empty for a plain "
                                   "switch)", key=key)
        params = tuple(_param(name, value, f"{key}.{name}") for name, value in spec.items())
        families.append(_within(key, lambda f=family, p=params: RegularizerFamily(f, p)))
    return SearchSpace(
        name=path.stem,
        description="" if data.get("description") is None else data["description"],
        path=path,
        fixed=_section(data, "fixed"),
        params=tuple(_param(name, spec, f"params.{name}")
                     for name, spec in _section(data, "params").items()),
        regularizers=tuple(families),
        priors=() if data.get("priors") is None else data["priors"],
        module=tuple(_param(f"{_MODULE}{name}", spec, f"module.{name}")
                     for name, spec in _section(data, "module").items()),
    )


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SearchSpaceError(f"expected a mapping, got {value!r}", key=name)
    return value


def _check_keys(spec: dict[str, Any], allowed: tuple[str, ...], key: str) -> None:
    for name in spec:
        if name not in allowed:
            detail = f"unknown key {name!r}{_hint(name, allowed)}; allowed: {', '.join(allowed)}"
            raise SearchSpaceError(detail, key=f"{key}.{name}" if key else name)


def _param(name: str, spec: Any, key: str) -> Param:
    if not isinstance(spec, dict):
        raise SearchSpaceError(f"{spec!r} must be a mapping such as "
                               "{type: float, low: 0.1, high: 0.5}", key=key)
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in _SPEC_KEYS:
        raise SearchSpaceError(f"type={kind!r} must be one of {', '.join(_SPEC_KEYS)}",
                               key=f"{key}.type" if "type" in spec else key)
    _check_keys(spec, _SPEC_KEYS[kind], key)
    required = ("choices",) if kind == "categorical" else ("low", "high")
    for needed in required:
        if needed not in spec:
            raise SearchSpaceError(f"{kind} param needs {needed!r}", key=key)
    cls = _PARAM_CLASSES[kind]
    return _within(key, lambda: cls(name, **{k: v for k, v in spec.items() if k != "type"}))


def _within(key: str, build: Callable[[], Any]) -> Any:
    try:
        return build()
    except SearchSpaceError as err:
        raise err.within(key) from None
