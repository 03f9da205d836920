"""Tests for regtune.cli.errors: the user's errors are one line and exit 2, ours exit 1 and say how
to see the traceback."""

from __future__ import annotations

import pytest

from regtune.cli.errors import describe
from regtune.exceptions import DataError, SearchSpaceError, StudyError


@pytest.mark.parametrize("exc", [
    DataError("data.csv: column 'a' has the infinite value inf at row 3;\n  fix the cell"),
    SearchSpaceError("space.yaml: lr: low must be > 0"),
    StudyError("study s is running elsewhere"),  # a RuntimeError, yet the user's to fix
    ValueError("max_epochs=0 must be >= 1"),
    FileNotFoundError("no such file: data.csv"),
])
def test_the_users_errors_are_one_line_and_exit_2(exc: BaseException) -> None:
    text, code = describe(exc)
    assert code == 2
    assert "\n" not in text and "  " not in text
    assert text == " ".join(str(exc).split())


def test_an_unexpected_error_exits_1_naming_its_type_and_the_debug_switch() -> None:
    text, code = describe(RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB"))
    assert code == 1
    assert text == ("RuntimeError: CUDA out of memory. Tried to allocate 2 GiB "
                    "(set REGTUNE_DEBUG=1 to see the traceback)")


def test_an_error_without_a_message_is_named_by_its_type() -> None:
    assert describe(KeyError()) == ("KeyError", 2)
    assert describe(ZeroDivisionError())[0].startswith("ZeroDivisionError: ZeroDivisionError (set REGTUNE_DEBUG")
