"""Checks on a user's table: column names, cells, the target, and the task the target poses.

Everything the user hands in is checked once, so the rest of regtune can assume finite numbers
and a usable target. Missing feature values in numeric columns are allowed (the preprocessor
fills them); missing or infinite target values, infinite feature values and numbers beyond the
float32 range (which a network cannot hold) raise :class:`DataError` with one sentence that
names the thing, the value and the fix.

The value rules (:func:`is_numeric`, :data:`FLOAT32_MAX`) and the wording of bad values
(:func:`show`, :func:`describe`, :func:`listing`) live here, so that loading, splitting and
preprocessing speak about values the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pandas as pd

from regtune.exceptions import DataError

__all__ = [
    "FLOAT32_MAX",
    "MIN_CLASS_ROWS",
    "TASKS",
    "Task",
    "check_cells",
    "check_names",
    "check_target",
    "check_target_spread",
    "check_task",
    "describe",
    "infer_task",
    "is_numeric",
    "listing",
    "row_locator",
    "show",
]

Task = Literal["classification", "regression"]
TASKS: tuple[str, ...] = ("classification", "regression")
MAX_CLASSES = 20  # a whole-number target with more distinct values is a regression target
MIN_ROWS_PER_CLASS = 10  # ... and so is one whose values repeat fewer times on average
MIN_CLASS_ROWS = 3  # a stratified train/validation/test split needs this many rows per class
FLOAT32_MAX = float(np.finfo(np.float32).max)  # networks compute in float32
GARBAGE_SHARE = 0.1  # at most this share of a mostly numeric text column may be non-numbers
MAX_TARGET_SPREAD = 1e7  # float32 keeps ~7 digits: a target value this many spreads out swamps the rest


def check_task(task: Any, allow_none: bool = False) -> None:
    """Raise unless ``task`` is one of :data:`TASKS` (or ``None`` where that means "guess")."""
    if not (task in TASKS or (allow_none and task is None)):
        raise DataError(f"task {task!r} is unknown; use 'classification' or 'regression'")


def check_names(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The frame with string column names; raise if it is empty or a name repeats."""
    if frame.shape[1] == 0 or len(frame) == 0:
        header = ", ".join(map(str, frame.columns[:5]))
        what = f"a header ({header}) but no data rows" if frame.shape[1] else "no columns"
        raise DataError(f"{name} has {what}; it needs a header row and at least one data row")
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    if frame.columns.duplicated().any():
        dup = frame.columns[frame.columns.duplicated()][0]
        raise DataError(f"{name} has the column '{dup}' more than once; rename the duplicates")
    return frame


def row_locator(frame: pd.DataFrame, line_offset: int | None) -> Callable[[int], str]:
    """Describe a row position as a file line, or as the frame's row label."""
    if line_offset is not None:
        return lambda pos: f"line {pos + line_offset}"
    return lambda pos: f"row {show(frame.index[pos])}"


def check_cells(
    frame: pd.DataFrame, name: str, where: Callable[[int], str], target: str | None
) -> pd.DataFrame:
    """Numbers typed as text become numbers; garbage and infinite features raise."""
    for col in frame.columns:
        frame[col] = _numeric_text(frame[col], f"{name}: column '{col}'", where)
        if col != target and is_numeric(frame[col]):
            bad = _first_unusable(frame[col].to_numpy("float64", na_value=np.nan))
            if bad is not None:
                raise DataError(
                    f"{name}: column '{col}' has {describe(frame[col].iloc[bad])} at "
                    f"{where(bad)}; replace it with a finite number or leave the cell empty"
                )
    return frame


def _numeric_text(col: pd.Series, label: str, where: Callable[[int], str]) -> pd.Series:
    """Turn text of numbers into numbers; raise on numbers with a few stray strings."""
    if not (pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col)):
        return col
    # only text and number cells may parse; bools, bytes, dates are categories
    parseable = col.map(lambda v: v if _is_text_or_number(v) else "?")
    numbers = pd.to_numeric(parseable, errors="coerce")
    present = col.notna().to_numpy()
    strays = np.flatnonzero(present & numbers.isna().to_numpy())
    n_present = int(present.sum())
    if strays.size == 0 and n_present:
        return numbers.astype("float64")
    mostly_numbers = 2 * (n_present - strays.size) > n_present
    if mostly_numbers and strays.size <= max(1, GARBAGE_SHARE * n_present):
        raise DataError(
            f"{label} is numeric but has the non-numeric value {show(col.iloc[strays[0]])} "
            f"at {where(strays[0])}; correct that cell or leave it empty to mark it missing"
        )
    return col


