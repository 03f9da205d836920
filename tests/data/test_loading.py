"""Tests for regtune.data: loading, checks, split and preprocess (one section per module)."""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from locations import ROOT
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from regtune.data.checks import infer_task
from regtune.data.loading import (
    BUILTIN_DATASETS,
    Dataset,
    dataset_from_frame,
    load_dataset,
    read_table,
)
from regtune.data.preprocess import TabularPreprocessor
from regtune.data.split import (
    AUTO_CV,
    AUTO_MIN_TRIALS,
    AUTO_REPEATS,
    MIN_VAL_ROWS,
    cv_splits,
    resolve_cv,
    split_dataset,
)
from regtune.exceptions import DataError

FAST = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def mixed_frame(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, n).astype(float),
            "income": rng.normal(50_000, 10_000, n),
            "city": rng.choice(["paris", "lima", "oslo"], n),
            "label": rng.choice(["yes", "no"], n),
        }
    )


# --- built-in datasets -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "task", "shape", "image_shape"),
    [
        ("digits", "classification", (1797, 64), (1, 8, 8)),
        ("breast_cancer", "classification", (569, 30), None),
        ("wine", "classification", (178, 13), None),
        ("iris", "classification", (150, 4), None),
        ("diabetes", "regression", (442, 10), None),
    ],
)
def test_builtin_datasets_load_with_task_and_shapes(
    name: str, task: str, shape: tuple[int, int], image_shape: tuple[int, int, int] | None
) -> None:
    data = load_dataset(name)
    assert isinstance(data, Dataset)
    assert (data.name, data.task, data.X.shape, data.image_shape, data.target) == (
        name,
        task,
        shape,
        image_shape,
        "target",
    )
    assert len(data.y) == shape[0]
    assert np.isfinite(data.X.to_numpy()).all()
    if image_shape is not None:
        assert int(np.prod(image_shape)) == data.X.shape[1]


def test_builtin_names_match_the_cli_contract() -> None:
    assert set(BUILTIN_DATASETS) == {"digits", "breast_cancer", "wine", "iris", "diabetes"}


def test_builtin_dataset_rejects_another_target() -> None:
    with pytest.raises(DataError, match="fixed target column 'target'.*'petal'"):
        load_dataset("iris", target="petal")


def test_unknown_name_lists_the_builtin_names() -> None:
    with pytest.raises(
        DataError,
        match="'mnist' is neither a built-in dataset .*digits, breast_cancer, wine, iris, diabetes",
    ):
        load_dataset("mnist")


# --- files ------------------------------------------------------------------------------


def test_csv_round_trip_keeps_a_categorical_column(tmp_path: Path) -> None:
    frame = mixed_frame()
    path = tmp_path / "people.csv"
    frame.to_csv(path, index=False)
    data = load_dataset(path)
    assert (data.name, data.target, data.task) == ("people.csv", "label", "classification")
    pd.testing.assert_frame_equal(
        data.X.reset_index(drop=True), frame.drop(columns="label"), check_dtype=False
    )
    assert data.y.tolist() == frame["label"].tolist()


@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_parquet_round_trip_keeps_a_categorical_column(tmp_path: Path, suffix: str) -> None:
    frame = mixed_frame()
    frame["city"] = frame["city"].astype("category")
    path = tmp_path / f"people{suffix}"
    frame.to_parquet(path)
    data = load_dataset(str(path), target="income")
    assert (data.target, data.task) == ("income", "regression")
    assert list(data.X.columns) == ["age", "city", "label"]
    assert data.X["city"].astype(str).tolist() == frame["city"].astype(str).tolist()
    np.testing.assert_allclose(data.y.to_numpy(), frame["income"].to_numpy())


