"""Bad input, through the CLI and the Python API, fails early, clearly and without leftovers.

CLI: exactly one stderr line starting ``regtune: error:``, exit code 2, no traceback. API: a
specific exception (DataError, SearchSpaceError, TuneError, StudyError, TrackingError, or a
ValueError naming the parameter). In both cases nothing is half-written: no study in the
journal, no MLflow run. The last section holds the security checks: secrets in URLs stay
masked, ``regtune ui`` listens on loopback, and a tampered model file is refused, not run.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import pickle
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from worker_helpers import mlflow_runs, regtune_command, wait_for

from regtune.cli.app import main
from regtune.data.loading import load_dataset
from regtune.exceptions import DataError
from regtune.space.space import SearchSpace, SearchSpaceError

UNREACHABLE_STORAGE = "postgresql+psycopg://u:Pw-9f3b@127.0.0.1:1/x"


# ---- helpers ---------------------------------------------------------------------------------


def _cli(argv: list[Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``regtune ARGV`` in this process; its exit code, stdout and stderr."""
    capsys.readouterr()
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_error_line(code: int, err: str, *words: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit code {code}; stderr:\n{err}"
    assert len(lines) == 1 and lines[0].startswith("regtune: error: "), f"stderr:\n{err}"
    assert "Traceback" not in err
    for word in words:
        assert word.lower() in lines[0].lower(), f"{word!r} not in {lines[0]!r}"
    return lines[0]


def _assert_nothing_written(cwd: Path) -> None:
    """No study in the default journal, no MLflow run, no run artifacts under ``cwd``."""
    journal = cwd / "regtune.journal"
    if journal.exists():
        import optuna
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        names = optuna.study.get_all_study_names(JournalStorage(JournalFileBackend(str(journal))))
        assert names == [], f"a study was created: {names}"
    assert mlflow_runs(cwd / "mlflow.db") == [], "an MLflow run was created"
    runs = [p for p in (cwd / "mlruns").glob("*/*") if p.is_dir()] if (cwd / "mlruns").exists() else []
    assert runs == [], f"run artifacts were written: {runs}"


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory: the CLI writes its journal and MLflow store into the cwd."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "WARNING")  # restored after the test
    monkeypatch.delenv("REGTUNE_DEBUG", raising=False)
    return tmp_path


def _iris_frame(rows: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "a": rng.normal(size=rows), "b": rng.normal(size=rows),
        "y": np.array(["x", "y", "z"])[np.arange(rows) % 3],
    })


# ---- data files: CLI and load_dataset --------------------------------------------------------


def _csv(text: str) -> Any:
    return lambda path: path.write_text(text)


def _cell(col: str, row: int, value: Any) -> Any:
    def write(path: Path) -> None:
        frame = _iris_frame().astype(object)
        frame.loc[row, col] = value
        frame.to_csv(path, index=False)

    return write


BAD_DATA = {
    # id: (write the file, extra CLI args, words the message must contain)
    "empty-file": (_csv(""), [], ["empty"]),
    "header-only": (_csv("a,b,y\n"), [], ["no data rows"]),
    "missing-target": (_cell("a", 0, 1.0), ["--target", "label"], ["label", "a, b, y"]),
    "garbage-in-numeric-column": (_cell("a", 5, "abc"), [], ["'a'", "abc", "line 7"]),
    "nan-in-target": (_cell("y", 3, ""), [], ["missing", "line 5"]),
    "inf-in-feature": (_cell("b", 2, "inf"), [], ["'b'", "infinite"]),
    "huge-in-feature": (_cell("b", 2, "1e300"), [], ["'b'", "float32"]),
    "inf-in-target": (_csv("a,y\n" + "".join(f"{i},{i * 0.37}\n" for i in range(29)) + "1,-inf\n"),
                      [], ["target", "infinite"]),
    "one-class": (_csv("a,y\n" + "".join(f"{i},same\n" for i in range(20))), [], ["single value"]),
    "more-classes-than-rows": (_csv("a,y\n1,p\n2,q\n3,r\n4,s\n5,t\n"), [], ["classes", "rows"]),
    "ragged-row": (_csv("a,b,y\n1,2,x\n1,2,3,x\n"), [], ["fields", "line 3"]),
    "only-target-column": (_csv("y\n1\n2\n1\n2\n"), [], ["no feature columns"]),
    "not-utf8": (lambda p: p.write_bytes(b"a,y\n\xff\xfe,1\n\x81,2\n"), [], ["utf-8"]),
    # issue 11: these were "not UTF-8 text", a silent rename to 'a.1', and NaN scores blaming lr
    "gzip-named-csv": (lambda p: p.write_bytes(gzip.compress(_iris_frame().to_csv(index=False).encode())), [],
                       ["gzip-compressed", "decompress"]),
    "xlsx-named-csv": (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(64)), [], ["zip", "export"]),
    "repeated-header": (_csv("a,b,a,y\n" + "".join(f"{i},{i % 3},{i * 2},{'xyz'[i % 3]}\n" for i in range(30))),
                        [], ["repeated", "'a' (2 times)"]),
    "absurd-regression-target": (_csv("a,y\n" + "".join(f"{i},{i * 0.37}\n" for i in range(29)) + "1,1e20\n"), [],
                                 ["target", "1e+20", "line 31", "spread", "drop that row"]),
}


