"""Paths the tests share, independent of where each test file sits in tests/."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
TINY_SPACE = TESTS / "spaces" / "tiny.yaml"
