"""Load, check, split and preprocess tabular data before it reaches a network.

Everything the user hands in (a built-in dataset name, a CSV or Parquet file, a DataFrame) is
checked here once, so the rest of regtune can assume finite numbers and a usable target. Bad
input raises :class:`DataError` with one sentence that names the thing, the value and the fix.

Missing feature values in numeric columns are allowed: :class:`TabularPreprocessor` fills
them with the training median. Missing values in categorical columns become a category of
their own. Missing or infinite target values, and infinite feature values, are errors (so are numbers
beyond the float32 range, which a network cannot hold).
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
from sklearn.utils.validation import check_is_fitted

from regtune.exceptions import DataError

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
    "make_preprocessor",
    "read_table",
    "split_dataset",
]

Task = Literal["classification", "regression"]
TASKS: tuple[str, ...] = ("classification", "regression")
FILE_SUFFIXES: tuple[str, ...] = (".csv", ".parquet", ".pq")
MAX_CLASSES = 20  # a whole-number target with more distinct values is a regression target
MIN_ROWS_PER_CLASS = 10  # ... and so is one whose values repeat fewer times on average
MIN_CLASS_ROWS = 3  # a stratified train/validation/test split needs this many rows per class
FLOAT32_MAX = float(np.finfo(np.float32).max)  # networks compute in float32
GARBAGE_SHARE = 0.1  # at most this share of a mostly numeric text column may be non-numbers


def _sklearn_frame(loader_name: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        from sklearn import datasets

        return getattr(datasets, loader_name)(as_frame=True).frame

    return load


#: name -> (loader of a frame whose last column is ``target``, task, image shape or None)
BUILTIN_DATASETS: dict[str, tuple[Callable[[], pd.DataFrame], Task, tuple[int, int, int] | None]]
BUILTIN_DATASETS = {
    "digits": (_sklearn_frame("load_digits"), "classification", (1, 8, 8)),
    "breast_cancer": (_sklearn_frame("load_breast_cancer"), "classification", None),
    "wine": (_sklearn_frame("load_wine"), "classification", None),
    "iris": (_sklearn_frame("load_iris"), "classification", None),
    "diabetes": (_sklearn_frame("load_diabetes"), "regression", None),
}


@dataclass(frozen=True)
class Dataset:
    """A checked table: features, target and the kind of problem they pose.

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
    """Train, validation and test parts of one dataset; the search never sees the test part."""

    X_train: Any
    X_val: Any
    X_test: Any
    y_train: Any
    y_val: Any
    y_test: Any


def load_dataset(
    source: str | Path, target: str | None = None, *, task: Task | None = None
) -> Dataset:
    """Load a built-in dataset by name, or a ``.csv`` / ``.parquet`` / ``.pq`` file, and check it.

    Parameters
    ----------
    source : str or Path
        A name from :data:`BUILTIN_DATASETS` (names win over files of the same name) or a path.
    target : str, optional
        Target column of a file; defaults to its last column.
    task : {"classification", "regression"}, optional
        Overrides the task guessed by :func:`infer_task`.

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
            raise DataError(
                f"built-in dataset '{source}' has the fixed target column 'target', "
                f"not {target!r}; leave the target unset"
            )
        frame = loader()
        return dataset_from_frame(
            frame, "target", task=task or builtin_task, name=source, image_shape=image_shape
        )
    path = Path(source)
    if not path.exists() and path.suffix.lower() not in FILE_SUFFIXES:
        raise DataError(
            f"'{source}' is neither a built-in dataset ({', '.join(BUILTIN_DATASETS)}) nor an "
            "existing file; use one of those names or a path to a .csv or .parquet file"
        )
    frame, line_offset = _read_file(path)
    return dataset_from_frame(frame, target, task=task, name=path.name, line_offset=line_offset)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a ``.csv`` / ``.parquet`` / ``.pq`` file of feature rows, such as rows to predict.

    The cells get the same checks as in :func:`load_dataset`, but no column is a target.

    Raises
    ------
    DataError
        If the file cannot be found or read, or holds garbage or infinite numbers.
    """
    path = Path(path)
    frame, line_offset = _read_file(path)
    frame = _checked_names(frame, path.name)
    return _checked_cells(frame, path.name, _locator(frame, line_offset), target=None)


