"""Cohorts of a user's own network (``module=``): members train as alone; a module that cannot
be batched trains every trial alone, with one logged reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from byo_modules import ResidualMLP, SmallConvNet
from cohort_helpers import COHORT_SPACE, _compare, _data
from torch import Tensor, nn

from regtune.config import RegConfig
from regtune.data.loading import load_dataset
from regtune.estimators.net import RegularizedNetClassifier
from regtune.nn.cohort import CohortTrainer
from regtune.tuning.cohort import FALLBACK_ATTR, batching_problem
from regtune.tuning.prepare import prepare
from regtune.tuning.settings import TuneSettings
from regtune.tuning.tuner import tune
from regtune.tuning.worker import COHORT_ATTR


class DataDependent(nn.Module):
    """Python control flow on the data: ``vmap`` cannot batch it."""

    def __init__(self, n_features: int, n_outputs: int) -> None:
        super().__init__()
        self.a = nn.Linear(n_features, n_outputs)
        self.b = nn.Linear(n_features, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.a(x) if float(x.sum()) > 0 else self.b(x)


_MEMBERS = [{"lr": 3e-3, "input_noise": 0.1}, {"lr": 1e-2, "l1": 1e-3, "max_norm": 1.0}, {"lr": 3e-3}]


def _cohort_vs_alone(module: type[nn.Module], X: np.ndarray, Xv: np.ndarray, optimizer: str = "adam",
                     **params: object) -> None:
    y, yv = _data(len(X), 0)[1], _data(len(Xv), 1)[1]
    configs = [RegConfig(batch_size=32, max_epochs=3, optimizer=optimizer, **own) for own in _MEMBERS]

    def estimator(config: RegConfig, seed: int) -> RegularizedNetClassifier:
        return RegularizedNetClassifier(**config.to_dict(), random_state=seed, module=module, **params)

    ests = [estimator(c, s) for c, s in zip(configs, (1, 2, 3), strict=True)]
    cohort = CohortTrainer([e.trainer_arguments(X, y, validation_data=(Xv, yv)) for e in ests])
    while not cohort.done:
        cohort.step()
    for k, (est, member) in enumerate(zip(ests, cohort.members, strict=True)):
        est.adopt_trainer(member)
        solo = estimator(configs[k], k + 1)
        for _ in solo.fit_iter(X, y, validation_data=(Xv, yv)):
            pass
        _compare(est, solo, k)


def test_members_of_a_residual_network_with_layer_norm_and_dropout_train_as_alone() -> None:
    _cohort_vs_alone(ResidualMLP, _data(120, 0)[0], _data(40, 1)[0], module__width=16)


def test_members_of_a_conv_net_with_batch_norm_and_2d_dropout_train_as_alone() -> None:
    X, Xv = _data(120, 0)[0].reshape(-1, 1, 3, 4), _data(40, 1)[0].reshape(-1, 1, 3, 4)
    # SGD: Adam walks the conv bias before batch norm at random (see test_cohort_regularizers).
    _cohort_vs_alone(SmallConvNet, X, Xv, optimizer="sgd", module__channels=4)


def test_a_module_vmap_cannot_batch_is_named_with_its_reason() -> None:
    folds = prepare(load_dataset("iris"), TuneSettings(cv=2, seed=1))[0]
    config = RegConfig(batch_size=32, max_epochs=3)
    assert batching_problem(config, folds, device="cpu", seed=0, module={"module": ResidualMLP}) is None
    reason = batching_problem(config, folds, device="cpu", seed=0, module={"module": DataDependent})
    assert reason is not None and "cannot batch" in reason


@pytest.mark.parametrize(("module", "batched"), [(ResidualMLP, True), (DataDependent, False)])
def test_tune_forms_cohorts_of_a_user_module_or_trains_it_alone(tmp_path: Path, module: type[nn.Module],
                                                                batched: bool) -> None:
    space = tmp_path / "cohort.yaml"
    space.write_text(COHORT_SPACE)
    result = tune("iris", n_trials=5, cohort=4, module=module, tracking_uri="off", storage=":memory:",
                  space=str(space), progress=False, log_model=False, cv=2, pruner="none", seed=1)
    members = [t for t in result.study.trials if COHORT_ATTR in t.user_attrs]
    assert bool(members) == batched
    assert (result.study.user_attrs[FALLBACK_ATTR] == "") == batched
    assert all(t.state.name == "COMPLETE" for t in result.study.trials)
