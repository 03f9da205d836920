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
    if not all(isinstance(c, str) for c in frame.columns):
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
    """Numbers typed as text become numbers; garbage, nested values (lists, dicts) and infinite
    features raise, naming the first bad column in column order.

    The columns are checked a block of about :data:`_BLOCK_CELLS` cells at a time, each block
    with whole-array operations, so a table 100,000 columns wide costs what its cells cost, not
    one pandas call per column.
    """
    n_rows = max(1, len(frame))
    width = max(1, _BLOCK_CELLS // n_rows)
    index = frame.index
    # A copy with one block per dtype (a CSV read gives one per column), so the blocks below are
    # slices, not 100,000 takes; its rows numbered, so the blocks join by position.
    frame = frame.copy().set_axis(pd.RangeIndex(len(frame)), axis=0)
    parts = [_check_block(frame.iloc[:, start:start + width], name, where, target)
             for start in range(0, frame.shape[1], width)]
    checked = parts[0] if len(parts) == 1 else pd.concat(parts, axis=1)
    return checked.set_axis(index, axis=0)


_BLOCK_CELLS = 1 << 20  # cells checked in one pass: bounds the copies a wide table makes
_NESTED = (list, tuple, dict, set, frozenset, np.ndarray)


def _check_block(block: pd.DataFrame, name: str, where: Callable[[int], str], target: str | None) -> pd.DataFrame:
    columns = list(block.columns)
    text = np.array([pd.api.types.is_object_dtype(d) or pd.api.types.is_string_dtype(d) for d in block.dtypes],
                    dtype=bool)
    problems: dict[int, str] = {}
    converted: dict[int, np.ndarray] = {}
    if text.any():
        problems, converted = _numeric_texts(block.iloc[:, np.flatnonzero(text)], np.flatnonzero(text), name, where)
    numeric = ~text & np.array([_numeric_dtype(d) for d in block.dtypes], dtype=bool)
    numeric &= np.array([c != target for c in columns], dtype=bool)
    if numeric.any():
        positions = np.flatnonzero(numeric)
        values = block.iloc[:, positions].to_numpy("float64", na_value=np.nan)
        _flag_unusable(values, positions, block, name, where, problems)
    checked = sorted(j for j in converted if columns[j] != target)
    if checked:
        values = np.column_stack([converted[j] for j in checked])
        _flag_unusable(values, np.array(checked), block, name, where, problems)
    if problems:
        raise DataError(problems[min(problems)])
    if not converted:
        return block
    positions = sorted(converted)
    numbers = pd.DataFrame(np.column_stack([converted[j] for j in positions]),
                           columns=[columns[j] for j in positions], index=block.index)
    kept = block.drop(columns=numbers.columns)
    return pd.concat([kept, numbers], axis=1).loc[:, columns]


def _flag_unusable(values: np.ndarray, positions: np.ndarray, block: pd.DataFrame, name: str,
                   where: Callable[[int], str], problems: dict[int, str]) -> None:
    """Note, per column, the first infinite value or one beyond float32 (NaN compares False)."""
    bad = np.abs(values) > FLOAT32_MAX
    for k in np.flatnonzero(bad.any(axis=0)):
        j, row = int(positions[k]), int(bad[:, k].argmax())
        problems.setdefault(j, f"{name}: column '{block.columns[j]}' has {describe(values[row, k])} at "
                               f"{where(row)}; replace it with a finite number or leave the cell empty")


def _numeric_texts(
    texts: pd.DataFrame, positions: np.ndarray, name: str, where: Callable[[int], str]
) -> tuple[dict[int, str], dict[int, np.ndarray]]:
    """Text columns made only of numbers, as numbers (by position in the block); a message for
    each column of numbers with a few stray strings, or holding a nested value."""
    cells = texts.to_numpy(object)
    flat = cells.ravel(order="F")  # column after column: the first hit is in the first bad column
    problems: dict[int, str] = {}
    nested = next((i for i, v in enumerate(flat) if isinstance(v, _NESTED)), None)
    if nested is not None:
        row, k = nested % len(cells), nested // len(cells)
        value = flat[nested]
        problems[int(positions[k])] = (
            f"{name}: column '{texts.columns[k]}' holds {type(value).__name__} values such as "
            f"{_short(value)} at {where(row)}; a cell must hold one number or category: "
            "spread the values over columns of their own, or drop the column")
    # only text and number cells may parse; bools, bytes, dates are categories
    parseable = np.array([v if _is_text_or_number(v) else "?" for v in flat], dtype=object)
    numbers = pd.to_numeric(pd.Series(parseable, dtype=object), errors="coerce")
    numbers = numbers.to_numpy("float64", na_value=np.nan).reshape(cells.shape, order="F")
    present = pd.notna(cells)
    strays = present & np.isnan(numbers)
    n_present, n_strays = present.sum(axis=0), strays.sum(axis=0)
    converted = {int(positions[k]): numbers[:, k] for k in np.flatnonzero((n_strays == 0) & (n_present > 0))}
    mostly_numbers = 2 * (n_present - n_strays) > n_present
    garbage = (n_strays > 0) & mostly_numbers & (n_strays <= np.maximum(1, GARBAGE_SHARE * n_present))
    for k in np.flatnonzero(garbage):
        row = int(strays[:, k].argmax())
        problems.setdefault(int(positions[k]), (
            f"{name}: column '{texts.columns[k]}' is numeric but has the non-numeric value "
            f"{show(cells[row, k])} at {where(row)}; correct that cell or leave it empty to mark it missing"))
    return problems, converted


def _numeric_dtype(dtype: Any) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


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
