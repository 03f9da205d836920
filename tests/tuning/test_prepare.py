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


def test_the_probe_times_a_users_module_and_weighs_the_time():
    # The probe built the space's baseline as it stands (the image space fixes the built-in
    # architecture: cnn), which a user's module refuses: the probe failed in silence and every
    # study of a user's network took the rows' folds whatever its timeout.
    import time

    import numpy as np
    from byo_modules import SmallConvNet

    from regtune.config import RegConfig
    from regtune.space.space import SearchSpace
    from regtune.tuning.prepare import as_dataset, prepare
    from regtune.tuning.settings import TuneSettings
    from regtune.tuning.trial import Network, baseline_config

    rng = np.random.default_rng(0)
    X = rng.random((200, 1, 8, 8), dtype=np.float32)
    y = np.repeat(np.arange(4), 50)
    space, network = SearchSpace.from_yaml("image"), Network(SmallConvNet)
    assert baseline_config(space, network).architecture == RegConfig().architecture  # as its trials train
    # 3 s cannot hold 20 trials of 5 folds of a 40-epoch CNN: one validation split, not the rows' 5 folds
    folds, *_ = prepare(as_dataset(X, y), TuneSettings(timeout=3, device="cpu", seed=0),
                        baseline=baseline_config(space, network), deadline=time.time() + 3, network=network)
    assert folds.plan == "1"