def _read_file(path: Path) -> tuple[pd.DataFrame, int | None]:
    """The file's table, and the line of its first row (``None`` where lines mean nothing)."""
    suffix = path.suffix.lower()
    if not path.exists():
        raise DataError(f"data file '{path}' does not exist; check the path")
    if suffix not in FILE_SUFFIXES:
        raise DataError(
            f"data file '{path}' has the unsupported extension '{path.suffix}'; "
            "save it as .csv or .parquet"
        )
    empty = f"data file '{path}' is empty; it needs a header row and at least one data row"
    if path.is_dir():
        raise DataError(f"data file '{path}' is a directory; pass a .csv or .parquet file")
    if path.stat().st_size == 0:
        raise DataError(empty)
    try:
        if suffix != ".csv":
            return pd.read_parquet(path), None
        with warnings.catch_warnings():
            # a row longer than the header would silently become the index or lose fields
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, index_col=False), 2  # line 1 is the header
    except pd.errors.EmptyDataError:
        raise DataError(empty) from None
    except pd.errors.ParserWarning:
        raise DataError(
            f"data file '{path}' has a row with more fields than the header; "
            "check the delimiter (commas) and the quoting"
        ) from None
    except UnicodeDecodeError:
        raise DataError(f"data file '{path}' is not UTF-8 text; save it as UTF-8") from None
    except (ValueError, OSError, TypeError) as exc:  # ParserError and ArrowInvalid included
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        kind = path.suffix.lstrip(".").upper()
        raise DataError(
            f"data file '{path}' cannot be read as {kind} ({reason}); "
            f"check that it is a valid {path.suffix} file"
        ) from None


def dataset_from_frame(
    frame: pd.DataFrame,
    target: str | None = None,
    *,
    task: Task | None = None,
    name: str = "dataframe",
    image_shape: tuple[int, int, int] | None = None,
    line_offset: int | None = None,
) -> Dataset:
    """Check a table that holds both features and target, and make a :class:`Dataset` of it.

    Text columns made only of numbers become numeric. Text columns that are mostly numbers
    but hold a few other strings are typing errors and raise: numbers must be a strict
    majority of the non-missing cells and the other strings at most 10 % of them (or one
    cell). Any other text column is categorical. ``line_offset`` turns row positions into
    file line numbers in messages.

    Raises
    ------
    DataError
        If the table, the target column or any feature value is unusable.
    """
    frame = _checked_names(frame, name)
    target = frame.columns[-1] if target is None else str(target)
    if target not in frame.columns:
        raise DataError(
            f"{name} has no target column '{target}'; available columns: {_listing(frame.columns)}"
        )
    if frame.shape[1] == 1:
        hint = " (if the file is not comma-separated, save it with commas)" if line_offset else ""
        raise DataError(
            f"{name} has only the target column '{target}' and no feature columns{hint}; "
            "add feature columns"
        )
    where = _locator(frame, line_offset)
    frame = _checked_cells(frame, name, where, target)
    y, task = _check_target(frame.pop(target), f"{name}: target '{target}'", where, task)
    return Dataset(name, frame, y, task, image_shape, target)


