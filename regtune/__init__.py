"""regtune: find the regularization that makes a PyTorch network generalize.

Names load lazily, so ``import regtune`` (and the CLI's start) stays fast: torch, Optuna and
MLflow are imported by the first thing that needs them.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

__version__ = "0.2.0"

# Idle OpenMP threads of torch sleep instead of spinning and stealing cores from other trials
# (regtune.tuning.resources); OpenMP reads this once, when torch loads.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_EXPORTS = {
    "RegtuneError": "regtune.exceptions",
    "RegConfig": "regtune.config",
    "RegularizedNetClassifier": "regtune.estimators.net",
    "RegularizedNetRegressor": "regtune.estimators.net",
    "RegTuneClassifier": "regtune.search.estimators",
    "RegTuneRegressor": "regtune.search.estimators",
    "SearchSpace": "regtune.space.space",
    "TuneSettings": "regtune.tuning.settings",
    "TuneResult": "regtune.tuning.final",
    "tune": "regtune.tuning.tuner",
    "report": "regtune.analysis.report",
    "ablate": "regtune.analysis.ablation",
    "load_dataset": "regtune.data.loading",
    "make_preprocessor": "regtune.data.preprocess",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'regtune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
