"""Running the ``regtune`` command line in-process, as tests of several modules do."""

from __future__ import annotations

import pytest


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``regtune ARGV`` in this process: its exit code, stdout and stderr."""
    from regtune.cli.app import main

    try:
        main(list(argv))
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err