@pytest.mark.parametrize("case", list(BAD_DATA), ids=list(BAD_DATA))
def test_bad_data_file_is_one_line_through_the_cli(case: str, cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write, extra, words = BAD_DATA[case]
    write(cwd / "data.csv")
    code, out, err = _cli(["tune", "data.csv", "--trials", 1, *extra], capsys)
    _assert_one_error_line(code, err, *words)
    _assert_nothing_written(cwd)


@pytest.mark.parametrize("case", list(BAD_DATA), ids=list(BAD_DATA))
def test_bad_data_file_raises_data_error_from_load_dataset(case: str, tmp_path: Path) -> None:
    write, extra, words = BAD_DATA[case]
    write(tmp_path / "data.csv")
    target = extra[1] if extra else None
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path / "data.csv", target)
    for word in words:
        assert word.lower() in str(info.value).lower()


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ("no_such_file.csv", ["no_such_file.csv", "does not exist"]),
        ("no_such_name", ["no_such_name", "built-in"]),
        ("data.txt", ["unsupported extension"]),
    ],
)
def test_data_that_is_not_there_is_one_line(data: str, words: list[str], cwd: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "data.txt").write_text("a,y\n1,2\n")
    code, _, err = _cli(["tune", data], capsys)
    _assert_one_error_line(code, err, *words)
    _assert_nothing_written(cwd)


# ---- search spaces: CLI and SearchSpace.from_yaml --------------------------------------------

_GOOD_HEAD = "fixed:\n  max_epochs: 3\n"
BAD_SPACES = {
    "yaml-syntax": ("params:\n  lr: {type: float, low: 1.0e-4, high: [1\n", ["line"]),
    "unknown-top-key": (_GOOD_HEAD + "paramz:\n  lr: {type: float, low: 1.0e-4, high: 1.0e-2, default: 1.0e-3}\n",
                        ["paramz"]),
    "unknown-param-key": (_GOOD_HEAD + "params:\n  lr: {type: float, low: 1.0e-4, hihg: 1.0e-2, default: 1.0e-3}\n",
                          ["hihg"]),
    "wrong-type": (_GOOD_HEAD + "params:\n  lr: {type: float, low: abc, high: 1.0e-2, default: 1.0e-3}\n",
                   ["abc"]),
    "unknown-param-type": (_GOOD_HEAD + "params:\n  lr: {type: floaty, low: 1.0e-4, high: 1.0e-2}\n", ["floaty"]),
    "low-above-high": (_GOOD_HEAD + "params:\n  lr: {type: float, low: 1.0e-2, high: 1.0e-4, default: 1.0e-3}\n",
                       ["low", "high"]),
    "rate-of-one": (_GOOD_HEAD + "regularizers:\n  dropout:\n    dropout: {type: float, low: 0.1, high: 1.0}\n",
                    ["dropout", "1"]),
    "unknown-regularizer": (_GOOD_HEAD + "regularizers:\n  dropoutt:\n", ["dropoutt"]),
    "not-a-mapping": ("- just\n- a list\n", ["mapping"]),
    "empty": ("", ["empty"]),
    "python-tag": ("fixed: !!python/object/apply:os.system ['echo pwned']\n", []),
    # issue 11: was accepted, and every trial was the same configuration
    "nothing-to-search": ("description: fixed only\nfixed:\n  max_epochs: 3\n", ["no params", "regularizers"]),
}


