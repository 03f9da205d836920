"""Load, check, split and preprocess tabular data before it reaches a network.

Everything the user hands in (a built-in dataset name, a CSV or Parquet file, a DataFrame) is
checked here once, so the rest of regtune can assume finite numbers and a usable target. Bad
input raises :class:`DataError` with one sentence that names the thing, the value and the fix.

Missing feature values in numeric columns are allowed: :class:`TabularPreprocessor` fills
them with the training median. Missing values in categorical columns become their own
category. Missing or infinite target values, and infinite feature values, are errors.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted

__all__ = [
    "BUILTIN_DATASETS",
    "DataError",
    "Dataset",
    "Split",
    "TabularPreprocessor",
    "Task",
    "dataset_from_frame",
    "encode_target",
    "infer_task",
    "load_dataset",
    "split_dataset",
]

Task = Literal["classification", "regression"]
TASKS: tuple[str, ...] = ("classification", "regression")
FILE_SUFFIXES: tuple[str, ...] = (".csv", ".parquet", ".pq")
MAX_CLASSES = 20  # an integer target with more distinct values than this is a regression
MIN_ROWS_PER_CLASS = 10  # ... and so is one whose values repeat fewer times than this on average
GARBAGE_SHARE = 0.1  # at most this share of a mostly numeric column may be non-numeric text


class DataError(ValueError):
    """The data cannot be used as given; the message says which value and how to fix it."""


def _builtin(loader_name: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        from sklearn import datasets

        return getattr(datasets, loader_name)(as_frame=True).frame

    return load


# name -> (loader returning a frame whose last column is "target", task, image shape)
BUILTIN_DATASETS: dict[str, tuple[Callable[[], pd.DataFrame], Task, tuple[int, int, int] | None]] = {
    "digits": (_builtin("load_digits"), "classification", (1, 8, 8)),
    "breast_cancer": (_builtin("load_breast_cancer"), "classification", None),
    "wine": (_builtin("load_wine"), "classification", None),
    "iris": (_builtin("load_iris"), "classification", None),
    "diabetes": (_builtin("load_diabetes"), "regression", None),
}


@dataclass(frozen=True)
class Dataset:
    """A checked table: features, target and what kind of problem they pose.

    ``image_shape`` is ``(channels, height, width)`` when each row is a flattened image, so a
    CNN can be built for it; ``None`` for plain tables.
    """

    name: str
    X: pd.DataFrame
    y: pd.Series
    task: Task
    image_shape: tuple[int, int, int] | None
    target: str


@dataclass(frozen=True)
class Split:
    """Train, validation and test parts of one dataset; the test part is never searched on."""

    X_train: Any
    X_val: Any
    X_test: Any
    y_train: Any
    y_val: Any
    y_test: Any


def load_dataset(source: str | Path, target: str | None = None, *, task: Task | None = None) -> Dataset:
    """Load a built-in dataset by name, or a ``.csv`` / ``.parquet`` / ``.pq`` file, and check it.

    Parameters
    ----------
    source : str or Path
        One of :data:`BUILTIN_DATASETS` or a path to a data file.
    target : str, optional
        Target column of a file; defaults to its last column.
    task : {"classification", "regression"}, optional
        Overrides the task inferred by :func:`infer_task`.

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        If the source cannot be found or read, or its contents are unusable.
    """
    if isinstance(source, str) and source in BUILTIN_DATASETS:
        loader, builtin_task, image_shape = BUILTIN_DATASETS[source]
        if target not in (None, "target"):
            raise DataError(f"built-in dataset '{source}' has the fixed target column 'target', not {target!r}; leave the target unset")
        return dataset_from_frame(loader(), "target", task=task or builtin_task, name=source, image_shape=image_shape)
    path = Path(source)
    if not path.exists():
        if path.suffix.lower() in FILE_SUFFIXES:
            raise DataError(f"data file '{path}' does not exist; check the path")
        names = ", ".join(BUILTIN_DATASETS)
        raise DataError(f"'{source}' is neither a built-in dataset ({names}) nor an existing file; use one of those names or a path to a .csv or .parquet file")
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise DataError(f"data file '{path}' has the unsupported extension '{path.suffix}'; save it as .csv or .parquet")
    frame = _read_file(path)
    return dataset_from_frame(frame, target, task=task, name=path.name, line_offset=2 if path.suffix.lower() == ".csv" else None)


def _read_file(path: Path) -> pd.DataFrame:
    if path.is_dir():
        raise DataError(f"data file '{path}' is a directory; pass a .csv or .parquet file")
    if path.stat().st_size == 0:
        raise DataError(f"data file '{path}' is empty; it needs a header row and at least one data row")
    try:
        if path.suffix.lower() != ".csv":
            return pd.read_parquet(path)
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, index_col=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"data file '{path}' is empty; it needs a header row and at least one data row") from None
    except pd.errors.ParserWarning:
        raise DataError(f"data file '{path}': a row has more fields than the header; check the delimiter (commas) and quoting") from None
    except UnicodeDecodeError:
        raise DataError(f"data file '{path}' is not UTF-8 text; save it as a UTF-8 CSV") from None
    except (ValueError, OSError, TypeError, pd.errors.ParserError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"data file '{path}' cannot be read as {path.suffix.lstrip('.').upper()} ({first_line}); check that it is a valid {path.suffix} file") from None


def dataset_from_frame(
    frame: pd.DataFrame,
    target: str | None = None,
    *,
    task: Task | None = None,
    name: str = "dataframe",
    image_shape: tuple[int, int, int] | None = None,
    line_offset: int | None = None,
) -> Dataset:
    """Check a table that holds features and target, and turn it into a :class:`Dataset`.

    Text columns that are numbers throughout become numeric; text columns that are mostly
    numbers (see :func:`_check_numeric_text`) but hold a few other strings are rejected as
    garbage. ``line_offset`` turns row positions into file line numbers in messages.

    Raises
    ------
    DataError
        If the table, the target column or any feature value is unusable.
    """
    if frame.shape[1] == 0 or len(frame) == 0:
        what = "no columns" if frame.shape[1] == 0 else f"a header ({', '.join(map(str, frame.columns[:5]))}) but no data rows"
        raise DataError(f"{name} has {what}; it needs a header row and at least one data row")
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    if frame.columns.duplicated().any():
        dup = frame.columns[frame.columns.duplicated()][0]
        raise DataError(f"{name} has the column name '{dup}' more than once; rename the duplicates")
    target = frame.columns[-1] if target is None else target
    if target not in frame.columns:
        raise DataError(f"{name} has no target column '{target}'; available columns: {_listing(frame.columns)}")
    if frame.shape[1] == 1:
        hint = " (if the file is not comma-separated, save it with commas)" if line_offset else ""
        raise DataError(f"{name} has only the target column '{target}' and no feature columns{hint}; add feature columns")

    def where(pos: int) -> str:
        return f"line {pos + line_offset}" if line_offset is not None else f"row {frame.index[pos]!r}"

    for col in frame.columns:
        frame[col] = _check_numeric_text(frame[col], f"{name}: column '{col}'", where)
        if col != target and pd.api.types.is_numeric_dtype(frame[col]) and not pd.api.types.is_bool_dtype(frame[col]):
            bad = np.flatnonzero(np.isinf(frame[col].to_numpy(dtype="float64", na_value=np.nan)))
            if bad.size:
                raise DataError(f"{name}: column '{col}' has the infinite value {frame[col].iloc[bad[0]]} at {where(bad[0])}; replace it with a finite number or leave the cell empty")
    y = frame.pop(target)
    y = _check_target(y, f"{name}: target '{target}'", where, task)
    return Dataset(name=name, X=frame, y=y, task=infer_task(y) if task is None else task, image_shape=image_shape, target=target)


def _check_numeric_text(col: pd.Series, label: str, where: Callable[[int], str]) -> pd.Series:
    """Convert text of numbers to numbers; reject text that is numbers with a few strays.

    A text column counts as mostly numeric when numbers are a strict majority of its non-missing
    cells and the non-numbers are at most 10 % of them (or a single cell). Such a column's
    non-numbers are typing errors, so they raise; any other text column is categorical.
    """
    if not (pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col)):
        return col
    present = col.notna().to_numpy()
    # bool/bytes cells are categories; to_numeric would turn them into numbers or fail oddly
    numeric = pd.to_numeric(col.map(lambda v: v if isinstance(v, (str, int, float)) and not isinstance(v, bool) else "?"), errors="coerce")
    parsed = numeric.notna().to_numpy()
    strays = np.flatnonzero(present & ~parsed)
    n_present = int(present.sum())
    if strays.size == 0 and n_present:
        return numeric.astype("float64")
    if 2 * (n_present - strays.size) > n_present and strays.size <= max(1, GARBAGE_SHARE * n_present):
        raise DataError(f"{label} is numeric but has the non-numeric value {col.iloc[strays[0]]!r} at {where(strays[0])}; correct that cell or leave it empty to mark it missing")
    return col


def _check_target(y: pd.Series, label: str, where: Callable[[int], str], task: Task | None) -> pd.Series:
    if task is not None and task not in TASKS:
        raise DataError(f"task {task!r} is unknown; use 'classification' or 'regression'")
    missing = np.flatnonzero(y.isna().to_numpy())
    if missing.size:
        raise DataError(f"{label} has {missing.size} missing value(s), the first at {where(missing[0])}; drop those rows or fill in the target")
    numeric = pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)
    if numeric:
        inf = np.flatnonzero(np.isinf(y.to_numpy(dtype="float64")))
        if inf.size:
            raise DataError(f"{label} has the infinite value {y.iloc[inf[0]]} at {where(inf[0])}; drop that row or fix the value")
    n_unique = y.nunique()
    if n_unique < 2:
        raise DataError(f"{label} has the single value {y.iloc[0]!r} in every row; a model needs at least two different target values")
    task = infer_task(y) if task is None else task
    if task == "regression":
        if not numeric:
            raise DataError(f"{label} holds non-numeric values such as {y.iloc[0]!r}, so it cannot be a regression target; use task='classification'")
        return y.astype("float64")
    if numeric and pd.api.types.is_float_dtype(y) and np.all(np.mod(y.to_numpy(), 1) == 0):
        y = y.astype("int64")
    counts = y.value_counts()
    rare = counts[counts < 2]
    if len(rare):
        shown = ", ".join(f"{k!r} ({v} row)" for k, v in rare.head(5).items())
        more = f" and {len(rare) - 5} more" if len(rare) > 5 else ""
        raise DataError(f"{label} has {n_unique} classes for {len(y)} rows and these have fewer than the 2 rows a stratified split needs: {shown}{more}; drop or merge rare classes, or use task='regression'")
    return y


def infer_task(y: pd.Series | np.ndarray) -> Task:
    """Guess whether a target asks for classification or regression.

    Non-numeric (text, categorical, boolean) targets are classification. A numeric target is
    classification when every value is a whole number, there are at most 20 distinct values,
    and each value occurs at least 10 times on average (distinct values <= rows / 10); two
    distinct whole numbers (a 0/1 label) are always classification. Anything else is regression.
    Pass ``task=`` to override the guess.
    """
    y = pd.Series(y)
    if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        return "classification"
    values = y.dropna().to_numpy(dtype="float64")
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(np.mod(values, 1) != 0):
        return "regression"
    n_unique = np.unique(values).size
    if n_unique <= 2 or (n_unique <= MAX_CLASSES and n_unique * MIN_ROWS_PER_CLASS <= values.size):
        return "classification"
    return "regression"


def encode_target(y: Any, task: Task) -> tuple[np.ndarray, np.ndarray | None]:
    """Turn a target into what a network trains on.

    Returns ``(int64 class codes, sorted classes)`` for classification, so that
    ``classes[codes]`` gives the labels back, and ``(float32 values, None)`` for regression.
    """
    y = pd.Series(np.asarray(y) if not isinstance(y, pd.Series) else y)
    if task == "regression":
        values = pd.to_numeric(y, errors="coerce").to_numpy(dtype="float32", na_value=np.nan)
        if not np.all(np.isfinite(values)):
            raise DataError("regression target has missing, infinite or non-numeric values; clean the target first")
        return values, None
    if task != "classification":
        raise DataError(f"task {task!r} is unknown; use 'classification' or 'regression'")
    if y.isna().any():
        raise DataError("classification target has missing values; drop those rows or fill in the target")
    codes, classes = pd.factorize(y, sort=True)
    return codes.astype("int64"), np.asarray(classes)


def split_dataset(
    X: Any, y: Any, *, task: Task, test_size: float = 0.2, val_size: float = 0.2, random_state: int = 0
) -> Split:
    """Split into train, validation and test parts, stratified by class for classification.

    ``test_size`` and ``val_size`` are shares of the whole dataset, rounded to whole rows, so
    the defaults give 60/20/20. The same ``random_state`` always gives the same split.

    Raises
    ------
    DataError
        If a share is out of range, a part would be empty, or a class is too small to stratify.
    """
    for label, share in (("test_size", test_size), ("val_size", val_size)):
        if not 0 < share < 1:
            raise DataError(f"split_dataset: {label}={share} must be between 0 and 1 (exclusive)")
    if test_size + val_size >= 1:
        raise DataError(f"split_dataset: test_size + val_size = {test_size + val_size:g} leaves no training rows; make their sum < 1")
    n = len(y)
    n_test, n_val = math.floor(test_size * n + 0.5), math.floor(val_size * n + 0.5)
    sizes = {"train": n - n_test - n_val, "validation": n_val, "test": n_test}
    for part, size in sizes.items():
        if size < 1:
            raise DataError(f"split_dataset: the {part} part of {n} rows would be empty; use more rows or adjust test_size/val_size")
    stratify = None
    if task == "classification":
        counts = pd.Series(np.asarray(y)).value_counts()
        if counts.min() < 3:
            raise DataError(f"split_dataset: class {counts.idxmin()!r} has {counts.min()} row(s) but a stratified train/validation/test split needs at least 3; add rows, merge rare classes or drop them")
        for part, size in sizes.items():
            if size < len(counts):
                raise DataError(f"split_dataset: the {part} part would have {size} rows, fewer than the {len(counts)} classes; use more rows or a larger share for it")
        stratify = y
    X_rest, X_test, y_rest, y_test = train_test_split(X, y, test_size=n_test, stratify=stratify, random_state=random_state)
    X_train, X_val, y_train, y_val = train_test_split(
        X_rest, y_rest, test_size=n_val, stratify=y_rest if stratify is not None else None, random_state=random_state
    )
    return Split(X_train, X_val, X_test, y_train, y_val, y_test)


def _listing(names: Any, limit: int = 20) -> str:
    names = [str(n) for n in names]
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _category_key(value: Any) -> str | None:
    """One JSON-safe key per category; ``None`` stands for missing."""
    if value is None or (np.ndim(value) == 0 and pd.isna(value)):
        return None
    return str(value)


class TabularPreprocessor(TransformerMixin, BaseEstimator):
    """Turn a table into a float32 matrix: scaled numbers and one-hot categories.

    Numeric columns are filled with the training median where missing, then standardized
    (a constant column is only centred). Text, categorical and boolean columns are one-hot
    encoded; a missing value is a category of its own and a category unseen in ``fit`` encodes
    as all zeros. The fitted state is plain data (:meth:`to_dict`), so a saved model can be
    restored with :meth:`from_dict` without unpickling anything.

    DataFrames with string column names are matched by name at ``transform`` (extra columns
    are ignored, a missing one is an error); arrays and other frames are matched by position.
    """

    _STATE_FORMAT = "regtune.TabularPreprocessor/1"

    def fit(self, X: Any, y: Any = None) -> TabularPreprocessor:
        """Learn medians, means, scales and categories from ``X``."""
        frame, by_name = _as_frame(X)
        columns = []
        for name in frame.columns:
            col = frame[name]
            if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
                values = _finite_values(col, name)
                present = values[~np.isnan(values)]
                median = float(np.median(present)) if present.size else 0.0
                filled = np.where(np.isnan(values), median, values)
                scale = float(filled.std())
                columns.append({"name": name, "kind": "numeric", "median": median, "mean": float(filled.mean()), "scale": scale if scale > 1e-12 and math.isfinite(scale) else 1.0})
            else:
                keys = {_category_key(v) for v in col.tolist()}
                categories = sorted(k for k in keys if k is not None) + ([None] if None in keys else [])
                columns.append({"name": name, "kind": "categorical", "categories": categories})
        self._set_state({"format": self._STATE_FORMAT, "by_name": by_name, "columns": columns})
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Encode ``X`` with the fitted state; returns a float32 array."""
        check_is_fitted(self, "columns_")
        frame, by_name = _as_frame(X)
        if self.by_name_ and by_name:
            missing = [c["name"] for c in self.columns_ if c["name"] not in frame.columns]
            if missing:
                raise DataError(f"TabularPreprocessor: column '{missing[0]}' seen in fit is missing from the data to transform; available columns: {_listing(frame.columns)}")
            frame = frame[[c["name"] for c in self.columns_]]
        elif frame.shape[1] != len(self.columns_):
            raise DataError(f"TabularPreprocessor: got {frame.shape[1]} columns but was fitted on {len(self.columns_)}; pass the same columns as in fit")
        blocks = []
        for spec, pos in zip(self.columns_, range(frame.shape[1])):
            col = frame.iloc[:, pos]
            if spec["kind"] == "numeric":
                values = _finite_values(col, spec["name"])
                values = np.where(np.isnan(values), spec["median"], values)
                blocks.append(((values - spec["mean"]) / spec["scale"])[:, None])
            else:
                lookup = {k: i for i, k in enumerate(spec["categories"])}
                codes = np.array([lookup.get(_category_key(v), -1) for v in col.tolist()], dtype=np.int64)
                onehot = np.zeros((len(codes), len(lookup)))
                known = codes >= 0
                onehot[np.flatnonzero(known), codes[known]] = 1.0
                blocks.append(onehot)
        return np.hstack(blocks).astype(np.float32) if blocks else np.zeros((len(frame), 0), np.float32)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output column names: numeric columns keep theirs, one-hot columns are ``col_category``."""
        check_is_fitted(self, "columns_")
        names = []
        for spec in self.columns_:
            if spec["kind"] == "numeric":
                names.append(spec["name"])
            else:
                names.extend(f"{spec['name']}_{'nan' if k is None else k}" for k in spec["categories"])
        return np.asarray(names, dtype=object)

    def to_dict(self) -> dict[str, Any]:
        """The fitted state as JSON-serializable plain data."""
        check_is_fitted(self, "columns_")
        return {"format": self._STATE_FORMAT, "by_name": self.by_name_, "columns": [dict(c) for c in self.columns_]}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TabularPreprocessor:
        """Rebuild a fitted preprocessor from :meth:`to_dict` output (no pickle involved)."""
        if not isinstance(state, dict) or state.get("format") != cls._STATE_FORMAT or not isinstance(state.get("columns"), list):
            raise DataError(f"TabularPreprocessor.from_dict: expected a dict with format {cls._STATE_FORMAT!r} and a 'columns' list; pass the output of to_dict()")
        for spec in state["columns"]:
            needed = ("median", "mean", "scale") if isinstance(spec, dict) and spec.get("kind") == "numeric" else ("categories",)
            if not isinstance(spec, dict) or "name" not in spec or spec.get("kind") not in ("numeric", "categorical") or any(k not in spec for k in needed):
                raise DataError(f"TabularPreprocessor.from_dict: column entry {spec!r} is malformed; pass the output of to_dict()")
        preprocessor = cls()
        preprocessor._set_state(state)
        return preprocessor

    def _set_state(self, state: dict[str, Any]) -> None:
        self.by_name_ = bool(state["by_name"])
        self.columns_ = [dict(c) for c in state["columns"]]
        self.n_features_in_ = len(self.columns_)
        if self.by_name_:
            self.feature_names_in_ = np.asarray([c["name"] for c in self.columns_], dtype=object)


def _as_frame(X: Any) -> tuple[pd.DataFrame, bool]:
    """Return ``X`` as a frame and whether its columns can be matched by name."""
    if isinstance(X, pd.DataFrame):
        if all(isinstance(c, str) for c in X.columns):
            return X, True
        return X.set_axis([f"x{i}" for i in range(X.shape[1])], axis=1), False
    array = np.asarray(X)
    if array.ndim != 2:
        raise DataError(f"TabularPreprocessor: expected a 2-D table but got an array of shape {array.shape}; reshape it to (rows, columns)")
    frame = pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])
    return (frame.infer_objects() if array.dtype == object else frame), False


def _finite_values(col: pd.Series, name: Hashable) -> np.ndarray:
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    bad = np.flatnonzero(np.isinf(values) | (np.isnan(values) & col.notna().to_numpy()))
    if bad.size:
        raise DataError(f"TabularPreprocessor: numeric column '{name}' has the value {col.iloc[bad[0]]!r} at row {bad[0]}; use finite numbers or leave the cell empty")
    return values
