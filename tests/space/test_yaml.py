"""Tests for regtune.space.yaml: safe parsing that reads ``1e-4`` as a number and knows the line of
every key, and dumping laid out like the shipped space files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from regtune.exceptions import SearchSpaceError
from regtune.space.yaml import dump_yaml, read_yaml

SPACE = """\
fixed: {max_epochs: 5}
params:
  lr: {type: float, low: 1e-4, high: 1.0e-1, log: true}
regularizers:
  dropout:
    dropout: {type: float, low: 0.05, high: 0.5}
  spectral_norm:
  mixup:
    priors: [0.5, 2e-1]
"""


def test_exponent_numbers_are_floats_and_every_key_has_its_line(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(SPACE, encoding="utf-8")
    doc = read_yaml(path)
    assert doc.data["params"]["lr"]["low"] == 1e-4 and isinstance(doc.data["params"]["lr"]["low"], float)
    assert doc.data["regularizers"]["mixup"]["priors"] == [0.5, 0.2]  # YAML 1.1 would read "2e-1" as text
    assert doc.data["regularizers"]["spectral_norm"] is None
    assert doc.lines["params.lr"] == 3 and doc.lines["regularizers.dropout.dropout"] == 6
    assert doc.lines["regularizers.mixup.priors.1"] == 9
    located = doc.locate(SearchSpaceError("high must be <= 1", key="regularizers.dropout.dropout.high"))
    assert located.line == 6 and located.path == path and "line 6" in str(located)  # nearest enclosing key


@pytest.mark.parametrize(("text", "line", "says"), [
    ("params:\n  lr: 1\n  lr: 2\n", 3, "params.lr: duplicate key"),
    ("params:\n  lr: [1, 2\n", 3, "invalid YAML"),
    ("params: !!python/name:os.system ''\n", 1, "invalid YAML"),  # no tags: nothing runs
    ("params:\n  1: {type: float}\n", 2, "key 1 must be text"),
])
def test_bad_yaml_names_the_file_and_the_line(tmp_path: Path, text: str, line: int, says: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SearchSpaceError, match=says) as caught:
        read_yaml(path)
    assert caught.value.path == path and caught.value.line == line


def test_a_missing_file_is_a_search_space_error(tmp_path: Path) -> None:
    with pytest.raises(SearchSpaceError, match="cannot read the file"):
        read_yaml(tmp_path / "absent.yaml")


def test_dump_puts_each_param_spec_on_one_line_and_reads_back_the_same(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(SPACE, encoding="utf-8")
    data = read_yaml(path).data
    text = dump_yaml(data)
    assert "  lr: {type: float, low: 0.0001, high: 0.1, log: true}\n" in text
    assert "  spectral_norm:\n" in text and "null" not in text
    assert yaml.safe_load(text) == data
