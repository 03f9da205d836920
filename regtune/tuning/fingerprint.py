"""What a study was created for: its data, target, search space, metric and split.

A study's trials are only comparable when every worker scores them on the same rows, the same
folds and the same metric. The creator records this fingerprint in the study's user attrs;
every later run (a resume, another ``--jobs`` or another machine) computes its own and refuses
to join a study whose fingerprint differs, naming what differs. The analysis commands read it
back to reload the very data the study was tuned on.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from regtune.data.loading import Dataset
from regtune.exceptions import StudyError
from regtune.space.space import SearchSpace

__all__ = [
    "FINGERPRINT_ATTR",
    "check_fingerprint",
    "dataset_hash",
    "module_code_hash",
    "space_hash",
    "study_fingerprint",
]

FINGERPRINT_ATTR = "regtune.fingerprint"

# compared field -> (how the message names it, how the user makes it the same)
_COMPARED: dict[str, tuple[str, str]] = {
    "data": ("data hash", "the same data"),
    "target": ("target", "the same --target"),
    "task": ("task", "the same data"),
    "space": ("search space", "the same --space"),
    "metric": ("metric", "the same --metric"),
    "folds": ("cv", "the same --cv"),
    "seed": ("seed", "the same --seed"),
    "test_size": ("test_size", "the same test_size"),
    "val_size": ("val_size", "the same val_size"),
    "module": ("module", "the same --model (and module parameters)"),
    "module_code": ("model code", "the --model code the study was created with (it changed since)"),
}


def dataset_hash(dataset: Dataset) -> str:
    """A content hash of the checked table (column names, features, target), not of the file:
    the same file name with other rows hashes differently, a re-saved identical table alike."""
    digest = hashlib.sha256()
    header = [[str(c) for c in dataset.X.columns], str(dataset.target), dataset.task]
    digest.update(json.dumps(header).encode())
    for part in (dataset.X, dataset.y):
        digest.update(pd.util.hash_pandas_object(part, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def space_hash(space: SearchSpace) -> str:
    """A hash of what the space samples and fixes; its description and file name do not count."""
    content = {k: v for k, v in space.to_dict().items() if k != "description"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def module_code_hash(module: Any) -> str:
    """A hash of the user's network code (``""``: the built-in one, or no source to read):
    editing it between two runs of one study would mix trials of two networks.

    A ``--model`` spec (``file.py:Name``, ``package.module:Name``) hashes the whole file that
    defines it; a class or factory given in Python hashes its own source, so editing the rest
    of the script that defines it (a notebook, a training script) keeps the study.
    """
    if module is None:
        return ""
    from regtune.nn.models import ModuleFactory

    factory = ModuleFactory.of(module).factory
    if isinstance(module, str):
        file = getattr(sys.modules.get(getattr(factory, "__module__", "") or ""), "__file__", None)
        source = Path(file).read_bytes() if file and os.path.isfile(file) else b""
    else:
        try:
            source = inspect.getsource(factory).encode()
        except (OSError, TypeError):
            source = b""
    return hashlib.sha256(source).hexdigest()[:16] if source else ""


def study_fingerprint(
    dataset: Dataset, space: SearchSpace, *, metric: str, cv: int | str, n_folds: int, seed: int,
    test_size: float, val_size: float, module: str = "", module_params: dict[str, Any] | None = None,
    module_code: str = "",
) -> dict[str, Any]:
    """The fingerprint a run computes for itself (JSON values, as Optuna user attrs need).

    ``folds`` (how many folds ``cv`` made) is what is compared, so ``--cv auto`` and the fold
    count it resolves to are the same study. ``source`` and ``space_source`` are where the data
    and the space's YAML were read from, so the analysis commands can read them again.
    ``module`` names the user's network (``""``: the built-in one) with its fixed arguments:
    trials of two different networks are not comparable either, nor are those of one network
    whose code changed (``module_code``, :func:`module_code_hash`).
    """
    network = module and f"{module} {json.dumps(module_params or {}, sort_keys=True, default=str)}"
    return {
        "data": dataset_hash(dataset), "dataset": dataset.name, "source": dataset.source, "rows": len(dataset.y),
        "target": str(dataset.target), "task": dataset.task, "space": space_hash(space), "space_name": space.name,
        "space_source": str(space.path) if space.path is not None else None,
        "metric": metric, "cv": str(cv), "folds": n_folds, "seed": seed, "test_size": test_size,
        "val_size": val_size, "module": network, "module_code": module_code,
    }


def check_fingerprint(study_name: str, recorded: dict[str, Any], current: dict[str, Any]) -> None:
    """Raise one :class:`StudyError` naming every field in which this run differs from the study."""
    differ = [k for k in _COMPARED if k in recorded and k in current and recorded[k] != current[k]]
    if "module" in differ and "module_code" in differ:  # another network: its code differs, of course
        differ.remove("module_code")
    if not differ:
        return
    was = ", ".join(_describe(k, recorded) for k in differ)
    now = ", ".join(_describe(k, current) for k in differ)
    fixes = list(dict.fromkeys(_COMPARED[k][1] for k in differ))
    raise StudyError(f"study {study_name!r} was created for {was}; this run has {now}: "
                     f"use another --study, or {' and '.join(fixes)}")


def _describe(key: str, values: dict[str, Any]) -> str:
    label = _COMPARED[key][0]
    value = values[key]
    if key == "data":
        return f"{label} {str(value)[:8]}.. ({values.get('dataset', '?')}, {values.get('rows', '?')} rows)"
    if key == "space":
        return f"{label} '{values.get('space_name', '?')}' (hash {str(value)[:8]}..)"
    if key == "module":
        return f"{label} {value or 'built-in'}"
    if key == "module_code":
        return f"{label} {str(value)[:8] or '(none)'}.."
    if key == "folds":
        return f"{label} {values.get('cv', '?')} ({value} folds)"
    return f"{label} {value!r}"