@pytest.mark.parametrize("case", list(BAD_SPACES), ids=list(BAD_SPACES))
def test_bad_space_is_one_line_through_the_cli(case: str, cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, words = BAD_SPACES[case]
    (cwd / "space.yaml").write_text(text)
    code, _, err = _cli(["tune", "iris", "--space", "space.yaml", "--trials", 1], capsys)
    line = _assert_one_error_line(code, err, *words)
    assert "space.yaml" in line, "the message names the file"
    _assert_nothing_written(cwd)


@pytest.mark.parametrize("case", list(BAD_SPACES), ids=list(BAD_SPACES))
def test_bad_space_raises_search_space_error(case: str, tmp_path: Path) -> None:
    text, words = BAD_SPACES[case]
    (tmp_path / "space.yaml").write_text(text)
    with pytest.raises(SearchSpaceError) as info:
        SearchSpace.from_yaml(tmp_path / "space.yaml")
    for word in words:
        assert word.lower() in str(info.value).lower()


def test_unknown_space_name_is_one_line(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(["tune", "iris", "--space", "no-such-space"], capsys)
    _assert_one_error_line(code, err, "no-such-space", "minimal")
    _assert_nothing_written(cwd)


# ---- settings --------------------------------------------------------------------------------

BAD_OPTIONS = {
    "unknown-sampler": (["--sampler", "annealing"], ["sampler", "annealing", "tpe"]),
    "unknown-pruner": (["--pruner", "guillotine"], ["pruner", "guillotine", "hyperband"]),
    "zero-trials": (["--trials", 0], ["trials"]),
    "trials-not-a-number": (["--trials", "many"], ["--trials", "integer"]),
    "cv-not-a-number": (["--cv", "three"], ["cv", "three"]),
    "zero-jobs": (["--jobs", 0], ["jobs"]),
    "negative-timeout": (["--timeout", -5], ["timeout"]),
    "negative-retries": (["--retry-failed", -1], ["retry_failed"]),
    "zero-heartbeat": (["--heartbeat", 0], ["heartbeat"]),
    "negative-grace": (["--grace", -2], ["grace"]),
    "unknown-metric": (["--metric", "vibes"], ["vibes"]),
    "unknown-device": (["--device", "tpu9"], ["tpu9"]),
    "unknown-option": (["--trails", 3], ["--trails"]),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS), ids=list(BAD_OPTIONS))
def test_bad_option_is_one_line_before_anything_is_created(case: str, cwd: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    args, words = BAD_OPTIONS[case]
    code, _, err = _cli(["tune", "iris", "--space", "minimal", *args], capsys)
    _assert_one_error_line(code, err, *words)
    assert sorted(p.name for p in cwd.iterdir()) == [], "files were created before the options were checked"


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"sampler": "annealing"}, "sampler"),
        ({"pruner": "guillotine"}, "pruner"),
        ({"n_trials": 0}, "trials"),
        ({"n_jobs": 0}, "jobs"),
        ({"cv": 0}, "cv"),
        ({"timeout": -1.0}, "timeout"),
        ({"retry_failed": -1}, "retry_failed"),
        ({"heartbeat_interval": 0}, "heartbeat"),
        ({"grace_period": -3}, "grace"),
    ],
)
def test_bad_settings_raise_tune_error_naming_the_parameter(options: dict[str, Any], param: str, cwd: Path) -> None:
    from regtune.exceptions import TuneError
    from regtune.tuning.tuner import tune

    with pytest.raises(TuneError, match=param):
        tune("iris", space="minimal", **options)
    assert list(cwd.iterdir()) == []


