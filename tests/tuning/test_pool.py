"""The worker processes of a study: worker 0 (this process) trains while the others start."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

_STUDY = """
import json, sys
from regtune.tuning.queue import OWNER_ATTR, owner_tag
from regtune.tuning.tuner import tune

if __name__ == "__main__":
    result = tune("iris", space=sys.argv[1], storage=sys.argv[2], n_trials=40, n_jobs=2, cv=1, pruner="none",
                  ensemble=1, tracking_uri="off", progress=False, log_model=False, seed=0)
    starts = {}
    for t in result.study.trials:
        key = "here" if t.user_attrs[OWNER_ATTR] == owner_tag() else "other"
        starts.setdefault(key, []).append(t.datetime_start.timestamp())
    print(json.dumps({k: min(v) for k, v in starts.items()}))
"""


@pytest.mark.slow  # two fresh interpreters import torch (~20 s on a loaded 2-core machine)
@pytest.mark.skipif(sys.platform == "win32", reason="no fork server")
def test_worker_0_trains_while_the_fork_server_still_imports(tmp_path: Path, tiny_space: Path) -> None:
    """Issue 21 item 5: a new process's first ``n_jobs=2`` study starts the fork server, whose
    imports (torch) take seconds. Worker 0 once waited for them in ``start()``; it now trains
    meanwhile, so its first trial starts about that long before the other worker's first."""
    script = tmp_path / "study.py"
    script.write_text(_STUDY)
    run = subprocess.run([sys.executable, str(script), str(tiny_space), str(tmp_path / "s.journal")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    first = json.loads(run.stdout.strip().splitlines()[-1])
    started = time.monotonic()  # what the fork server's imports cost, as it pays them
    subprocess.run([sys.executable, "-c", "import regtune.tuning.worker, torch._dynamo"], check=True, timeout=300)
    imports = time.monotonic() - started
    if "other" not in first:
        return  # worker 0 ran every trial before the other worker could start: the point holds
    assert first["other"] - first["here"] > 0.5 * imports, (first, imports)
