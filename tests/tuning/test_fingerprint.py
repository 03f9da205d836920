"""Tests for regtune.tuning.fingerprint: what a study's fingerprint hashes."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

from byo_modules import WIDE

from regtune.nn.models import load_module
from regtune.tuning.fingerprint import module_code_hash


def test_module_code_hash_follows_the_source(tmp_path: Path) -> None:
    name = f"nets_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(WIDE)
    before = module_code_hash(f"{tmp_path}/{name}.py:Wide")
    assert before and module_code_hash(None) == ""
    (tmp_path / f"{name}.py").write_text(WIDE + "\n# a comment\n")
    sys.modules.pop(load_module(f"{tmp_path}/{name}.py:Wide").__module__)  # a new run imports it again
    assert module_code_hash(f"{tmp_path}/{name}.py:Wide") not in ("", before)


def test_a_class_given_in_python_hashes_its_own_source() -> None:
    """Editing the rest of a training script (or notebook) keeps its study; editing the class does not."""
    from torch import nn

    assert module_code_hash(nn.Linear) not in ("", module_code_hash(nn.Conv2d))