def test_cv_auto_on_four_rows_says_there_are_too_few_rows(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11: sklearn's "n_splits=5 > n_samples=3", though the user never chose 5 folds."""
    (cwd / "four.csv").write_text("a,y\n1,1.0\n2,2.5\n3,3.1\n4,4.7\n")
    code, _, err = _cli(["tune", "four.csv", "--space", "minimal", "--trials", 1], capsys)
    _assert_one_error_line(code, err, "cv='auto'", "3 rows", "too few", "add rows")
    assert "n_splits" not in err
    code, _, err = _cli(["tune", "four.csv", "--space", "minimal", "--trials", 1, "--cv", 3], capsys)
    _assert_one_error_line(code, err, "cv=3", "3 rows", "cv=1")
    _assert_nothing_written(cwd)


def test_cv_auto_error_from_python_is_a_regtune_error(cwd: Path) -> None:
    from regtune import RegtuneError
    from regtune.tuning.tuner import tune

    with pytest.raises(RegtuneError, match="too few to cross-validate"):
        tune(np.arange(4.0).reshape(4, 1), np.array([1.0, 2.5, 3.1, 4.7]), space="minimal", n_trials=1)
    _assert_nothing_written(cwd)


def test_y_given_with_a_named_dataset_is_refused(cwd: Path) -> None:
    """Issue 11: ``tune("iris", y)`` tuned on iris's own target and ignored ``y``."""
    from regtune.tuning.tuner import tune

    (cwd / "table.csv").write_text("a,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    for data in ("iris", "table.csv", Path("table.csv")):
        with pytest.raises(DataError, match="y is given.*holds its own target"):
            tune(data, np.zeros(150), space="minimal", n_trials=1)
    _assert_nothing_written(cwd)


def test_tune_from_python_prints_no_optuna_info_lines(cwd: Path, tiny_space: Path) -> None:
    """Issue 11: ``regtune.tune(X, y)`` printed Optuna's INFO line for every trial; the CLI does not."""
    import logging

    import optuna

    from regtune.tuning.tuner import tune

    class Records(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.DEBUG)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(f"{record.levelname}: {record.getMessage()}")

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 3)), np.arange(60) % 2
    records, logger = Records(), logging.getLogger("optuna")
    optuna.logging.set_verbosity(optuna.logging.INFO)  # Optuna's default
    logger.addHandler(records)
    try:
        tune(X, y, space=str(tiny_space), n_trials=2, cv=1, tracking_uri="off", storage=":memory:", progress=False)
        assert optuna.logging.get_verbosity() == optuna.logging.INFO, "the caller's verbosity comes back"
    finally:
        logger.removeHandler(records)
        optuna.logging.set_verbosity(optuna.logging.INFO)
    assert not [m for m in records.messages if m.startswith("INFO")], records.messages


def test_mismatched_x_and_y_raise_data_error(cwd: Path) -> None:
    from regtune.tuning.tuner import tune

    X = np.zeros((10, 2))
    with pytest.raises(DataError, match="10 rows"):
        tune(X, np.zeros(7), space="minimal", n_trials=1)
    _assert_nothing_written(cwd)


# ---- stores that cannot be used --------------------------------------------------------------


