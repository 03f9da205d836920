"""Tests for regtune.data.loading (tests of checks, split and preprocess: their own files here)."""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from data_helpers import mixed_frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from locations import ROOT

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
)
from regtune.exceptions import DataError

FAST = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


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
