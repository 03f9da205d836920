"""Tests for regtune.data.preprocess: TabularPreprocessor."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from data_helpers import mixed_frame
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from regtune.data.loading import load_dataset
from regtune.data.preprocess import TabularPreprocessor
from regtune.exceptions import DataError

# --- preprocessing -----------------------------------------------------------------------


def test_numeric_columns_are_standardized_on_train() -> None:
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"a": rng.normal(5, 3, 200), "b": rng.exponential(10, 200)})
    out = TabularPreprocessor().fit_transform(X)
    assert out.dtype == np.float32 and out.shape == (200, 2)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=1e-5)


def test_constant_column_does_not_divide_by_zero() -> None:
    out = TabularPreprocessor().fit_transform(pd.DataFrame({"c": [3.0] * 5}))
    assert np.array_equal(out, np.zeros((5, 1), np.float32))


def test_categories_are_one_hot_with_nan_as_own_category_and_unknowns_as_zeros() -> None:
    X = pd.DataFrame(
        {
            "x": [1.0, 2.0, 3.0, 4.0],
            "color": ["red", "blue", None, "red"],
            "flag": [True, False, True, True],
        }
    )
    prep = TabularPreprocessor().fit(X)
    names = prep.get_feature_names_out().tolist()
    assert names == ["x", "color_blue", "color_red", "color_nan", "flag_False", "flag_True"]
    out = prep.transform(X)
    np.testing.assert_array_equal(out[:, 1:4], [[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]])
    new = prep.transform(pd.DataFrame({"x": [1.0], "color": ["green"], "flag": [False]}))
    np.testing.assert_array_equal(new[0, 1:], [0, 0, 0, 1, 0])


def test_nan_is_imputed_with_the_training_median() -> None:
    X = pd.DataFrame({"a": [1.0, 2.0, 10.0, np.nan]})
    prep = TabularPreprocessor().fit(X)
    out = prep.transform(pd.DataFrame({"a": [np.nan, 2.0]}))
    assert out[0, 0] == out[1, 0]


def test_json_round_trip_reproduces_the_transform_exactly() -> None:
    X = mixed_frame(60)
    X.loc[3, "age"] = np.nan
    X.loc[5, "city"] = None
    prep = TabularPreprocessor().fit(X)
    restored = TabularPreprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    new = pd.DataFrame(
        {
            "age": [np.nan, 30.0],
            "income": [1.0, 2e5],
            "city": ["rome", None],
            "label": ["yes", "maybe"],
        }
    )
    for data in (X, new):
        np.testing.assert_array_equal(restored.transform(data), prep.transform(data))
    assert restored.get_feature_names_out().tolist() == prep.get_feature_names_out().tolist()


def test_from_dict_rejects_foreign_state() -> None:
    with pytest.raises(
        DataError,
        match="expected a dict with format.*pass the output of TabularPreprocessor.to_dict",
    ):
        TabularPreprocessor.from_dict({"columns": []})
    broken_columns = [
        {"name": "a", "kind": "numeric"},
        {"name": "a", "kind": "numeric", "median": 0.0, "mean": 0.0, "scale": 0.0},
        {"name": "c", "kind": "categorical", "categories": [1, 2]},
        {"name": "c", "kind": "pickle", "categories": []},
    ]
    for column in broken_columns:
        state = {"format": "regtune.TabularPreprocessor/1", "by_name": True, "columns": [column]}
        with pytest.raises(DataError, match="is malformed"):
            TabularPreprocessor.from_dict(state)


def test_fit_on_no_rows_raises() -> None:
    with pytest.raises(DataError, match=r"X has 0 row\(s\) and 1 feature\(s\)"):
        TabularPreprocessor().fit(pd.DataFrame({"a": pd.Series([], dtype=float)}))


def test_transform_errors_name_the_column() -> None:
    prep = TabularPreprocessor().fit(pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}))
    with pytest.raises(DataError, match="column 'b' seen in fit is missing"):
        prep.transform(pd.DataFrame({"a": [1.0]}))
    with pytest.raises(DataError, match="numeric column 'a' has the infinite value inf at row 0"):
        prep.transform(pd.DataFrame({"a": [np.inf], "b": ["x"]}))
    with pytest.raises(DataError, match="numeric column 'a' has the non-numeric value 'abc'"):
        prep.transform(pd.DataFrame({"a": [1.0, "abc"], "b": ["x", "y"]}))
    with pytest.raises(DataError, match="X has 1 features, but TabularPreprocessor is expecting 2"):
        prep.transform(np.ones((3, 1)))


def test_columns_are_matched_by_name_and_arrays_by_position() -> None:
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [10.0, 20.0, 40.0]})
    prep = TabularPreprocessor().fit(X)
    np.testing.assert_array_equal(prep.transform(X[["b", "a"]].assign(extra=1)), prep.transform(X))
    by_position = TabularPreprocessor().fit(X.to_numpy())
    np.testing.assert_array_equal(by_position.transform(X.to_numpy()), prep.transform(X))
    assert by_position.get_feature_names_out().tolist() == ["x0", "x1"]


@parametrize_with_checks([TabularPreprocessor()])
def test_preprocessor_passes_sklearn_estimator_checks(estimator: object, check: object) -> None:
    check(estimator)  # type: ignore[operator]


def test_preprocessor_works_inside_sklearn_pipelines() -> None:
    data = load_dataset("iris")
    pipe = make_pipeline(TabularPreprocessor(), LogisticRegression(max_iter=500)).fit(
        data.X, data.y
    )
    assert pipe.score(data.X, data.y) > 0.9
    assert clone(pipe.steps[0][1]).get_params() == {}