def check_target(
    y: pd.Series, label: str, where: Callable[[int], str], task: Task | None
) -> tuple[pd.Series, Task]:
    """The target in the dtype its task trains on, and the task (guessed when ``None``)."""
    check_task(task, allow_none=True)
    missing = np.flatnonzero(y.isna().to_numpy())
    if missing.size:
        raise DataError(
            f"{label} has {missing.size} missing value(s), the first at {where(missing[0])}; "
            "drop those rows or fill in the target"
        )
    numeric = is_numeric(y)
    bad = _first_unusable(y.to_numpy("float64")) if numeric else None
    if bad is not None:
        raise DataError(
            f"{label} has {describe(y.iloc[bad])} at {where(bad)}; drop that row or fix the value"
        )
    if y.nunique() < 2:
        raise DataError(
            f"{label} has the single value {show(y.iloc[0])} in every row; "
            "a model needs at least two different target values"
        )
    task = infer_task(y) if task is None else task
    if task == "regression":
        if not numeric:
            raise DataError(
                f"{label} holds non-numeric values such as {show(y.iloc[0])}, so it cannot be "
                "a regression target; use task='classification'"
            )
        y = y.astype("float64")
        check_target_spread(y.to_numpy(), label, where)
        return y, task
    if numeric and pd.api.types.is_float_dtype(y) and (y.to_numpy("float64") % 1 == 0).all():
        y = y.astype("int64")
    if isinstance(y.dtype, pd.CategoricalDtype):
        y = y.cat.remove_unused_categories()
    counts = y.value_counts()
    rare = counts[counts < MIN_CLASS_ROWS]
    if len(rare):
        shown = ", ".join(f"{show(k)} ({v} row(s))" for k, v in rare.head(5).items())
        more = f" and {len(rare) - 5} more" if len(rare) > 5 else ""
        raise DataError(
            f"{label} has {len(counts)} classes in {len(y)} rows, and a stratified "
            f"train/validation/test split needs {MIN_CLASS_ROWS} rows per class, which these "
            f"lack: {shown}{more}; drop or merge rare classes, or use task='regression'"
        )
    return y, task


def check_target_spread(y: np.ndarray, label: str, where: Callable[[int], str]) -> None:
    """Raise if one regression target value sits absurdly far from all the others.

    A value :data:`MAX_TARGET_SPREAD` times the typical spread (the interquartile range, or
    the mean absolute deviation where half the values tie) away from the median is a typo or a
    sentinel such as 1e20: its squared error swamps every other row, overflows float32 in the
    folds that did not train on it, and the trials fail with NaN scores that point nowhere.
    """
    values = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    for column in values.T:
        median = np.median(column)
        q25, q75 = np.percentile(column, [25, 75])
        spread = q75 - q25 if q75 > q25 else np.mean(np.abs(column - median))
        if not spread > 0:
            continue
        distance = np.abs(column - median) / spread
        worst = int(np.argmax(distance))
        if distance[worst] > MAX_TARGET_SPREAD:
            raise DataError(
                f"{label} has the value {show(column[worst])} at {where(worst)}, {distance[worst]:.1e} "
                f"times the spread of the values ({spread:.4g}) away from their median ({median:.4g}); "
                "a network cannot fit it and the other rows together: fix or drop that row, "
                "or transform the target (e.g. log)"
            )


def infer_task(y: Any) -> Task:
    """Guess whether a target asks for classification or regression.

    Non-numeric (text, categorical, boolean) targets are classification. A numeric target is
    classification when all its values are whole numbers and either there are only two
    distinct values (a 0/1 label, however few rows) or there are at most 20 and each occurs
    at least 10 times on average (distinct values <= rows / 10). Anything else, such as
    fractional values, many distinct counts, or a few values over very few rows, is
    regression. Pass ``task=`` to :func:`~regtune.data.loading.load_dataset` to override
    the guess.
    """
    y = pd.Series(y)
    if not is_numeric(y):
        return "classification"
    values = y.dropna().to_numpy("float64")
    if not (values.size and np.isfinite(values).all() and (values % 1 == 0).all()):
        return "regression"
    n_unique = np.unique(values).size
    if n_unique <= 2 or (n_unique <= MAX_CLASSES and n_unique * MIN_ROWS_PER_CLASS <= values.size):
        return "classification"
    return "regression"


def is_numeric(col: pd.Series) -> bool:
    """Numbers, not booleans: a boolean column is categorical."""
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def _is_text_or_number(value: Any) -> bool:
    return isinstance(value, (str, int, float, np.number)) and not isinstance(value, bool)


def _first_unusable(values: np.ndarray) -> int | None:
    """Position of the first infinite value or one a float32 network cannot hold."""
    bad = np.flatnonzero(np.abs(values) > FLOAT32_MAX)  # NaN compares False
    return int(bad[0]) if bad.size else None


def listing(names: Any, limit: int = 20) -> str:
    """Column names for a message, at most ``limit`` of them."""
    names = [str(n) for n in names]
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def show(value: Any) -> str:
    """A cell value as the user would write it: ``'abc'``, ``3``, ``inf`` (no numpy reprs)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def describe(value: Any) -> str:
    """A bad cell value and what is wrong with it, e.g. ``the infinite value inf``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"the non-numeric value {show(value)}"
    if math.isinf(number):
        return f"the infinite value {show(value)}"
    if abs(number) > FLOAT32_MAX:
        return f"the value {show(value)}, beyond the float32 range (3.4e38)"
    return f"the value {show(value)}"