def _checked_names(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    if frame.shape[1] == 0 or len(frame) == 0:
        header = ", ".join(map(str, frame.columns[:5]))
        what = f"a header ({header}) but no data rows" if frame.shape[1] else "no columns"
        raise DataError(f"{name} has {what}; it needs a header row and at least one data row")
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    if frame.columns.duplicated().any():
        dup = frame.columns[frame.columns.duplicated()][0]
        raise DataError(f"{name} has the column '{dup}' more than once; rename the duplicates")
    return frame


def _locator(frame: pd.DataFrame, line_offset: int | None) -> Callable[[int], str]:
    """Describe a row position as a file line, or as the frame's row label."""
    if line_offset is not None:
        return lambda pos: f"line {pos + line_offset}"
    return lambda pos: f"row {_show(frame.index[pos])}"


def _checked_cells(
    frame: pd.DataFrame, name: str, where: Callable[[int], str], target: str | None
) -> pd.DataFrame:
    """Numbers typed as text become numbers; garbage and infinite features raise."""
    for col in frame.columns:
        frame[col] = _numeric_text(frame[col], f"{name}: column '{col}'", where)
        if col != target and _is_numeric(frame[col]):
            bad = _first_unusable(frame[col].to_numpy("float64", na_value=np.nan))
            if bad is not None:
                raise DataError(
                    f"{name}: column '{col}' has {_describe(frame[col].iloc[bad])} at "
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
            f"{label} is numeric but has the non-numeric value {_show(col.iloc[strays[0]])} "
            f"at {where(strays[0])}; correct that cell or leave it empty to mark it missing"
        )
    return col


def _check_target(
    y: pd.Series, label: str, where: Callable[[int], str], task: Task | None
) -> tuple[pd.Series, Task]:
    _check_task(task, allow_none=True)
    missing = np.flatnonzero(y.isna().to_numpy())
    if missing.size:
        raise DataError(
            f"{label} has {missing.size} missing value(s), the first at {where(missing[0])}; "
            "drop those rows or fill in the target"
        )
    numeric = _is_numeric(y)
    bad = _first_unusable(y.to_numpy("float64")) if numeric else None
    if bad is not None:
        raise DataError(
            f"{label} has {_describe(y.iloc[bad])} at {where(bad)}; drop that row or fix the value"
        )
    if y.nunique() < 2:
        raise DataError(
            f"{label} has the single value {_show(y.iloc[0])} in every row; "
            "a model needs at least two different target values"
        )
    task = infer_task(y) if task is None else task
    if task == "regression":
        if not numeric:
            raise DataError(
                f"{label} holds non-numeric values such as {_show(y.iloc[0])}, so it cannot be "
                "a regression target; use task='classification'"
            )
        return y.astype("float64"), task
    if numeric and pd.api.types.is_float_dtype(y) and (y.to_numpy("float64") % 1 == 0).all():
        y = y.astype("int64")
    if isinstance(y.dtype, pd.CategoricalDtype):
        y = y.cat.remove_unused_categories()
    counts = y.value_counts()
    rare = counts[counts < MIN_CLASS_ROWS]
    if len(rare):
        shown = ", ".join(f"{_show(k)} ({v} row(s))" for k, v in rare.head(5).items())
        more = f" and {len(rare) - 5} more" if len(rare) > 5 else ""
        raise DataError(
            f"{label} has {len(counts)} classes in {len(y)} rows, and a stratified "
            f"train/validation/test split needs {MIN_CLASS_ROWS} rows per class, which these "
            f"lack: {shown}{more}; drop or merge rare classes, or use task='regression'"
        )
    return y, task


def infer_task(y: Any) -> Task:
    """Guess whether a target asks for classification or regression.

    Non-numeric (text, categorical, boolean) targets are classification. A numeric target is
    classification when all its values are whole numbers and either there are only two
    distinct values (a 0/1 label, however few rows) or there are at most 20 and each occurs
    at least 10 times on average (distinct values <= rows / 10). Anything else, such as
    fractional values, many distinct counts, or a few values over very few rows, is
    regression. Pass ``task=`` to :func:`load_dataset` to override the guess.
    """
    y = pd.Series(y)
    if not _is_numeric(y):
        return "classification"
    values = y.dropna().to_numpy("float64")
    if not (values.size and np.isfinite(values).all() and (values % 1 == 0).all()):
        return "regression"
    n_unique = np.unique(values).size
    if n_unique <= 2 or (n_unique <= MAX_CLASSES and n_unique * MIN_ROWS_PER_CLASS <= values.size):
        return "classification"
    return "regression"


def encode_target(y: Any, task: Task) -> tuple[np.ndarray, np.ndarray | None]:
    """Turn a target into what a network trains on.

    Returns ``(int64 codes, sorted classes)`` for classification, so that ``classes[codes]``
    gives the labels back, and ``(float32 values, None)`` for regression.
    """
    _check_task(task)
    y = y if isinstance(y, pd.Series) else pd.Series(np.asarray(y))
    if task == "regression":
        values = pd.to_numeric(y, errors="coerce").to_numpy("float32", na_value=np.nan)
        if not np.isfinite(values).all():
            raise DataError(
                "regression target has missing, infinite or non-numeric values; "
                "clean the target first"
            )
        return values, None
    if y.isna().any():
        raise DataError("classification target has missing values; drop those rows first")
    codes, classes = pd.factorize(y, sort=True)
    return codes.astype("int64"), np.asarray(classes)


def split_dataset(
    X: Any,
    y: Any,
    *,
    task: Task,
    test_size: float = 0.2,
    val_size: float = 0.2,
    random_state: int = 0,
) -> Split:
    """Split into train, validation and test parts, stratified by class for classification.

    ``test_size`` and ``val_size`` are shares of the whole dataset, rounded to whole rows, so
    the defaults give 60/20/20. The same ``random_state`` always gives the same split, and
    pandas inputs keep their index so every row can be traced back.

    Raises
    ------
    DataError
        If a share is out of range, a part would be empty, or a class is too small to stratify.
    """
    from sklearn.model_selection import train_test_split  # scipy-heavy; only needed here

    _check_task(task)
    for label, share in (("test_size", test_size), ("val_size", val_size)):
        if not 0 < share < 1:
            raise DataError(f"split_dataset: {label}={share} must be between 0 and 1 (exclusive)")
    if test_size + val_size >= 1:
        raise DataError(
            f"split_dataset: test_size + val_size = {test_size + val_size:g} leaves no "
            "training rows; make their sum smaller than 1"
        )
    n = len(y)
    if len(X) != n:
        raise DataError(f"split_dataset: X has {len(X)} rows but y has {n}; pass matching rows")
    n_test, n_val = math.floor(test_size * n + 0.5), math.floor(val_size * n + 0.5)
    sizes = {"train": n - n_test - n_val, "validation": n_val, "test": n_test}
    stratify, n_classes = None, 1
    if task == "classification":
        counts = pd.Series(np.asarray(y)).value_counts()
        if counts.min() < MIN_CLASS_ROWS:
            raise DataError(
                f"split_dataset: class {_show(counts.idxmin())} has {counts.min()} row(s) but "
                f"a stratified train/validation/test split needs {MIN_CLASS_ROWS}; "
                "add rows, or merge or drop rare classes"
            )
        stratify, n_classes = y, len(counts)
    for part, size in sizes.items():
        if size < n_classes or size < 1:
            what = "be empty" if size < 1 else f"have {size} rows for {n_classes} classes"
            raise DataError(
                f"split_dataset: the {part} part of {n} rows would {what}; "
                "use more rows or change test_size/val_size"
            )
    X_rest, X_test, y_rest, y_test = train_test_split(
        X, y, test_size=n_test, stratify=stratify, random_state=random_state
    )
    X_train, X_val, y_train, y_val = train_test_split(
        X_rest,
        y_rest,
        test_size=n_val,
        stratify=None if stratify is None else y_rest,
        random_state=random_state,
    )
    return Split(X_train, X_val, X_test, y_train, y_val, y_test)


class TabularPreprocessor(TransformerMixin, BaseEstimator):
    """Turn a table into a float32 matrix of scaled numbers and one-hot categories.

    Numeric columns are filled with the training median where missing, then standardized (a
    constant column is only centred). Text, categorical and boolean columns are one-hot
    encoded; a missing value is a category of its own and a category unseen in ``fit``
    encodes as all zeros. The fitted state is plain data (:meth:`to_dict`), so a saved model
    can be restored with :meth:`from_dict` without unpickling anything.

    DataFrames with string column names are matched by name at ``transform`` (extra columns
    are ignored, a missing one is an error); arrays and other frames are matched by position.
    """

    _FORMAT = "regtune.TabularPreprocessor/1"

    def fit(self, X: Any, y: Any = None) -> TabularPreprocessor:
        """Learn medians, means, scales and categories from ``X``; returns ``self``."""
        frame, by_name = _as_frame(X)
        if frame.shape[0] == 0 or frame.shape[1] == 0:
            raise DataError(
                f"TabularPreprocessor: X has {frame.shape[0]} row(s) and {frame.shape[1]} "
                f"feature(s) (shape={frame.shape}) while a minimum of 1 is required; "
                "fit on at least one row and one column"
            )
        columns: list[dict[str, Any]] = []
        for name in frame.columns:
            col = frame[name]
            if _is_numeric(col):
                values = _finite_values(col, name)
                present = values[~np.isnan(values)]
                median = float(np.median(present)) if present.size else 0.0
                filled = np.where(np.isnan(values), median, values)
                scale = float(filled.std())
                scale = scale if 1e-12 < scale < math.inf else 1.0
                mean = float(filled.mean())
                columns.append(
                    dict(name=name, kind="numeric", median=median, mean=mean, scale=scale)
                )
            else:
                keys = {_category_key(v) for v in col.tolist()}
                categories = sorted(k for k in keys if k is not None) + [None] * (None in keys)
                columns.append(dict(name=name, kind="categorical", categories=categories))
        self._set_state({"format": self._FORMAT, "by_name": by_name, "columns": columns})
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Encode ``X`` with the fitted state into a float32 array."""
        check_is_fitted(self, "columns_")
        frame, by_name = _as_frame(X)
        if self.by_name_ and by_name:
            names = [c["name"] for c in self.columns_]
            missing = [c for c in names if c not in frame.columns]
            if missing:
                raise DataError(
                    f"TabularPreprocessor: column '{missing[0]}' seen in fit is missing; "
                    f"available columns: {_listing(frame.columns)}"
                )
            frame = frame[names]
        elif frame.shape[1] != len(self.columns_):
            raise DataError(
                f"TabularPreprocessor: X has {frame.shape[1]} features, but TabularPreprocessor "
                f"is expecting {len(self.columns_)} features as input; pass the columns of fit"
            )
        blocks = [np.zeros((len(frame), 0))]
        for pos, spec in enumerate(self.columns_):
            col = frame.iloc[:, pos]
            if spec["kind"] == "numeric":
                values = _finite_values(col, spec["name"])
                values = np.where(np.isnan(values), spec["median"], values)
                blocks.append(((values - spec["mean"]) / spec["scale"])[:, None])
            else:
                lookup = {k: i for i, k in enumerate(spec["categories"])}
                codes = np.array([lookup.get(_category_key(v), -1) for v in col.tolist()])
                onehot = np.zeros((len(frame), len(lookup)))
                rows = np.flatnonzero(codes >= 0)
                onehot[rows, codes[rows]] = 1.0
                blocks.append(onehot)
        return np.hstack(blocks).astype(np.float32)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output column names: numeric columns keep theirs, one-hot ones are ``col_category``."""
        check_is_fitted(self, "columns_")
        names: list[str] = []
        for spec in self.columns_:
            if spec["kind"] == "numeric":
                names.append(spec["name"])
            else:
                names += [f"{spec['name']}_{'nan' if k is None else k}" for k in spec["categories"]]
        return np.asarray(names, dtype=object)

    def to_dict(self) -> dict[str, Any]:
        """The fitted state as JSON-serializable plain data (str, float, bool, None, lists)."""
        check_is_fitted(self, "columns_")
        columns = [
            {**c, "categories": list(c["categories"])} if "categories" in c else dict(c)
            for c in self.columns_
        ]
        return {"format": self._FORMAT, "by_name": self.by_name_, "columns": columns}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TabularPreprocessor:
        """Rebuild a fitted preprocessor from :meth:`to_dict` output, checking every entry."""
        fix = "pass the output of TabularPreprocessor.to_dict()"
        if not (
            isinstance(state, dict)
            and state.get("format") == cls._FORMAT
            and isinstance(state.get("by_name"), bool)
            and isinstance(state.get("columns"), list)
        ):
            raise DataError(
                f"TabularPreprocessor.from_dict: expected a dict with format {cls._FORMAT!r}, "
                f"'by_name' and 'columns'; {fix}"
            )
        for spec in state["columns"]:
            if not _valid_spec(spec):
                raise DataError(
                    f"TabularPreprocessor.from_dict: column {spec!r} is malformed; {fix}"
                )
        preprocessor = cls()
        preprocessor._set_state(state)
        return preprocessor

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def _set_state(self, state: dict[str, Any]) -> None:
        self.by_name_: bool = state["by_name"]
        self.columns_: list[dict[str, Any]] = [dict(c) for c in state["columns"]]
        self.n_features_in_ = len(self.columns_)
        if self.by_name_:
            self.feature_names_in_ = np.asarray([c["name"] for c in self.columns_], dtype=object)


def make_preprocessor() -> TabularPreprocessor:
    """The preprocessor for tables with categorical columns, for pipelines such as
    ``make_pipeline(make_preprocessor(), RegularizedNetClassifier())``."""
    return TabularPreprocessor()


def _valid_spec(spec: Any) -> bool:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        return False
    if spec.get("kind") == "numeric":
        numbers = [spec.get(k) for k in ("median", "mean", "scale")]
        return all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers) and (
            numbers[2] > 0
        )
    categories = spec.get("categories")
    return (
        spec.get("kind") == "categorical"
        and isinstance(categories, list)
        and all(c is None or isinstance(c, str) for c in categories)
    )


