"""Data in: built-in datasets by name, ``.csv`` / ``.parquet`` files, and DataFrames.

Whatever the source, the table goes through :mod:`regtune.data.checks` once and comes out
as a :class:`Dataset`; bad input raises :class:`DataError` with one sentence that names the
thing, the value and the fix.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from regtune.data.checks import (
    Task,
    check_cells,
    check_names,
    check_target,
    listing,
    row_locator,
)
from regtune.data.images import read_image_folder, read_npz
from regtune.exceptions import DataError

__all__ = [
    "BUILTIN_DATASETS",
    "DataError",
    "Dataset",
    "dataset_from_frame",
    "load_dataset",
    "read_table",
]

FILE_SUFFIXES: tuple[str, ...] = (".csv", ".parquet", ".pq")


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
    CNN can be built for it; ``None`` for plain tables. ``source`` is where it can be read
    again (a built-in name or a file's absolute path; ``None`` for a DataFrame), which is how
    ``regtune report`` and ``ablate`` reload a study's data.
    """

    name: str
    X: pd.DataFrame
    y: pd.Series
    task: Task
    image_shape: tuple[int, int, int] | None
    target: str
    source: str | None = None


def load_dataset(
    source: str | Path, target: str | None = None, *, task: Task | None = None
) -> Dataset:
    """Load a built-in dataset by name, a ``.csv`` / ``.parquet`` / ``.pq`` file, a ``.npz`` file
    (arrays ``X`` and ``y``; images as ``(N, C, H, W)``) or a folder of images in class
    sub-folders (:mod:`regtune.data.images`), and check it.

    Parameters
    ----------
    source : str or Path
        A name from :data:`BUILTIN_DATASETS` (names win over files of the same name) or a path.
    target : str, optional
        Target column of a file; defaults to its last column.
    task : {"classification", "regression"}, optional
        Overrides the task guessed by :func:`~regtune.data.checks.infer_task`.

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
        dataset = dataset_from_frame(
            frame, "target", task=task or builtin_task, name=source, image_shape=image_shape
        )
        return replace(dataset, source=source)
    path = Path(source)
    images = path.is_dir() and path.suffix.lower() not in FILE_SUFFIXES  # "data.csv/" is a mistake
    if images or path.suffix.lower() == ".npz":
        if target not in (None, "y", "target"):
            what = "the array y" if path.suffix.lower() == ".npz" else "its class sub-folders"
            raise DataError(f"'{source}' takes its target from {what}, not from a column {target!r}; "
                            "leave the target unset")
        frame, shape = read_image_folder(path) if images else read_npz(path)
        dataset = dataset_from_frame(frame, "target", task=task or ("classification" if images else None),
                                     name=path.name, image_shape=shape)
        return replace(dataset, source=str(path.resolve()))
    if not path.exists() and path.suffix.lower() not in FILE_SUFFIXES:
        raise DataError(
            f"'{source}' is neither a built-in dataset ({', '.join(BUILTIN_DATASETS)}) nor an "
            "existing file; use one of those names or a path to a .csv, .parquet or .npz file, or a "
            "folder of images in class sub-folders"
        )
    frame, line_offset = _read_file(path)
    dataset = dataset_from_frame(frame, target, task=task, name=path.name, line_offset=line_offset)
    return replace(dataset, y=_strip_label_spaces(dataset), source=str(path.resolve()))


def _strip_label_spaces(dataset: Dataset) -> pd.Series:
    """The class labels of a file with spaces around them stripped, with a one-line note.

    ``yes``, `` yes`` and ``yes `` in a file are one class written carelessly, not three. Only
    files get this, and only once the checks have found the target to be class labels (a stray
    ``"x "`` in a numeric column is still reported as it was written); the estimators keep
    scikit-learn's rule that labels are exact values.
    """
    y = dataset.y
    if dataset.task != "classification" or not (pd.api.types.is_object_dtype(y) or pd.api.types.is_string_dtype(y)):
        return y
    spaced = sorted({v for v in y.dropna().unique() if isinstance(v, str) and v != v.strip()})
    if not spaced:
        return y
    shown = ", ".join(repr(v) for v in spaced[:5]) + (f" and {len(spaced) - 5} more" if len(spaced) > 5 else "")
    warnings.warn(f"{dataset.name}: target '{dataset.target}' has labels with spaces around them ({shown}); they "
                  "are read without the spaces, as the same classes as the labels written without them",
                  UserWarning, stacklevel=3)
    return y.astype(object).map(lambda v: v.strip() if isinstance(v, str) else v)


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
    frame = check_names(frame, path.name)
    return check_cells(frame, path.name, row_locator(frame, line_offset), target=None)


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
    if suffix == ".csv":
        _check_csv_is_text(path)
    try:
        if suffix != ".csv":
            return pd.read_parquet(path), None
        with warnings.catch_warnings():
            # a row longer than the header would silently become the index or lose fields
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(path, index_col=False)
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
    _check_csv_header(path, frame)
    return frame, 2  # line 1 is the header


# Leading bytes of binary formats that end up named .csv, and what to do about each.
_NOT_CSV: tuple[tuple[bytes, str, str], ...] = (
    (b"\x1f\x8b", "gzip-compressed", "decompress it first (gunzip -c FILE > data.csv)"),
    (b"BZh", "bzip2-compressed", "decompress it first (bunzip2 -c FILE > data.csv)"),
    (b"\xfd7zXZ\x00", "xz-compressed", "decompress it first (xz -dc FILE > data.csv)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "decompress it first (zstd -dc FILE > data.csv)"),
    (b"PK\x03\x04", "a ZIP archive (an .xlsx workbook?)",
     "unzip it, or export the sheet as CSV (UTF-8)"),
    (b"\xd0\xcf\x11\xe0", "an Excel .xls workbook", "export the sheet as CSV (UTF-8)"),
    (b"PAR1", "a Parquet file", "rename it to .parquet"),
)


def _check_csv_is_text(path: Path) -> None:
    """A binary file named .csv would fail as "not UTF-8 text"; say what it is instead."""
    with path.open("rb") as f:
        head = f.read(8)
    for magic, what, fix in _NOT_CSV:
        if head.startswith(magic):
            raise DataError(f"data file '{path}' is {what}, not CSV text; {fix.replace('FILE', str(path))}")


def _check_csv_header(path: Path, frame: pd.DataFrame) -> None:
    """pandas renames a repeated header to ``a.1``: refuse instead, naming the repeats."""
    names = [str(c) for c in frame.columns]
    if not any(re.fullmatch(r".+\.[0-9]+", n) for n in names):
        return
    raw = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False, index_col=False)
    header = [str(v) for v in raw.iloc[0].tolist()] if len(raw) else []
    repeated = sorted({n for n in header if header.count(n) > 1})
    if repeated:
        shown = ", ".join(f"'{n}' ({header.count(n)} times)" for n in repeated)
        raise DataError(f"data file '{path}' has repeated column names in its header: {shown}; "
                        "give every column its own name")


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
    frame = check_names(frame, name)
    target = frame.columns[-1] if target is None else str(target)
    if target not in frame.columns:
        raise DataError(
            f"{name} has no target column '{target}'; available columns: {listing(frame.columns)}"
        )
    if frame.shape[1] == 1:
        hint = " (if the file is not comma-separated, save it with commas)" if line_offset else ""
        raise DataError(
            f"{name} has only the target column '{target}' and no feature columns{hint}; "
            "add feature columns"
        )
    where = row_locator(frame, line_offset)
    # The target first: too few rows or classes refuse the table before any per-column work.
    y = check_cells(frame[[target]], name, where, target)[target]
    y, task = check_target(y, f"{name}: target '{target}'", where, task)
    X = check_cells(frame, name, where, target).drop(columns=[target])
    return Dataset(name, X, y, task, image_shape, target)
