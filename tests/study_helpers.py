"""A small finished study on disk; `tests/conftest.py` builds it once per session (`finished_study`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TINY_SPACE = """\
description: Every technique the report has a table for, on a net that trains in a blink.
fixed:
  architecture: mlp
  hidden_layer_sizes: [16]
  batch_size: 32
  max_epochs: 8
  patience: 3
params:
  lr: {type: float, low: 3.0e-3, high: 3.0e-2, log: true, default: 1.0e-2}
regularizers:
  l1:
    l1: {type: float, low: 1.0e-6, high: 1.0e-3, log: true}
  l2:
    l2: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}
  dropout:
    dropout: {type: float, low: 0.05, high: 0.5}
  batch_norm:
    batch_norm: {type: categorical, choices: [before_activation, after_activation]}
  input_noise:
    input_noise: {type: float, low: 0.01, high: 0.3, log: true}
  mixup:
    mixup_alpha: {type: float, low: 0.1, high: 1.0}
  early_stopping:
"""


@dataclass(frozen=True)
class FinishedStudy:
    """Where a finished study lives: Optuna journal, MLflow store and artifacts under ``root``."""

    name: str
    root: Path
    storage: str
    tracking_uri: str
    parent_run_id: str
    result: Any


def make_study(root: Path, *, n_trials: int = 7, name: str = "iris-tiny", seed: int = 1) -> FinishedStudy:
    """Tune iris on the tiny space with ``root`` as the working directory (``mlruns/`` lands there).

    With the random sampler, the median pruner (which spares the first five trials) and seed 1,
    trials 0-4 complete and between them switch every technique of the space on at least once.
    """
    from regtune.tuning.settings import TuneSettings
    from regtune.tuning.tuner import tune

    space = root / "tiny.yaml"
    space.write_text(TINY_SPACE, encoding="utf-8")
    storage, tracking_uri = str(root / "regtune.journal"), f"sqlite:///{root / 'mlflow.db'}"
    settings = TuneSettings(space=str(space), n_trials=n_trials, cv=1, seed=seed, storage=storage,
                            study_name=name, tracking_uri=tracking_uri, progress=False, log_model=False,
                            device="cpu", sampler="random", pruner="median")
    cwd = Path.cwd()
    os.chdir(root)
    try:
        result = tune("iris", settings=settings)
    finally:
        os.chdir(cwd)
    return FinishedStudy(name, root, storage, tracking_uri, result.parent_run_id, result)
