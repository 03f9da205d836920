"""Tests for regtune.data.checks: the task inference rule and the column-by-column checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from regtune.data.checks import infer_task
from regtune.data.loading import dataset_from_frame
from regtune.exceptions import DataError


@pytest.mark.parametrize(
    ("y", "task"),
    [
        (["cat", "dog"] * 3, "classification"),
        ([True, False] * 3, "classification"),
        ([0, 1, 1, 0], "classification"),  # two whole numbers, however few rows
        ([0, 1, 2] * 10, "classification"),  # 3 values, 30 rows: 10 per value on average
        ([0, 1, 2] * 9 + [0, 1], "regression"),  # 3 values, 29 rows: fewer than 10 per value
        ([float(i % 20) for i in range(200)], "classification"),  # 20 whole-number values
        ([i % 21 for i in range(1000)], "regression"),  # 21 values is too many classes
        ([0.5, 1.0, 2.0] * 20, "regression"),  # not whole numbers
    ],
)
def test_task_inference_rule(y: list[object], task: str) -> None:
    assert infer_task(pd.Series(y)) == task


def test_a_wide_table_passes_the_checks_column_by_column_rules_intact() -> None:
    """The vectorized checks keep every per-column rule, and name the first bad column."""
    rng = np.random.default_rng(0)
    n_rows, n_cols = 30, 20_000
    frame = pd.DataFrame(rng.random((n_rows, n_cols)), columns=[f"c{i}" for i in range(n_cols)])
    frame["txt_num"] = [str(v) for v in range(n_rows)]  # numbers typed as text become numbers
    frame["cat"] = ["a", "b", "c"] * (n_rows // 3)  # text stays categorical
    frame["y"] = np.arange(n_rows) % 2
    data = dataset_from_frame(frame, "y")
    assert data.X.shape == (n_rows, n_cols + 2) and list(data.X.columns) == list(frame.columns[:-1])
    assert data.X["txt_num"].dtype == np.float64 and data.X["txt_num"].iloc[7] == 7.0
    assert data.X["cat"].tolist() == frame["cat"].tolist() and data.task == "classification"
    np.testing.assert_array_equal(data.X.iloc[:, :n_cols].to_numpy(), frame.iloc[:, :n_cols].to_numpy())
    bad = frame.copy()
    bad["c19000"] = bad["c19000"].astype(object)
    bad.loc[5, "c19000"] = "oops"  # one stray string in a numeric column far to the right
    bad.loc[3, "c19999"] = np.inf
    with pytest.raises(DataError, match=r"column 'c19000' is numeric but has the non-numeric value 'oops' at row 5"):
        dataset_from_frame(bad, "y")
    bad.loc[5, "c19000"] = 0.1
    with pytest.raises(DataError, match=r"column 'c19999' has the infinite value inf at row 3"):
        dataset_from_frame(bad, "y")