def test_task_override_wins_over_the_inferred_task(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    assert load_dataset(path).task == "classification"
    data = load_dataset(path, task="regression")
    assert data.task == "regression" and data.y.dtype == np.float64


def test_feature_nans_are_allowed_and_imputed_by_the_preprocessor(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "a,b,y\n1,,0\n,2,1\n3,4,0\n5,6,1\n7,8,0\n9,9,1\n")
    data = load_dataset(path)
    assert data.X.isna().sum().sum() == 2
    out = TabularPreprocessor().fit_transform(data.X)
    assert np.isfinite(out).all()


def test_integer_valued_float_labels_become_integers(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "a,y\n" + "".join(f"{i},{i % 3}.0\n" for i in range(30)))
    data = load_dataset(path)
    assert data.task == "classification" and data.y.dtype == np.int64


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


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("empty.csv", "", "is empty"),
        ("blank.csv", "\n\n  \n", "is empty"),
        ("header.csv", "a,b,y\n", r"has a header \(a, b, y\) but no data rows"),
        ("single.csv", "a,y\n1,3\n2,3\n3,3\n", "target 'y' has the single value 3 in every row"),
        ("nan.csv", "a,y\n1,0\n2,\n3,1\n4,0\n", "target 'y' has 1 missing value.*line 3"),
        (
            "inf.csv",
            "a,y\n1,0.5\n2,inf\n3,1.5\n",
            "target 'y' has the infinite value inf at line 3",
        ),
        (
            "rare.csv",
            "a,y\n1,a\n2,a\n3,a\n4,b\n5,b\n6,b\n7,c\n8,c\n",
            r"needs 3 rows per class.*: 'c' \(2 row\(s\)\)",
        ),
        (
            "garbage.csv",
            "age,y\n12,0.5\n7,1.5\nabc,0.5\n",
            "column 'age' is numeric but has the non-numeric value 'abc' at line 4",
        ),
        (
            "blankcell.csv",
            "age,y\n12,0.5\n \t,1.5\n7,0.5\n",
            r"column 'age' is numeric but has the non-numeric value ' \\t' at line 3",
        ),
        (
            "featinf.csv",
            "a,b,y\n1,2,0.5\n-inf,3,1.5\n",
            "column 'a' has the infinite value -inf at line 3",
        ),
        (
            "huge.csv",
            "a,y\n1e39,0.5\n2,1.5\n",
            r"column 'a' has the value 1e\+39, beyond the float32",
        ),
        (
            "hugey.csv",
            "a,y\n1,-1e39\n2,1.5\n",
            r"target 'y' has the value -1e\+39, beyond the float32",
        ),
        ("quote.csv", 'a,y\n"1,0\n2,1\n', "cannot be read as CSV"),
        ("extra.csv", "a,y\n1,0,5\n2,1\n", "more fields than the header"),
        ("semicolon.csv", "a;y\n1;0\n2;1\n", "no feature columns.*comma"),
        ("target.csv", "a,b\n1,2\n", None),
        ("types.txt", "a,b\n1,2\n", "unsupported extension '.txt'; save it as .csv or .parquet"),
    ],
)
def test_bad_files_raise_a_data_error_naming_the_problem(
    tmp_path: Path, name: str, content: str, pattern: str | None
) -> None:
    path = write_csv(tmp_path / name, content)
    if pattern is None:  # the missing-target case lists the columns
        with pytest.raises(
            DataError, match="has no target column 'label'; available columns: a, b"
        ):
            load_dataset(path, target="label")
        return
    with pytest.raises(DataError, match=pattern):
        load_dataset(path)


def test_missing_file_and_directory_raise_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope.csv")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(DataError, match="is a directory"):
        load_dataset(tmp_path / "dir.csv")


