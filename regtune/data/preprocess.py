"""Tables into float32 matrices: numeric columns scaled, categorical ones one-hot encoded.

Missing values in numeric columns are filled with the training median; missing values in
categorical columns become a category of their own.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from regtune.data.checks import FLOAT32_MAX, describe, is_numeric, listing
from regtune.exceptions import DataError

__all__ = ["TabularPreprocessor", "make_preprocessor"]


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
            if is_numeric(col):
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
                    f"available columns: {listing(frame.columns)}"
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
    """A new :class:`TabularPreprocessor`, for tables with text or categorical columns:
    ``make_pipeline(regtune.make_preprocessor(), RegularizedNetClassifier())``.

    The network estimators take numbers only; ``regtune.make_preprocessor()`` is the public
    name for the preprocessor ``regtune tune`` and the ``RegTune*`` estimators fit themselves.
    """
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
            f"TabularPreprocessor: numeric column '{name}' has {describe(col.iloc[bad[0]])} "
            f"at row {bad[0]}; use finite numbers or empty cells"
        )
    return values