def test_unreachable_storage_is_one_masked_line(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(["tune", "iris", "--space", "minimal", "--storage", UNREACHABLE_STORAGE], capsys)
    line = _assert_one_error_line(code, err, "storage", "127.0.0.1:1")
    assert "Pw-9f3b" not in out + err and "u:***@" in line
    _assert_nothing_written(cwd)


def test_unreachable_storage_raises_study_error(cwd: Path) -> None:
    from regtune.tuning.storage import StudyError
    from regtune.tuning.tuner import tune

    with pytest.raises(StudyError) as info:
        tune("iris", space="minimal", n_trials=1, storage=UNREACHABLE_STORAGE)
    assert "Pw-9f3b" not in str(info.value)
    _assert_nothing_written(cwd)


def test_journal_in_a_missing_directory_is_one_line(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(["tune", "iris", "--space", "minimal", "--storage", "nowhere/study.journal"], capsys)
    _assert_one_error_line(code, err, "nowhere")
    assert not (cwd / "nowhere").exists()
    _assert_nothing_written(cwd)


def test_unwritable_tracking_store_is_one_line(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "afile.txt").write_text("a regular file, so no directory can be made under it\n")
    uri = f"sqlite:///{cwd / 'afile.txt' / 'mlflow.db'}"
    code, _, err = _cli(["tune", "iris", "--space", "minimal", "--tracking-uri", uri], capsys)
    _assert_one_error_line(code, err, "afile.txt", "--tracking-uri")
    _assert_nothing_written(cwd)
    assert sorted(p.name for p in cwd.iterdir()) == ["afile.txt"], "a journal or store was left behind"


def test_unwritable_tracking_store_raises_tracking_error(cwd: Path) -> None:
    from regtune.exceptions import TrackingError
    from regtune.tuning.tuner import tune

    (cwd / "afile.txt").write_text("x\n")
    with pytest.raises(TrackingError, match="afile.txt"):
        tune("iris", space="minimal", n_trials=1, tracking_uri=f"sqlite:///{cwd / 'afile.txt' / 'mlflow.db'}")
    _assert_nothing_written(cwd)


def test_unreachable_tracking_server_is_one_masked_line(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(["tune", "iris", "--space", "minimal", "--tracking-uri", "http://bob:Pw-77ab@127.0.0.1:1"],
                          capsys)
    _assert_one_error_line(code, err, "127.0.0.1:1")
    assert "Pw-77ab" not in out + err
    _assert_nothing_written(cwd)


# ---- the estimator ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (np.array([[1.0, np.nan], [2.0, 3.0], [0.0, 1.0], [1.0, 1.0]]), [0, 1, 0, 1], "NaN"),
        (np.array([[1.0, np.inf], [2.0, 3.0], [0.0, 1.0], [1.0, 1.0]]), [0, 1, 0, 1], "infinity"),
        (np.zeros((4, 2)), [0, 1, 0], "inconsistent numbers of samples"),
        (np.zeros((4, 2)), [1, 1, 1, 1], "2 classes"),
        (np.zeros((4, 2)), [0.5, 1.5, 2.5, 3.5], "Unknown label type"),
        (np.zeros((0, 2)), [], "0 sample"),
    ],
    ids=["nan-in-X", "inf-in-X", "lengths-differ", "one-class", "continuous-target", "no-rows"],
)
def test_classifier_fit_rejects_bad_data_with_value_error(X: np.ndarray, y: list, match: str) -> None:
    from regtune import RegularizedNetClassifier

    with pytest.raises(ValueError, match=match):
        RegularizedNetClassifier(max_epochs=1).fit(X, np.asarray(y))


@pytest.mark.parametrize(
    "params",
    [{"dropout": 1.0}, {"dropout": -0.1}, {"l2": -1.0}, {"batch_norm": "sometimes"}, {"max_epochs": 0},
     {"lr": 0.0}, {"batch_size": 0}, {"label_smoothing": 1.0}, {"dropout_variant": "cosmic"}],
    ids=lambda p: next(iter(p)),
)
def test_classifier_fit_rejects_bad_parameters_naming_them(params: dict[str, Any]) -> None:
    from regtune import RegularizedNetClassifier

    X, y = np.random.default_rng(0).normal(size=(12, 2)), np.arange(12) % 2
    with pytest.raises(ValueError, match=next(iter(params))):
        RegularizedNetClassifier(**{"max_epochs": 1, **params}).fit(X, y)


@pytest.mark.parametrize("name", ["RegularizedNetClassifier", "RegularizedNetRegressor"])
def test_a_table_with_text_points_to_the_preprocessor(name: str) -> None:
    """Issue 11: a raw DataFrame with strings gave numpy's bare "could not convert string to float"."""
    import regtune
    from regtune import RegtuneError

    frame = _iris_frame().assign(island=lambda f: np.array(["Biscoe", "Dream"])[np.arange(len(f)) % 2])
    X, y = frame[["a", "island", "b"]], np.arange(len(frame)) % 2
    estimator = getattr(regtune, name)(max_epochs=1)
    with pytest.raises(RegtuneError) as info:
        estimator.fit(X, y)
    message = str(info.value)
    assert "island" in message and "make_pipeline(regtune.make_preprocessor()" in message, message
    assert "'a'" not in message and ", b" not in message, "only the text column is named"
    fitted = getattr(regtune, name)(max_epochs=1).fit(frame[["a", "b"]], y)
    with pytest.raises(RegtuneError, match="make_preprocessor"):
        fitted.predict(frame[["a", "island"]].set_axis(["a", "b"], axis=1))


# ---- properties: whatever the user hands the CLI, it loads or fails with one line -------------


class _Reached(BaseException):
    """Raised by a stand-in once the CLI has accepted the input, so nothing trains (a
    BaseException, so the CLI's handler of errors does not turn it into an error line)."""


_cells = st.one_of(
    st.integers(-5, 5).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "nan", "inf", "-inf", "abc", "1e999", '"', "x,y", " ", "NaN", "1.5", "TRUE"]),
)


