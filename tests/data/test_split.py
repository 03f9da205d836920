"""Tests for regtune.data.split: the train/validation/test split and the cross-validation folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from regtune.data.split import (
    MIN_VAL_ROWS,
    cv_splits,
    resolve_cv,
    split_dataset,
)
from regtune.exceptions import DataError

# --- splitting ---------------------------------------------------------------------------


def imbalanced(n: int = 100) -> tuple[pd.DataFrame, pd.Series]:
    y = pd.Series(["a"] * (n * 4 // 5) + ["b"] * (n // 5))
    return pd.DataFrame({"x": np.arange(n, dtype=float)}), y


def test_split_proportions_cover_every_row_once() -> None:
    X, y = imbalanced(100)
    split = split_dataset(X, y, task="classification")
    parts = (split.X_train, split.X_val, split.X_test)
    assert [len(p) for p in parts] == [60, 20, 20]
    assert sorted(np.concatenate([p.index for p in parts]).tolist()) == list(range(100))
    for Xp, yp in zip(parts, (split.y_train, split.y_val, split.y_test), strict=True):
        assert Xp.index.equals(yp.index)


def test_split_is_stratified() -> None:
    X, y = imbalanced(100)
    split = split_dataset(X, y, task="classification", random_state=3)
    for part in (split.y_train, split.y_val, split.y_test):
        assert (part == "b").mean() == pytest.approx(0.2)


def test_split_is_deterministic_per_seed() -> None:
    X, y = imbalanced(100)
    first, again = (split_dataset(X, y, task="classification", random_state=7) for _ in range(2))
    other = split_dataset(X, y, task="classification", random_state=8)
    assert first.X_test.index.equals(again.X_test.index) and first.X_val.index.equals(
        again.X_val.index
    )
    assert not first.X_test.index.equals(other.X_test.index)


def test_regression_split_with_arrays_and_custom_sizes() -> None:
    X, y = np.arange(200).reshape(100, 2), np.linspace(0, 1, 100)
    split = split_dataset(X, y, task="regression", test_size=0.1, val_size=0.3)
    assert (len(split.y_train), len(split.y_val), len(split.y_test)) == (60, 30, 10)
    assert isinstance(split.X_train, np.ndarray)


@pytest.mark.parametrize(
    ("n", "kwargs", "pattern"),
    [
        (100, {"test_size": 0.0}, "test_size=0.0 must be between 0 and 1"),
        (100, {"val_size": 1.5}, "val_size=1.5 must be between 0 and 1"),
        (100, {"test_size": 0.5, "val_size": 0.5}, "leaves no training rows"),
        (2, {}, "the validation part of 2 rows would be empty"),
    ],
)
def test_split_rejects_bad_sizes(n: int, kwargs: dict[str, float], pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        split_dataset(np.zeros((n, 1)), np.arange(n, dtype=float), task="regression", **kwargs)


def test_split_rejects_mismatched_rows_and_unknown_tasks() -> None:
    with pytest.raises(DataError, match="X has 5 rows but y has 4"):
        split_dataset(np.zeros((5, 1)), np.arange(4.0), task="regression")
    with pytest.raises(DataError, match="task 'clustering' is unknown"):
        split_dataset(np.zeros((5, 1)), np.arange(5.0), task="clustering")  # type: ignore[arg-type]


def test_split_rejects_classes_too_small_to_stratify() -> None:
    y = pd.Series(["a"] * 20 + ["rare"] * 2)
    with pytest.raises(DataError, match="class 'rare' has 2 row"):
        split_dataset(np.zeros((22, 1)), y, task="classification")
    y = pd.Series([c for c in "abcdefgh" for _ in range(3)])  # 8 classes, 24 rows: test part of 5
    with pytest.raises(
        DataError, match="the validation part of 24 rows would have 5 rows for 8 classes"
    ):
        split_dataset(np.zeros((24, 1)), y, task="classification")


# --- cross-validation folds (split.py) ---------------------------------------------------


@pytest.mark.parametrize(
    ("n", "task", "folds"),
    [(120, "classification", 5), (499, "regression", 5), (500, "regression", 3), (999, "regression", 3),
     (1000, "regression", 1), (7, "regression", 3), (4, "regression", 2), (12, "classification", 3)],
)
def test_cv_auto_picks_folds_by_rows_and_caps_them_on_tiny_data(n: int, task: str, folds: int) -> None:
    y = np.arange(n) % 4 if task == "classification" else np.linspace(0, 1, n)
    assert resolve_cv("auto", y, task) == folds
    splits = cv_splits(y, task=task, cv="auto", random_state=0, val_share=0.25)
    assert len(splits) == folds
    assert min(len(val) for _, val in splits) >= MIN_VAL_ROWS


@pytest.mark.parametrize(
    ("cv", "y", "task", "message"),
    [("auto", np.arange(3.0), "regression", r"cv='auto': .* 3 rows, too few to cross-validate .*add rows"),
     ("auto", np.array([0, 0, 0, 0, 1, 2, 2, 2]), "classification", "1 in its smallest class"),
     (5, np.arange(6.0), "regression", r"cv=5: .* 6 rows, too few for 5 folds .*use cv between 2 and 3, or cv=1"),
     (3, np.array([0, 0, 0, 1, 1]), "classification", "with every class in each; use cv between 2 and 2")],
)
def test_cv_on_too_few_rows_says_what_to_do(cv: object, y: np.ndarray, task: str, message: str) -> None:
    """Issue 11: sklearn's "n_splits=5 > n_samples=3" though the user never chose 5."""
    with pytest.raises(DataError, match=message):
        resolve_cv(cv, y, task)  # type: ignore[arg-type]
