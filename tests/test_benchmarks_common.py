"""The benchmarks' shared harness (benchmarks/_common.py): one results layout, and saves that
keep what another run sharing the file wrote."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def common() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_common", BENCHMARKS / "_common.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_results_live_in_one_folder_per_script_one_file_per_label(common: ModuleType, tmp_path: Path) -> None:
    assert common.result_path("parallel") == BENCHMARKS / "results" / "parallel" / "latest.json"
    assert common.result_path("parallel", "loaded") == BENCHMARKS / "results" / "parallel" / "loaded.json"
    assert common.result_path("images", str(tmp_path / "x.json")) == tmp_path / "x.json"
    stray = [p.relative_to(BENCHMARKS / "results") for p in (BENCHMARKS / "results").glob("*.json")]
    assert stray == [], "every result file sits in results/<script>/"


def test_update_keeps_the_other_runs_records_and_starts_afresh_on_another_schema(
    common: ModuleType, tmp_path: Path
) -> None:
    path = tmp_path / "bench" / "latest.json"

    def fresh() -> dict:
        return {"schema": 2, "runs": []}

    common.update(path, lambda p: p["runs"].append("a"), fresh, schema=2)
    common.update(path, lambda p: p["runs"].append("b"), fresh, schema=2)
    assert json.loads(path.read_text())["runs"] == ["a", "b"]
    assert common.read(path, schema=1) == {}
    common.update(path, lambda p: p["runs"].append("c"), lambda: {"schema": 1, "runs": []}, schema=1)
    assert json.loads(path.read_text()) == {"schema": 1, "runs": ["c"]}
    assert sorted(p.name for p in path.parent.iterdir()) == ["latest.json", "latest.lock"]  # no temp file left