def _check_task(task: Any, allow_none: bool = False) -> None:
    if not (task in TASKS or (allow_none and task is None)):
        raise DataError(f"task {task!r} is unknown; use 'classification' or 'regression'")


def _is_text_or_number(value: Any) -> bool:
    return isinstance(value, (str, int, float, np.number)) and not isinstance(value, bool)


def _is_numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def _listing(names: Any, limit: int = 20) -> str:
    names = [str(n) for n in names]
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _show(value: Any) -> str:
    """A cell value as the user would write it: ``'abc'``, ``3``, ``inf`` (no numpy reprs)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _category_key(value: Any) -> str | None:
    """One JSON-safe key per category; ``None`` stands for missing."""
    if value is None or (np.ndim(value) == 0 and pd.isna(value)):
        return None
    return str(value)


def _as_frame(X: Any) -> tuple[pd.DataFrame, bool]:
    """Return ``X`` as a frame and whether its columns can be matched by name."""
    if hasattr(X, "toarray"):
        raise DataError("TabularPreprocessor: sparse input is not supported; pass X.toarray()")
    if isinstance(X, pd.DataFrame):
        if all(isinstance(c, str) for c in X.columns):
            return X, True
        return X.set_axis([f"x{i}" for i in range(X.shape[1])], axis=1), False
    array = np.asarray(X)
    if array.ndim != 2:
        raise DataError(
            f"TabularPreprocessor: expected a 2-D table but got shape {array.shape}; "
            "Reshape your data to (rows, columns)"
        )
    if np.iscomplexobj(array):
        raise DataError("TabularPreprocessor: Complex data not supported; pass real numbers")
    frame = pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])
    return (frame.infer_objects() if array.dtype == object else frame), False


def _finite_values(col: pd.Series, name: Hashable) -> np.ndarray:
    if pd.api.types.is_complex_dtype(col):
        raise DataError(f"TabularPreprocessor: Complex data not supported in column '{name}'")
    values = pd.to_numeric(col, errors="coerce").to_numpy("float64", na_value=np.nan)
    bad = np.flatnonzero(~(np.abs(values) <= FLOAT32_MAX) & col.notna().to_numpy())
    if bad.size:
        raise DataError(
            f"TabularPreprocessor: numeric column '{name}' has {_describe(col.iloc[bad[0]])} "
            f"at row {bad[0]}; use finite numbers or empty cells"
        )
    return values


def _first_unusable(values: np.ndarray) -> int | None:
    """Position of the first infinite value or one a float32 network cannot hold."""
    bad = np.flatnonzero(np.abs(values) > FLOAT32_MAX)  # NaN compares False
    return int(bad[0]) if bad.size else None


def _describe(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"the non-numeric value {_show(value)}"
    if math.isinf(number):
        return f"the infinite value {_show(value)}"
    if abs(number) > FLOAT32_MAX:
        return f"the value {_show(value)}, beyond the float32 range (3.4e38)"
    return f"the value {_show(value)}"
