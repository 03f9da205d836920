"""Search-space distributions: frozen value objects that validate themselves and suggest."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from regtune.exceptions import SearchSpaceError

if TYPE_CHECKING:
    from optuna.trial import BaseTrial

__all__ = ["CategoricalParam", "FloatParam", "IntParam", "Param", "SearchSpaceError"]


# ---------------------------------------------------------------- distributions


@dataclass(frozen=True)
class FloatParam:
    """A float from ``[low, high]``, uniform, log-uniform (``log``) or on a grid of ``step``.

    Parameters
    ----------
    name : str
        The Optuna param name, a :class:`~regtune.config.RegConfig` field.
    low, high : float
        Inclusive bounds.
    log : bool
        Sample ``log(value)`` uniformly: right for strengths spanning decades.
    step : float, optional
        Grid spacing; cannot be combined with ``log``.
    default : float, optional
        Value of the baseline trial (required for always-sampled params).
    """

    name: str
    low: float
    high: float
    log: bool = False
    step: float | None = None
    default: float | None = None

    def __post_init__(self) -> None:
        _check_numeric(self, integer=False)

    def suggest(self, trial: BaseTrial) -> float:
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)

    def parse(self, value: Any) -> float:
        """A value from ``trial.params`` or a log (where numbers may be text) as a float."""
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise SearchSpaceError(f"{value!r} is not a number", key=self.name) from None
        return _number(self.name, value)

    def to_spec(self) -> dict[str, Any]:
        return _numeric_spec(self, "float")


@dataclass(frozen=True)
class IntParam:
    """An integer from ``[low, high]``; see :class:`FloatParam` (``log`` needs ``low >= 1``)."""

    name: str
    low: int
    high: int
    log: bool = False
    step: int | None = None
    default: int | None = None

    def __post_init__(self) -> None:
        _check_numeric(self, integer=True)

    def suggest(self, trial: BaseTrial) -> int:
        return trial.suggest_int(self.name, self.low, self.high, log=self.log, step=self.step or 1)

    def parse(self, value: Any) -> int:
        """A value from ``trial.params`` or a log as an int (``"3"`` and ``3.0`` are accepted)."""
        try:
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, float) and number.is_integer():
                number = int(number)
        except (ValueError, OverflowError):
            number = value
        return _number(self.name, number, integer=True)

    def to_spec(self) -> dict[str, Any]:
        return _numeric_spec(self, "int")


@dataclass(frozen=True)
class CategoricalParam:
    """One of ``choices`` (text, numbers, booleans or null), as Optuna allows.

    Parameters
    ----------
    name : str
        The Optuna param name, a :class:`~regtune.config.RegConfig` field.
    choices : tuple
        Distinct values, at least one.
    default : optional
        Value of the baseline trial; one of ``choices``.
    """

    name: str
    choices: tuple[Any, ...]
    default: Any = None

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.choices, (list, tuple)) or not self.choices:
            raise SearchSpaceError(f"{self.choices!r} must be a non-empty list", key="choices")
        choices = tuple(self.choices)
        for choice in choices:
            if choice is not None and not isinstance(choice, (bool, int, float, str)):
                raise SearchSpaceError(f"{choice!r} must be text, a number, true/false or null",
                                       key="choices")
            if isinstance(choice, float) and not math.isfinite(choice):
                raise SearchSpaceError(f"{choice!r} must be finite", key="choices")
        if len({(type(c), c) for c in choices}) < len(choices):
            raise SearchSpaceError(f"{list(choices)!r} lists a choice twice", key="choices")
        object.__setattr__(self, "choices", choices)
        if self.default is not None and not self.includes(self.default):
            raise SearchSpaceError(f"{self.default!r} is not one of {list(choices)!r}", key="default")

    def suggest(self, trial: BaseTrial) -> Any:
        return trial.suggest_categorical(self.name, self.choices)

    def includes(self, value: Any) -> bool:
        """Whether ``value`` is a choice: 64 and 64.0 are the same choice, True and 1 are not."""
        return any(_same(choice, value) for choice in self.choices)

    def parse(self, value: Any) -> Any:
        """The choice equal to ``value``, or whose text is ``value`` (logged params are text)."""
        for choice in self.choices:
            if _same(choice, value):
                return choice
        for choice in self.choices:
            if str(choice) == str(value):
                return choice
        raise SearchSpaceError(f"{value!r} is not one of {list(self.choices)!r}", key=self.name)

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"type": "categorical", "choices": list(self.choices)}
        return spec if self.default is None else {**spec, "default": self.default}


Param = FloatParam | IntParam | CategoricalParam


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name or name.startswith("use_"):
        raise SearchSpaceError(f"param name {name!r} must be non-empty text not starting with 'use_'")


def _number(attr: str, value: Any, *, integer: bool = False) -> Any:
    if integer:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SearchSpaceError(f"{value!r} must be an integer", key=attr)
        if abs(value) > 2**53:
            raise SearchSpaceError(f"{value!r} is too large", key=attr)
        return value
    try:
        finite = _is_number(value) and math.isfinite(value)
    except OverflowError:
        finite = False
    if not finite:
        raise SearchSpaceError(f"{value!r} must be a finite number", key=attr)
    return float(value)


def _check_numeric(param: FloatParam | IntParam, *, integer: bool) -> None:
    _check_name(param.name)
    low, high = _number("low", param.low, integer=integer), _number("high", param.high, integer=integer)
    if not isinstance(param.log, bool):
        raise SearchSpaceError(f"{param.log!r} must be true or false", key="log")
    if low > high:
        raise SearchSpaceError(f"low={low!r} must be <= high={high!r}", key="low")
    if not math.isfinite(float(high) - float(low)):
        raise SearchSpaceError(f"[{low!r}, {high!r}] is too wide to sample", key="high")
    if param.log and (low < 1 if integer else low <= 0):
        raise SearchSpaceError(f"log=true needs low > 0{' (and >= 1 for int)' if integer else ''}, "
                               f"got low={low!r}", key="log")
    object.__setattr__(param, "low", low)
    object.__setattr__(param, "high", high)
    if param.step is not None:
        step = _number("step", param.step, integer=integer)
        if step <= 0 or param.log:
            raise SearchSpaceError(f"step={step!r} must be > 0 and cannot be combined with log=true",
                                   key="step")
        object.__setattr__(param, "step", step)
    if param.default is not None:
        default = _number("default", param.default, integer=integer)
        if not low <= default <= high:
            raise SearchSpaceError(f"{default!r} is outside [low, high] = [{low!r}, {high!r}]",
                                   key="default")
        object.__setattr__(param, "default", default)


def _numeric_spec(param: FloatParam | IntParam, kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": kind, "low": param.low, "high": param.high}
    extras = {"log": param.log or None, "step": param.step, "default": param.default}
    return {**spec, **{k: v for k, v in extras.items() if v is not None}}


def _same(a: Any, b: Any) -> bool:
    """Equal, without ``True == 1``: 64 and 64.0 are the same choice, True and 1 are not."""
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


