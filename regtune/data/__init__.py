"""Data in: load files and built-in datasets, check them, split train/validation/test, preprocess tables.

regtune 0.1 had one module here; its names stay reachable as ``regtune.data.NAME``, loaded on
first use, because pickles of 0.1 name classes that way (``regtune.data.TabularPreprocessor``).
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "BUILTIN_DATASETS": "regtune.data.loading",
    "Dataset": "regtune.data.loading",
    "FILE_SUFFIXES": "regtune.data.loading",
    "dataset_from_frame": "regtune.data.loading",
    "load_dataset": "regtune.data.loading",
    "read_table": "regtune.data.loading",
    "TASKS": "regtune.data.checks",
    "Task": "regtune.data.checks",
    "infer_task": "regtune.data.checks",
    "Split": "regtune.data.split",
    "split_dataset": "regtune.data.split",
    "TabularPreprocessor": "regtune.data.preprocess",
    "make_preprocessor": "regtune.data.preprocess",
    "DataError": "regtune.exceptions",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'regtune.data' has no attribute {name!r}")