def test_non_utf8_csv_and_corrupt_parquet_raise_data_errors(tmp_path: Path) -> None:
    (tmp_path / "latin.csv").write_bytes(b"a,y\n\xff\xfe,1\n")
    with pytest.raises(DataError, match="not UTF-8"):
        load_dataset(tmp_path / "latin.csv")
    (tmp_path / "bad.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match="cannot be read as PARQUET"):
        load_dataset(tmp_path / "bad.parquet")


def test_header_only_parquet_raises(tmp_path: Path) -> None:
    pd.DataFrame({"a": pd.Series([], dtype=float), "y": pd.Series([], dtype=int)}).to_parquet(
        tmp_path / "e.parquet"
    )
    with pytest.raises(DataError, match="but no data rows"):
        load_dataset(tmp_path / "e.parquet")


def test_frame_level_errors() -> None:
    frame = pd.DataFrame([[1, 2, 0], [3, 4, 1]], columns=["a", "a", "y"])
    with pytest.raises(DataError, match="has the column 'a' more than once; rename the duplicates"):
        dataset_from_frame(frame)
    with pytest.raises(DataError, match="non-numeric values such as 'x'.*task='classification'"):
        dataset_from_frame(
            pd.DataFrame({"a": [1, 2, 3, 4], "y": ["x", "z", "x", "z"]}), task="regression"
        )
    with pytest.raises(DataError, match="task 'ranking' is unknown"):
        dataset_from_frame(pd.DataFrame({"a": [1, 2], "y": [1.5, 2.5]}), task="ranking")  # type: ignore[arg-type]
    with pytest.raises(
        DataError, match=r"100 classes in 100 rows.*'c0' \(1 row\(s\)\).*and 95 more"
    ):
        dataset_from_frame(pd.DataFrame({"a": range(100), "y": [f"c{i}" for i in range(100)]}))


def test_read_table_reads_feature_rows_with_the_same_checks(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "rows.csv", "age,city\n31,lima\n,oslo\n")
    frame = read_table(path)
    assert frame.shape == (2, 2) and frame["city"].tolist() == ["lima", "oslo"]
    write_csv(path, "age,city\n31,lima\n12,oslo\n7,rome\nold,lima\n")
    with pytest.raises(DataError, match="column 'age' is numeric but has .* 'old' at line 5"):
        read_table(path)
    with pytest.raises(DataError, match="does not exist"):
        read_table(tmp_path / "missing.parquet")


def test_dataset_from_frame_leaves_the_callers_frame_alone() -> None:
    frame = pd.DataFrame({"n": ["1", "2", "3"], "y": [0.5, 1.5, 2.5]})
    data = dataset_from_frame(frame)
    assert data.X["n"].dtype == np.float64 and frame["n"].tolist() == ["1", "2", "3"]
    assert list(frame.columns) == ["n", "y"]


def test_text_column_of_numbers_becomes_numeric_and_mixed_text_stays_categorical() -> None:
    frame = pd.DataFrame(
        {"n": ["1", "2.5", None, "4"], "size": ["S", "M", "10", "12"], "y": [0, 1.5, 0, 1]}
    )
    data = dataset_from_frame(frame)
    assert data.X["n"].dtype == np.float64
    assert data.X["size"].tolist() == ["S", "M", "10", "12"]


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


def test_readme_and_docstrings_state_the_cv_auto_thresholds_of_the_code() -> None:
    """Issue 11: the README said 500/1,000 rows, RegTuneClassifier's docstring 1000/5000."""
    from regtune import RegTuneClassifier

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    docstring = " ".join(RegTuneClassifier.__doc__.split())
    help_text = app_help_for("tune", "cv")
    (first, k1), (second, k2) = AUTO_CV
    phrase = f"{k1} folds under {first:,} rows in the search part, {k2} under {second:,}, else one validation split"
    budget = f"{AUTO_REPEATS} repeats of those folds when {AUTO_MIN_TRIALS} trials still fit"  # issue 12
    for text, where in ((readme, "README"), (docstring, "RegTuneClassifier's docstring"), (help_text, "tune --help")):
        assert phrase in " ".join(text.split()), f"{where} does not say {phrase!r}"
        assert budget in " ".join(text.split()), f"{where} does not say {budget!r}"


def app_help_for(command: str, option: str) -> str:
    """The help text of one option of a ``regtune`` command."""
    import typer

    from regtune.cli.app import app

    params = typer.main.get_command(app).commands[command].params  # type: ignore[attr-defined]
    return next(p.help for p in params if p.name == option)


def test_readme_and_docstrings_name_the_preprocessor_the_same_way() -> None:
    """Issue 11: the README said ``regtune.make_preprocessor()``, the docstrings
    ``regtune.data.preprocess.make_preprocessor()``; it is one public name for one class."""
    import regtune
    from regtune import RegTuneClassifier, RegularizedNetClassifier

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "regtune.make_preprocessor()" in readme and "TabularPreprocessor" in readme
    assert "make_pipeline(regtune.make_preprocessor(), RegTuneClassifier(...))" in RegTuneClassifier.__doc__
    assert "regtune.data.preprocess.make_preprocessor" not in RegTuneClassifier.__doc__
    assert isinstance(regtune.make_preprocessor(), TabularPreprocessor)
    assert "TabularPreprocessor" in regtune.make_preprocessor.__doc__
    with pytest.raises(DataError, match=r"make_pipeline\(regtune.make_preprocessor\(\)"):
        RegularizedNetClassifier(max_epochs=1).fit(pd.DataFrame({"a": ["x", "y"] * 5}), [0, 1] * 5)


# --- properties --------------------------------------------------------------------------

finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)
cells = st.one_of(finite, st.just(np.nan))


@st.composite
def numeric_frames(draw: st.DrawFn) -> pd.DataFrame:
    n_rows, n_cols = draw(st.integers(3, 25)), draw(st.integers(1, 5))
    values = draw(hnp.arrays(np.float64, (n_rows, n_cols), elements=cells))
    frame = pd.DataFrame(values, columns=[f"f{i}" for i in range(n_cols)])
    frame["y"] = np.arange(n_rows) + 0.5  # distinct, so always a valid regression target
    return frame


