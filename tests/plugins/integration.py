"""One rule for tests that need a program this machine may lack (Chromium, PostgreSQL).

Locally such a test skips with the reason. ``.ci/run`` installs both programs and sets
``REGTUNE_REQUIRE_INTEGRATION=1``, which turns the skip into a failure: CI can never go green
by skipping them.
"""

from __future__ import annotations

import os

import pytest

REQUIRE = "REGTUNE_REQUIRE_INTEGRATION"


def unavailable(reason: str) -> None:
    """Skip the calling test, or fail it where ``REGTUNE_REQUIRE_INTEGRATION=1``."""
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{reason}, and {REQUIRE}=1 makes that a failure", pytrace=False)
    pytest.skip(reason)