@st.composite
def _csv_texts(draw: st.DrawFn) -> str:
    n_cols = draw(st.integers(1, 4))
    header = draw(st.lists(st.sampled_from(["a", "b", "y", "", "a b", "1"]), min_size=n_cols, max_size=n_cols))
    rows = draw(st.lists(st.lists(_cells, min_size=n_cols, max_size=n_cols + draw(st.integers(0, 1))),
                         max_size=12))
    return "\n".join(",".join(r) for r in [header, *rows]) + draw(st.sampled_from(["", "\n"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_csv_texts())
def test_any_csv_loads_or_fails_with_one_line(text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import regtune.tuning.tuner

    def accepted(dataset: Any, **_: Any) -> None:
        assert len(dataset.y) > 0 and dataset.X.shape[1] > 0 and dataset.y.nunique() >= 2
        raise _Reached

    monkeypatch.setattr(regtune.tuning.tuner, "tune", accepted)
    monkeypatch.delenv("REGTUNE_DEBUG", raising=False)
    path = tmp_path / "data.csv"
    path.write_text(text)
    try:
        code, _, err = _cli(["tune", str(path), "--tracking-uri", "off"], capsys)
    except _Reached:
        return
    _assert_one_error_line(code, err)


_yaml_atoms = st.sampled_from([
    "fixed:", "params:", "regularizers:", "description: d", "  max_epochs: 3", "  max_epochs: -1",
    "  lr: {type: float, low: 1.0e-4, high: 1.0e-2, default: 1.0e-3}", "  lr: {type: float, low: 1, high: 0}",
    "  lr: {type: int, low: 1, high: 3, log: true}", "  dropout:", "    dropout: {type: float, low: 0.1, high: 0.9}",
    "    dropout: {type: float, low: 0.1, high: 1.5}", "  l2:", "    l2: {type: float, low: 0, high: 1, log: true}",
    "  early_stopping:", "  batch_size: [1, 2]", "  hidden_layer_sizes: [8]", "  bogus: 1", "- item", "{", "]",
    "  lr: {type: categorical, choices: []}", "&a x", "*a", "? complex", "\t", "",
])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_yaml_atoms, max_size=10))
def test_any_space_file_loads_or_fails_with_one_line(lines: list[str], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import regtune.tuning.tuner

    def prepared(*_: Any, **__: Any) -> None:
        raise _Reached

    monkeypatch.setattr(regtune.tuning.tuner, "prepare", prepared)
    monkeypatch.delenv("REGTUNE_DEBUG", raising=False)
    path = tmp_path / "space.yaml"
    path.write_text("\n".join(lines) + "\n")
    try:
        code, _, err = _cli(["tune", "iris", "--space", str(path), "--tracking-uri", "off"], capsys)
    except _Reached:
        return
    _assert_one_error_line(code, err, "space.yaml")


def test_garbage_csv_through_the_installed_command(tmp_path: Path) -> None:
    """The real entry point, in a fresh process: stderr holds the error line and nothing else."""
    (tmp_path / "data.csv").write_bytes(b"a,b,y\n1,2,x\n\x00\x01garbage,,\n3,4,y\n,,\n")
    proc = subprocess.run(regtune_command("tune", "data.csv", "--trials", 1), cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "MLFLOW_LOGGING_LEVEL": "WARNING"})
    _assert_one_error_line(proc.returncode, proc.stderr)
    assert proc.stdout == ""
    _assert_nothing_written(tmp_path)


# ---- security --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of sockets listening on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    found.append(local.rsplit(":", 1)[0])
    return found


@pytest.mark.slow  # the MLflow server takes 10-30 s to start listening
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads listening sockets from /proc")
def test_ui_listens_on_loopback_only_by_default(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(regtune_command("ui", "--port", port), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        addresses = wait_for(lambda: _listening(port), timeout=120, what=f"the MLflow UI to listen on {port}")
        assert set(addresses) <= {"0100007F", "00000000000000000000000001000000"}, (
            f"listening on {addresses}, not only on loopback")
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert b"127.0.0.1" in cmdline and b"0.0.0.0" not in cmdline
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.stderr is not None
    assert f"http://127.0.0.1:{port}" in proc.stderr.read()


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads process arguments from /proc")
def test_ui_runs_mlflow_on_loopback_without_the_password_in_its_arguments(tmp_path: Path) -> None:
    """``regtune ui`` execs ``mlflow ui --host 127.0.0.1``. Any local user can read a process's
    arguments (``ps``): a password the user kept out of them (``MLFLOW_TRACKING_URI`` in the
    environment) must not end up in the MLflow server's."""
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": "postgresql://bob:Pw-ui-5e@127.0.0.1:1/mlflow"}
    proc = subprocess.Popen(regtune_command("ui", "--port", port), cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        def mlflow_args() -> bytes | None:
            args = Path(f"/proc/{proc.pid}/cmdline").read_bytes() if proc.poll() is None else b""
            return args if b"\x00-m\x00mlflow\x00" in args else None

        cmdline = wait_for(mlflow_args, timeout=60, what="regtune ui to start mlflow")
        assert b"\x00--host\x00127.0.0.1\x00" in cmdline, cmdline
        assert b"Pw-ui-5e" not in cmdline, "the password is visible in the process list"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.stderr is not None
    assert "Pw-ui-5e" not in proc.stderr.read()


class _Payload:
    """Unpickling this would create ``marker``: the model loader must never get that far."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _saved_model(path: Path) -> Path:
    from regtune import RegularizedNetClassifier
    from regtune.data.preprocess import TabularPreprocessor
    from regtune.estimators.persistence import save_model

    frame = _iris_frame()
    X, y = frame[["a", "b"]], frame["y"]
    prep = TabularPreprocessor().fit(X)
    est = RegularizedNetClassifier(hidden_layer_sizes=(4,), max_epochs=2, random_state=0).fit(prep.transform(X), y)
    return save_model(path, est, prep, target="y")


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dumps"])
def test_tampered_weights_are_refused_not_unpickled(writer: str, tmp_path: Path) -> None:
    import torch

    from regtune.estimators.persistence import load_model

    model_dir = _saved_model(tmp_path / "model")
    assert load_model(model_dir).predict(_iris_frame()[["a", "b"]]).shape == (30,)
    marker = tmp_path / "pwned"
    weights = model_dir / "weights.pt"
    if writer == "torch.save":
        torch.save({"0.weight": _Payload(marker)}, weights)
    else:
        weights.write_bytes(pickle.dumps(_Payload(marker)))
    pickle.loads(pickle.dumps(_Payload(tmp_path / "control")))  # the payload does work when unpickled
    assert (tmp_path / "control").exists()
    with pytest.raises(Exception, match="(?i)weights|unpickl|global"):
        load_model(model_dir)
    assert not marker.exists(), "loading the model ran code from the weights file"


def test_tampered_model_description_cannot_name_another_class(tmp_path: Path) -> None:
    import json

    from regtune.estimators.persistence import load_model

    model_dir = _saved_model(tmp_path / "model")
    doc = json.loads((model_dir / "regtune_model.json").read_text())
    doc["estimator"]["class"] = "os.system"
    (model_dir / "regtune_model.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="not a regtune estimator"):
        load_model(model_dir)


def test_predict_refuses_a_tampered_logged_model(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """End to end: a weights file swapped in the MLflow artifact store is refused by `regtune predict`."""
    import torch

    from regtune.estimators.persistence import load_model, log_model
    from regtune.tracking.tracker import MLflowTracker

    model_dir = _saved_model(cwd / "fitted")
    fitted = load_model(model_dir)
    tracker = MLflowTracker(f"sqlite:///{cwd / 'mlflow.db'}", experiment="security")
    run = tracker.start_study_run("s", params={})
    uri = log_model(tracker, run, fitted.estimator, fitted.preprocessor, target="y")
    tracker.set_tags(run, {"regtune.model_uri": uri})
    tracker.end_run(run)
    frame = _iris_frame()
    frame.to_csv(cwd / "rows.csv", index=False)
    args = ["predict", "rows.csv", "--run", run, "--tracking-uri", f"sqlite:///{cwd / 'mlflow.db'}"]
    code, out, err = _cli(args, capsys)
    assert code == 0 and len(out.splitlines()) == 31, err

    logged = [p for p in (cwd / "mlruns").rglob("weights.pt")]
    assert logged, "the logged model has no weights.pt"
    marker = cwd / "pwned"
    for path in logged:
        torch.save({"0.weight": _Payload(marker)}, path)
    code, out, err = _cli(args, capsys)
    assert code != 0 and err.startswith("regtune: error:") and len(err.strip().splitlines()) == 1, err
    assert not marker.exists(), "regtune predict ran code from a tampered weights file"


def test_secrets_in_storage_and_tracking_urls_are_masked_in_every_message(cwd: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Error messages quote the URLs the user gave; the password part is always masked."""
    (cwd / "afile.txt").write_text("x\n")
    for args in (
        ["--storage", "postgresql://alice:Pw-s1@127.0.0.1:1/db"],
        ["--storage", "mysql://alice:Pw-s1@127.0.0.1:1/db"],
        ["--tracking-uri", "https://alice:Pw-s1@127.0.0.1:1"],
    ):
        code, out, err = _cli(["tune", "iris", "--space", "minimal", *args], capsys)
        _assert_one_error_line(code, err)
        assert "Pw-s1" not in out + err, args
        assert "alice:***@" in err, err
    _assert_nothing_written(cwd)


@pytest.mark.slow  # MLflow retries a database it cannot reach for ~100 s before giving up
def test_unreachable_database_tracking_store_fails_fast_with_one_masked_line(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = time.monotonic()
    code, out, err = _cli(["tune", "iris", "--space", "minimal", "--tracking-uri",
                           "postgresql://alice:Pw-s2@127.0.0.1:1/mlflow"], capsys)
    _assert_one_error_line(code, err, "127.0.0.1:1", "--tracking-uri")
    assert "Pw-s2" not in out + err and "alice:***@" in err
    assert time.monotonic() - start < 20, "an unreachable store should fail in seconds, not minutes"
    _assert_nothing_written(cwd)


def test_parquet_with_a_list_column_is_one_line_naming_it(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 17 item 8: a list / struct column ended in "TypeError: unhashable type", exit 1."""
    pytest.importorskip("pyarrow")
    n = 30
    frame = pd.DataFrame({"a": np.arange(n, dtype=float), "tags": [[i, i + 1] for i in range(n)],
                          "meta": [{"k": i} for i in range(n)], "y": np.arange(n) % 2})
    frame.to_parquet(cwd / "nested.parquet")
    code, out, err = _cli(["tune", "nested.parquet", "--trials", 1], capsys)
    _assert_one_error_line(code, err, "column 'tags'", "one number or category")
    _assert_nothing_written(cwd)
    frame.drop(columns="tags").to_parquet(cwd / "struct.parquet")
    code, out, err = _cli(["tune", "struct.parquet", "--trials", 1], capsys)
    _assert_one_error_line(code, err, "column 'meta'", "dict values")


def test_labels_that_differ_only_by_spaces_are_one_class_with_a_note(cwd: Path, tiny_space: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 17 item 3: 'yes', ' yes' and 'yes ' in a CSV were three classes (four with 'no')."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    labels = [("yes", " yes", "yes ")[i % 3] if v > 0 else "no" for i, v in enumerate(x)]
    pd.DataFrame({"x": x, "x2": rng.normal(size=60), "y": labels}).to_csv(cwd / "spaced.csv", index=False)
    assert _load_dataset_quietly(cwd / "spaced.csv").y.nunique() == 2
    uri = f"sqlite:///{cwd}/mlflow.db"
    code, out, err = _cli(["tune", "spaced.csv", "--space", tiny_space, "--trials", 2, "--cv", 1, "-q",
                           "--tracking-uri", uri], capsys)
    assert code == 0, err
    notes = [line for line in err.splitlines() if "spaces around them" in line]
    assert len(notes) == 1 and notes[0].startswith("regtune: warning: spaced.csv: target 'y'"), err
    assert "' yes'" in notes[0] and "'yes '" in notes[0]
    parent = out.split("parent run ")[1].split()[0]
    code, out, err = _cli(["predict", "spaced.csv", "--run", parent, "--tracking-uri", uri, "--proba"], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == "proba_no,proba_yes"


def _load_dataset_quietly(path: Path) -> Any:
    with pytest.warns(UserWarning, match="spaces around them"):
        return load_dataset(path)


def test_estimators_keep_labels_exact(cwd: Path) -> None:
    """The estimators follow scikit-learn: labels are exact values, spaces included."""
    from regtune import RegularizedNetClassifier

    X = np.random.default_rng(0).normal(size=(30, 2))
    y = np.array(["yes", " yes", "no"] * 10)
    clf = RegularizedNetClassifier(max_epochs=1, device="cpu", random_state=0).fit(X, y)
    assert list(clf.classes_) == [" yes", "no", "yes"]


@pytest.mark.parametrize("option", ["--storage", "--tracking-uri"])
def test_a_database_url_without_its_driver_says_which_package_to_install(
        option: str, cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 17 item 10: a missing driver was worded as "check that the database server is up"."""
    import importlib.util

    if importlib.util.find_spec("pymysql") is not None:
        pytest.skip("pymysql is installed here")
    code, out, err = _cli(["tune", "iris", "--trials", 1, option, "mysql+pymysql://user:secret@localhost/db"], capsys)
    line = _assert_one_error_line(code, err, "needs the database driver 'pymysql'", "pip install pymysql")
    assert "server is up" not in line and "secret" not in line


def test_an_estimator_on_a_missing_cuda_device_raises_the_cli_s_config_error() -> None:
    """Issue 17 item 10: a bare AssertionError at fit; the tuner's check is the same function now."""
    import torch

    from regtune import RegularizedNetClassifier
    from regtune.exceptions import RegConfigError

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    X, y = np.random.default_rng(0).normal(size=(20, 2)), np.arange(20) % 2
    with pytest.raises(RegConfigError, match=r"device='cuda': CUDA is not available here; use 'auto' or 'cpu'"):
        RegularizedNetClassifier(device="cuda", max_epochs=1).fit(X, y)
