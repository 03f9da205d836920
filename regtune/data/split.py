"""Train, validation and test parts of a dataset; the search never sees the test part."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from regtune.data.checks import MIN_CLASS_ROWS, Task, check_task, show
from regtune.exceptions import DataError

__all__ = ["AUTO_CV", "AUTO_MIN_TRIALS", "AUTO_REPEATS", "MIN_VAL_ROWS", "Split", "auto_plan", "cv_splits",
           "network_fits", "parse_cv", "resolve_cv", "resolve_plan", "split_dataset"]


@dataclass(frozen=True)
class Split:
    """Train, validation and test parts of one dataset; the search never sees the test part."""

    X_train: Any
    X_val: Any
    X_test: Any
    y_train: Any
    y_val: Any
    y_test: Any


def split_dataset(
    X: Any,
    y: Any,
    *,
    task: Task,
    test_size: float = 0.2,
    val_size: float = 0.2,
    random_state: int = 0,
) -> Split:
    """Split into train, validation and test parts, stratified by class for classification.

    ``test_size`` and ``val_size`` are shares of the whole dataset, rounded to whole rows, so
    the defaults give 60/20/20. The same ``random_state`` always gives the same split, and
    pandas inputs keep their index so every row can be traced back.

    Raises
    ------
    DataError
        If a share is out of range, a part would be empty, or a class is too small to stratify.
    """
    from sklearn.model_selection import train_test_split  # scipy-heavy; only needed here

    check_task(task)
    for label, share in (("test_size", test_size), ("val_size", val_size)):
        if not 0 < share < 1:
            raise DataError(f"split_dataset: {label}={share} must be between 0 and 1 (exclusive)")
    if test_size + val_size >= 1:
        raise DataError(
            f"split_dataset: test_size + val_size = {test_size + val_size:g} leaves no "
            "training rows; make their sum smaller than 1"
        )
    n = len(y)
    if len(X) != n:
        raise DataError(f"split_dataset: X has {len(X)} rows but y has {n}; pass matching rows")
    n_test, n_val = math.floor(test_size * n + 0.5), math.floor(val_size * n + 0.5)
    sizes = {"train": n - n_test - n_val, "validation": n_val, "test": n_test}
    stratify, n_classes = None, 1
    if task == "classification":
        counts = pd.Series(np.asarray(y)).value_counts()
        if counts.min() < MIN_CLASS_ROWS:
            raise DataError(
                f"split_dataset: class {show(counts.idxmin())} has {counts.min()} row(s) but "
                f"a stratified train/validation/test split needs {MIN_CLASS_ROWS}; "
                "add rows, or merge or drop rare classes"
            )
        stratify, n_classes = y, len(counts)
    for part, size in sizes.items():
        if size < n_classes or size < 1:
            what = "be empty" if size < 1 else f"have {size} rows for {n_classes} classes"
            raise DataError(
                f"split_dataset: the {part} part of {n} rows would {what}; "
                "use more rows or change test_size/val_size"
            )
    X_rest, X_test, y_rest, y_test = train_test_split(
        X, y, test_size=n_test, stratify=stratify, random_state=random_state
    )
    X_train, X_val, y_train, y_val = train_test_split(
        X_rest,
        y_rest,
        test_size=n_val,
        stratify=None if stratify is None else y_rest,
        random_state=random_state,
    )
    return Split(X_train, X_val, X_test, y_train, y_val, y_test)


#: ``cv="auto"``: (rows in the search part below, folds); from that size on, one validation split.
AUTO_CV: tuple[tuple[int, int], ...] = ((500, 5), (1000, 3))
#: ``cv="auto"`` with a timeout: repeats of the row rule's folds when the budget holds them.
AUTO_REPEATS = 2
#: ``cv="auto"`` with a timeout: the richest plan that still fits this many trials is chosen.
AUTO_MIN_TRIALS = 20
MIN_VAL_ROWS = 2  # a validation fold of one row has no spread: R^2 and most scores mean nothing

_CV_FORMAT = ("must be 'auto', 1 (one validation split), a number of folds >= 2, or 'RxK' for R repeats "
              "of K >= 2 folds (e.g. '2x3')")


def parse_cv(cv: Any) -> int | str:
    """``cv`` as the search takes it: ``"auto"``, a whole number >= 1, or ``"RxK"`` (R repeats
    of K-fold, K >= 2; ``"1xK"`` is ``K``). Digits in a string count as a number (the CLI).

    Raises
    ------
    DataError
        If ``cv`` is none of these.
    """
    if isinstance(cv, str):
        text = cv.strip().lower()
        if text == "auto":
            return "auto"
        if text.isdigit():
            cv = int(text)
        else:
            repeats, sep, folds = text.partition("x")
            if not (sep and repeats.isdigit() and folds.isdigit() and int(repeats) >= 1 and int(folds) >= 2):
                raise DataError(f"cv={cv!r} {_CV_FORMAT}")
            return int(folds) if int(repeats) == 1 else f"{int(repeats)}x{int(folds)}"
    if isinstance(cv, bool) or not isinstance(cv, (int, np.integer)) or cv < 1:
        raise DataError(f"cv={cv!r} {_CV_FORMAT}")
    return int(cv)


def network_fits(repeats: int, folds: int, val_share: float) -> float:
    """What one trial of ``repeats`` x ``folds`` costs, in fits of one network on every row of
    the search part: each fold trains on (K-1)/K of them, one split on ``1 - val_share``."""
    return (1 - val_share) if folds == 1 else repeats * (folds - 1)


def auto_plan(n_rows: int, *, fits: float | None = None, val_share: float = 0.25) -> tuple[int, int]:
    """``cv="auto"``: (repeats, folds) for a search part of ``n_rows`` rows, before capping.

    Without a budget (``fits=None``) the rows decide (:data:`AUTO_CV`). With one (``fits``: how
    many single-network fits on the search part the time left allows), the candidates run from
    :data:`AUTO_REPEATS` repeats of the row rule's folds down to one validation split, and the
    first that still fits :data:`AUTO_MIN_TRIALS` trials wins: more folds sharpen the ranking of
    trials only while there are enough trials to rank (benchmarks/selection_ab.py measured it).
    """
    folds = next((k for limit, k in AUTO_CV if n_rows < limit), 1)
    if fits is None or folds == 1:
        return 1, folds
    candidates = [(AUTO_REPEATS, folds), (1, folds)] + [(1, k) for k in (3, 2) if k < folds] + [(1, 1)]
    for repeats, k in candidates:
        if fits / network_fits(repeats, k, val_share) >= AUTO_MIN_TRIALS:
            return repeats, k
    return 1, 1


def resolve_plan(cv: int | str, y: Any, task: Task, *, fits: float | None = None,
                 val_share: float = 0.25) -> tuple[int, int]:
    """(repeats, folds) that ``cv`` asks for on these rows; folds ``1`` is one validation split.

    ``"auto"`` follows :func:`auto_plan`, capped so that every validation fold holds at least
    :data:`MIN_VAL_ROWS` rows and (for classification) every class can be in every fold.

    Raises
    ------
    DataError
        If ``cv`` is malformed, or the rows are too few for the folds asked for, or for any
        cross-validation at all.
    """
    cv = parse_cv(cv)
    y = np.asarray(y)
    n = len(y)
    smallest = int(pd.Series(y).value_counts().min()) if task == "classification" and n else n
    most = min(n // MIN_VAL_ROWS, smallest)  # the most folds these rows can hold
    what = f"the search part (the rows not held out for the test) has {n} rows"
    if task == "classification" and smallest < n:
        what += f", {smallest} in its smallest class"
    if cv == "auto":
        repeats, wanted = auto_plan(n, fits=fits, val_share=val_share)
        if wanted == 1:
            return 1, 1
        if most < 2:
            need = f"{2 * MIN_VAL_ROWS} rows" + (" and 2 per class" if task == "classification" else "")
            raise DataError(f"cv='auto': {what}, too few to cross-validate (2 folds need at least {need}); "
                            "add rows")
        return repeats, min(wanted, most)
    repeats, k = (1, cv) if isinstance(cv, int) else tuple(int(p) for p in cv.split("x"))
    if k > 1 and k > most:
        shape = "cv" if repeats == 1 else f"cv={repeats}xK with K"
        fix = f"use {shape} between 2 and {most}" if most >= 2 else "add rows"
        raise DataError(
            f"cv={cv}: {what}, too few for {k} folds of at least {MIN_VAL_ROWS} rows"
            + (" with every class in each" if task == "classification" else "") + f"; {fix}, or cv=1"
        )
    return repeats, k


def resolve_cv(cv: int | str, y: Any, task: Task) -> int:
    """The number of folds (per repeat) ``cv`` asks for on these rows; ``1`` is one validation
    split. :func:`resolve_plan` also gives the repeats."""
    return resolve_plan(cv, y, task)[1]


def cv_splits(
    y: Any, *, task: Task, cv: int | str, random_state: int, val_share: float, fits: float | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) row positions of the search: R repeats of K folds (stratified for
    classification; each repeat its own shuffle, all from ``random_state``), or one split
    holding out ``val_share`` of the rows when K is 1. ``fits`` is the budget ``cv="auto"``
    weighs (:func:`auto_plan`)."""
    from sklearn.model_selection import (
        KFold,
        RepeatedKFold,
        RepeatedStratifiedKFold,
        StratifiedKFold,
        train_test_split,
    )

    y = np.asarray(y)
    repeats, k = resolve_plan(cv, y, task, fits=fits, val_share=val_share)
    if k == 1:
        strat = y if task == "classification" else None
        train, val = train_test_split(np.arange(len(y)), test_size=val_share, random_state=random_state,
                                      stratify=strat)
        return [(train, val)]
    if repeats == 1:
        splitter: Any = (StratifiedKFold if task == "classification" else KFold)(
            k, shuffle=True, random_state=random_state)
    else:
        splitter = (RepeatedStratifiedKFold if task == "classification" else RepeatedKFold)(
            n_splits=k, n_repeats=repeats, random_state=random_state)
    return list(splitter.split(np.zeros((len(y), 1)), y))
