"""The search part, its folds and the probe that lets ``cv="auto"`` weigh the time."""

from __future__ import annotations

import subprocess
import sys

_FRESH_PROCESS_PLAN = """
import time
from regtune.config import RegConfig
from regtune.tuning.prepare import as_dataset, prepare
from regtune.tuning.settings import TuneSettings

settings = TuneSettings(timeout=300, device="cpu", seed=0)
folds, *_ = prepare(as_dataset("breast_cancer"), settings, baseline=RegConfig(max_epochs=40),
                    deadline=time.time() + 300)
print(folds.plan)
"""


def test_the_probe_of_a_fresh_process_does_not_count_start_up_costs_as_training():
    # The first fit in a process pays one-time costs (lazy imports, torch's first graph) that
    # were ~100x an epoch of a small table: the probe took them for the epoch time, so every
    # fresh `regtune tune` with a timeout chose one validation split where 300 s hold 2x5 folds
    # of ~450 rows with room to spare (an epoch there is ~10 ms).
    out = subprocess.run([sys.executable, "-c", _FRESH_PROCESS_PLAN], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] != "1", out.stdout