@FAST
@given(frame=numeric_frames())
def test_random_numeric_csv_loads_back_with_the_same_shape(
    tmp_path: Path, frame: pd.DataFrame
) -> None:
    path = tmp_path / "random.csv"
    frame.to_csv(path, index=False)
    data = load_dataset(path)
    assert data.X.shape == (len(frame), frame.shape[1] - 1) and data.task == "regression"
    np.testing.assert_allclose(
        data.X.to_numpy(dtype=float), frame.drop(columns="y").to_numpy(), rtol=1e-6
    )


@FAST
@given(frame=numeric_frames(), data=st.data())
def test_a_garbage_cell_always_gives_a_data_error_naming_it(
    tmp_path: Path, frame: pd.DataFrame, data: st.DataObject
) -> None:
    row = data.draw(st.integers(0, len(frame) - 1))
    col = data.draw(st.sampled_from(list(frame.columns)))
    junk = "x" + data.draw(st.text(string.ascii_letters + string.punctuation + " ", max_size=6))
    frame[col] = frame[col].fillna(0.0)  # numbers stay the majority, so the text is garbage
    frame = frame.astype(object)
    frame.loc[row, col] = junk
    path = tmp_path / "junk.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        load_dataset(path)
    assert f"column '{col}'" in str(info.value) and repr(junk) in str(info.value)


@FAST
@given(text=st.text(max_size=80))
def test_any_csv_text_loads_or_raises_data_error(tmp_path: Path, text: str) -> None:
    path = write_csv(tmp_path / "fuzz.csv", text)
    try:
        data = load_dataset(path)
    except DataError:
        return
    assert len(data.X) == len(data.y) > 0 and data.X.shape[1] >= 1


@FAST
@given(blob=st.binary(max_size=64))
def test_any_bytes_as_parquet_raise_data_error(tmp_path: Path, blob: bytes) -> None:
    (tmp_path / "fuzz.parquet").write_bytes(blob)
    with pytest.raises(DataError):
        load_dataset(tmp_path / "fuzz.parquet")


@FAST
@given(
    frame=numeric_frames(),
    labels=st.lists(st.sampled_from(["a", "b", None]), min_size=25, max_size=25),
)
def test_preprocessor_output_is_finite_and_survives_json(
    frame: pd.DataFrame, labels: list[str | None]
) -> None:
    frame["cat"] = labels[: len(frame)]
    prep = TabularPreprocessor().fit(frame)
    out = prep.transform(frame)
    assert np.isfinite(out).all() and out.shape == (len(frame), len(prep.get_feature_names_out()))
    restored = TabularPreprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    np.testing.assert_array_equal(restored.transform(frame), out)


def test_unused_categories_of_a_categorical_target_are_not_classes() -> None:
    y = pd.Series(pd.Categorical(["a", "b"] * 3, categories=["a", "b", "never"]))
    data = dataset_from_frame(pd.DataFrame({"x": range(6), "y": y}))
    assert data.task == "classification" and list(data.y.cat.categories) == ["a", "b"]


def test_a_very_wide_csv_with_too_few_rows_is_refused_quickly(tmp_path: Path) -> None:
    """Issue 17 item 6: 100,000 columns and 4 rows ran > 200 s in per-column checks."""
    import time

    n = 100_000
    row = ",".join(["0.5"] * n)
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(n)) + ",y\n" + "".join(f"{row},{i % 2}\n" for i in range(4)))
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"target 'y' has 2 classes in 4 rows.*needs 3 rows per class"):
        load_dataset(path)
    assert time.perf_counter() - start < 20  # a sanity bound; benchmarks/ time it properly


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


@pytest.mark.parametrize("kind", ["list", "struct", "ndarray"])
def test_nested_cells_are_refused_naming_the_column(tmp_path: Path, kind: str) -> None:
    """Issue 17 item 8: list / struct cells of a Parquet file ended in 'unhashable type'."""
    pytest.importorskip("pyarrow")
    n = 12
    cell = {"list": lambda i: [i, i + 1], "struct": lambda i: {"a": i, "b": "x"},
            "ndarray": lambda i: np.array([i, i])}[kind]
    frame = pd.DataFrame({"a": np.arange(n, dtype=float), "tags": [cell(i) for i in range(n)], "y": np.arange(n) % 2})
    path = tmp_path / "nested.parquet"
    frame.to_parquet(path)
    with pytest.raises(DataError, match=r"nested.parquet: column 'tags' holds \w+ values such as .* at row 0; "
                                        r"a cell must hold one number or category"):
        load_dataset(path)
    with pytest.raises(DataError, match=r"column 'tags' holds"):
        read_table(path)
    with pytest.raises(DataError, match=r"column 'y' holds"):  # a nested target, too
        dataset_from_frame(frame.assign(y=frame["tags"]).drop(columns="tags"), "y")
