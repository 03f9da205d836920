"""Cohorts: a member trained in a cohort is the same network trained alone (float tolerance)."""

from __future__ import annotations

from typing import Any

import pytest
from cohort_helpers import _compare, _data

from regtune.config import RegConfig
from regtune.estimators.net import RegularizedNetClassifier, RegularizedNetRegressor
from regtune.nn.cohort import CohortTrainer, cohort_problem, shared_fields


def _members(optimizer: str, schedule: str = "constant") -> list[RegConfig]:
    """Three trials of one structure: their lr, L2, weight decay, label smoothing and patience differ."""
    return [RegConfig(hidden_layer_sizes=(16, 16), batch_size=32, max_epochs=6, optimizer=optimizer, lr=lr, l2=l2,
                      weight_decay=wd, label_smoothing=ls, lr_schedule=schedule, warmup_epochs=1 if schedule != "constant"
                      else 0, early_stopping=es, patience=2)
            for lr, l2, wd, ls, es in ((1e-3, 0.0, 0.0, 0.0, False), (3e-3, 1e-3, 0.0, 0.1, True),
                                       (3e-2, 0.0, 1e-2, 0.0, True))]


def _estimator(config: RegConfig, seed: int, task: str = "classification") -> RegularizedNetClassifier:
    cls = RegularizedNetClassifier if task == "classification" else RegularizedNetRegressor
    params = config.to_dict()
    if task == "regression":
        params.pop("label_smoothing")
    return cls(**params, random_state=seed)


def _compare_with_solo(member: Any, config: RegConfig, seed: int, data: tuple, k: int,
                       task: str = "classification") -> None:
    """Train ``config`` alone on the same data and seed, and compare it with cohort ``member``."""
    X, y, Xv, yv = data
    solo = _estimator(config, seed, task)
    for _ in solo.fit_iter(X, y, validation_data=(Xv, yv)):
        pass
    _compare(member, solo, k)


@pytest.mark.parametrize(("optimizer", "schedule", "task"), [
    ("adamw", "constant", "classification"),
    ("adam", "cosine", "classification"),  # decay by Adam plus a hook; a warm-up and an annealed rate
    ("adamw", "onecycle", "regression"),
])
def test_a_cohort_member_trains_like_the_same_trial_alone(optimizer: str, schedule: str, task: str) -> None:
    X, y = _data(200, 0, task)
    Xv, yv = _data(80, 1, task)
    members = _members(optimizer, schedule)
    if task == "regression":
        members = [c.replace(label_smoothing=0.0) for c in members]
    ests = [_estimator(c, seed, task) for c, seed in zip(members, (11, 22, 33), strict=True)]
    cohort = CohortTrainer([e.trainer_arguments(X, y, validation_data=(Xv, yv)) for e in ests])
    while not cohort.done:
        cohort.step()
    for est, member in zip(ests, cohort.members, strict=True):
        est.adopt_trainer(member)
    assert len({e.history_[-1]["train_loss"] for e in ests}) == 3  # three different trials
    if schedule == "constant":
        assert any(e.n_iter_ < 6 for e in ests)  # early stopping took a member out of the batch
    for k, (config, seed) in enumerate(zip(members, (11, 22, 33), strict=True)):
        _compare_with_solo(ests[k], config, seed, (X, y, Xv, yv), k, task)


def test_linear_members_without_hidden_layers_train_like_alone() -> None:
    X, y = _data(200, 0)
    Xv, yv = _data(80, 1)
    members = [c.replace(hidden_layer_sizes=()) for c in _members("adamw")]
    ests = [_estimator(c, seed) for c, seed in zip(members, (4, 5, 6), strict=True)]
    cohort = CohortTrainer([e.trainer_arguments(X, y, validation_data=(Xv, yv)) for e in ests])
    while not cohort.done:
        cohort.step()
    for k, (est, member) in enumerate(zip(ests, cohort.members, strict=True)):
        est.adopt_trainer(member)
        assert [n for n, _ in est.module_.named_parameters()] == ["head.weight", "head.bias"]
        _compare_with_solo(est, members[k], (4, 5, 6)[k], (X, y, Xv, yv), k)


def test_a_dropped_member_leaves_and_the_others_train_on_unchanged() -> None:
    X, y = _data(200, 0)
    Xv, yv = _data(80, 1)
    members = [c.replace(early_stopping=False) for c in _members("adamw")]
    ests = [_estimator(c, seed) for c, seed in zip(members, (1, 2, 3), strict=True)]
    cohort = CohortTrainer([e.trainer_arguments(X, y, validation_data=(Xv, yv)) for e in ests])
    cohort.step()
    cohort.drop(cohort.members[1])  # pruned after its first epoch
    records = cohort.step()
    assert records[1] is None and cohort.members[1].epoch == 1
    while not cohort.done:
        cohort.step()
    for k in (0, 2):
        ests[k].adopt_trainer(cohort.members[k])
        _compare_with_solo(ests[k], members[k], k + 1, (X, y, Xv, yv), k)


def test_a_diverging_member_fails_alone() -> None:
    X, y = _data(200, 0)
    Xv, yv = _data(80, 1)
    members = [c.replace(early_stopping=False) for c in _members("adamw")][:2]
    members[1] = members[1].replace(lr=1e30)
    cohort = CohortTrainer([_estimator(c, s).trainer_arguments(X, y, validation_data=(Xv, yv))
                            for c, s in zip(members, (1, 2), strict=True)])
    while not cohort.done:
        cohort.step()
    assert cohort.members[1].error is not None and cohort.members[1].left
    assert cohort.members[0].error is None and cohort.members[0].epoch == 6


def test_members_must_share_the_structure_and_train_only_what_a_cohort_can() -> None:
    X, y = _data(50, 0)
    base = _members("adamw")[0]
    other = base.replace(hidden_layer_sizes=(8,))
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        CohortTrainer([_estimator(c, 0).trainer_arguments(X, y, validation_data=(X, y)) for c in (base, other)])
    assert "hidden_layer_sizes" in shared_fields() and "lr" not in shared_fields()
    assert {"dropout", "batch_norm", "spectral_norm", "optimizer"} <= set(shared_fields())  # they shape the net
    for config in (base.replace(l2=1e-3, label_smoothing=0.1, lr_schedule="cosine"), base.replace(dropout=0.2),
                   base.replace(max_norm=2.0, input_noise=0.1, optimizer="sgd")):
        assert cohort_problem(config) is None, config


def test_a_trainer_argument_a_cohort_does_not_replay_is_refused() -> None:
    X, y = _data(50, 0)
    args = [_estimator(c, s).trainer_arguments(X, y, validation_data=(X, y)) for c, s in zip(_members("adamw")[:2],
                                                                                           (1, 2), strict=True)]
    args[1]["memory_budget"] = 1  # streamed from host memory: the cohort keeps every row on its device
    with pytest.raises(ValueError, match="memory_budget"):
        CohortTrainer(args)
