"""Tests for regtune.analysis.effects: the effect and importance tables."""

from __future__ import annotations

import math

import optuna
import pandas as pd
import pytest

from regtune.analysis.effects import effect_tables, importance_table


def test_effect_tables_take_a_plain_frame() -> None:
    frame = pd.DataFrame({
        "state": ["COMPLETE"] * 5 + ["PRUNED"], "value": [0.8, 0.9, 0.85, 0.7, 0.95, 0.5],
        "train_score": [1.0, 0.95, 0.9, 0.99, 0.97, math.nan],
        "dropout": [0.0, 0.15, 0.12, 0.0, 0.45, 0.3], "l2": [0.0, 3e-5, 5e-4, 0.0, 2e-5, 0.0],
        "sparsity": [0.1] * 6, "weight_norm": [3.0] * 6,
    })
    tables = effect_tables(frame, ["l2", "dropout"])
    assert tables["dropout"]["strength"].tolist() == ["off", "0.1..0.2", "0.4..0.5"]
    assert tables["dropout"]["trials"].tolist() == [2, 2, 1]
    assert tables["dropout"]["score_mean"].tolist() == pytest.approx([0.75, 0.875, 0.95])
    assert tables["penalties"]["strength"].tolist() == ["off", "1e-5..1e-4", "1e-4..1e-3"]
    assert tables["batch_norm"].empty and tables["augmentation_noise"].empty


def test_importances_need_enough_complete_trials() -> None:
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    table, note = importance_table(study)
    assert table.empty and "at least 3 complete trials" in note
