"""regtune: find the regularization that makes a PyTorch network generalize.

Names load lazily, so ``import regtune`` (and the CLI's start) stays fast: torch, Optuna and
MLflow are imported by the first thing that needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "RegConfig": "regtune.config",
    "RegularizedNetClassifier": "regtune.estimator",
    "RegularizedNetRegressor": "regtune.estimator",
    "RegTuneClassifier": "regtune.search",
    "RegTuneRegressor": "regtune.search",
    "SearchSpace": "regtune.space",
    "TuneSettings": "regtune.tuner",
    "TuneResult": "regtune.tuner",
    "tune": "regtune.tuner",
    "report": "regtune.reporting",
    "ablate": "regtune.ablation",
    "load_dataset": "regtune.data",
    "make_preprocessor": "regtune.data",
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
