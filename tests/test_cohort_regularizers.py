"""Every regularizer the table marks for cohorts: a member trains as the same trial alone.

Three members per case, one of them with the regularizer off; each is compared with the same
configuration and seed fitted alone by the Trainer (float tolerance, never bit-exact).
"""

from __future__ import annotations

from typing import Any

import pytest
from cohort_helpers import _compare, _data

from regtune.config import RegConfig
from regtune.estimators.net import RegularizedNetClassifier, RegularizedNetRegressor
from regtune.nn.cohort import CohortTrainer, cohort_problem
from regtune.regularizer_table import REGULARIZERS

_BASE = RegConfig(hidden_layer_sizes=(16, 16), batch_size=32, max_epochs=4, lr=3e-3)
_SEEDS = (11, 22, 33)

# name: (what all members share, what each of the three members sets)
CASES: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {
    "l1": ({}, [{"l1": 1e-3}, {"l1": 1e-2}, {}]),
    "elastic_net": ({}, [{"elastic_net": 1e-2, "l1_ratio": 0.5}, {"elastic_net": 3e-3, "l1_ratio": 0.2}, {}]),
    "max_norm": ({}, [{"max_norm": 0.5}, {"max_norm": 1.0}, {}]),
    "sgd": ({"optimizer": "sgd"}, [{"lr": 1e-2, "l1": 1e-3}, {"lr": 3e-2, "weight_decay": 1e-2}, {"lr": 5e-2}]),
    "rmsprop": ({"optimizer": "rmsprop"}, [{"lr": 1e-3, "l2": 1e-3}, {"lr": 3e-3, "weight_decay": 1e-2}, {}]),
    "adamw_schedule": ({"optimizer": "adamw", "lr_schedule": "cosine", "warmup_epochs": 1},
                       [{"max_norm": 0.5}, {"l1": 1e-3}, {}]),
    "input_noise": ({}, [{"input_noise": 0.1}, {"input_noise": 0.3}, {}]),
    "weight_noise": ({}, [{"weight_noise": 0.01}, {"weight_noise": 0.05}, {}]),
    "gradient_noise": ({}, [{"gradient_noise": 0.01}, {"gradient_noise": 0.1}, {}]),
    "mixup": ({}, [{"mixup_alpha": 0.2}, {"mixup_alpha": 1.0, "label_smoothing": 0.1}, {}]),
    "cutmix": ({}, [{"cutmix_alpha": 0.2}, {"cutmix_alpha": 1.0}, {}]),
    "augment": ({}, [{"augment": "image"}, {"augment": "image_flip"}, {}]),
    "dropout": ({"dropout": 0.2}, [{}, {"lr": 1e-2}, {"input_noise": 0.1}]),
    "dropout_alpha": ({"dropout": 0.1, "dropout_variant": "alpha", "activation": "selu"}, [{}, {"lr": 1e-2}, {}]),
    "dropout_gaussian": ({"dropout": 0.2, "dropout_variant": "gaussian"}, [{}, {"lr": 1e-2}, {}]),
    # Adam on the bias before a batch norm (its gradient is float noise, ~1e-9) walks at random:
    # two solo runs, fused and unfused Adam, differ as much. SGD leaves that bias still.
    "batch_norm": ({"batch_norm": "before_activation", "optimizer": "sgd"}, [{"lr": 1e-2}, {"lr": 3e-2},
                                                                            {"l2": 1e-3, "lr": 1e-2}]),
    "batch_norm_after": ({"batch_norm": "after_activation", "dropout": 0.1}, [{}, {"lr": 1e-2}, {}]),
    "spectral_norm": ({"spectral_norm": True}, [{}, {"lr": 1e-2}, {"weight_decay": 1e-2}]),
    "linear": ({"hidden_layer_sizes": (), "dropout": 0.2, "spectral_norm": True}, [{}, {"lr": 1e-2}, {}]),
    "everything": ({"dropout": 0.1, "batch_norm": "after_activation", "optimizer": "adamw"},
                   [{"l1": 1e-3, "max_norm": 1.0, "mixup_alpha": 0.4, "weight_noise": 0.02, "gradient_noise": 0.01},
                    {"input_noise": 0.2, "cutmix_alpha": 0.5, "elastic_net": 1e-3, "weight_decay": 1e-2,
                     "label_smoothing": 0.1},
                    {"early_stopping": True, "patience": 1}]),
}


def _estimator(config: RegConfig, seed: int, task: str) -> RegularizedNetClassifier | RegularizedNetRegressor:
    cls = RegularizedNetClassifier if task == "classification" else RegularizedNetRegressor
    params = config.to_dict()
    if task == "regression":
        params.pop("label_smoothing")
    return cls(**params, random_state=seed, image_shape=(1, 3, 4))


def _check(name: str, task: str = "classification", base: RegConfig = _BASE) -> None:
    shared, each = CASES[name]
    configs = [base.replace(**shared, **own) for own in each]
    if task == "regression":
        configs = [c.replace(label_smoothing=0.0) for c in configs]
    for config in configs:
        assert cohort_problem(config) is None, config
    X, y = _data(150, 0, task)
    Xv, yv = _data(60, 1, task)
    ests = [_estimator(c, seed, task) for c, seed in zip(configs, _SEEDS, strict=True)]
    cohort = CohortTrainer([e.trainer_arguments(X, y, validation_data=(Xv, yv)) for e in ests])
    while not cohort.done:
        cohort.step()
    for k, (est, member) in enumerate(zip(ests, cohort.members, strict=True)):
        est.adopt_trainer(member)
        solo = _estimator(configs[k], _SEEDS[k], task)
        for _ in solo.fit_iter(X, y, validation_data=(Xv, yv)):
            pass
        _compare(est, solo, k)


@pytest.mark.parametrize("name", list(CASES))
def test_a_member_with_this_regularizer_trains_as_alone(name: str) -> None:
    _check(name)


@pytest.mark.parametrize("name", ["mixup", "cutmix", "input_noise", "dropout", "batch_norm", "max_norm"])
def test_a_regression_member_with_this_regularizer_trains_as_alone(name: str) -> None:
    _check(name, "regression")


@pytest.mark.parametrize("name", ["batch_norm_after", "spectral_norm", "everything"])
def test_a_cnn_member_trains_as_alone(name: str) -> None:
    _check(name, base=_BASE.replace(architecture="cnn", conv_channels=(4,), hidden_layer_sizes=(8,)))


def test_every_regularizer_in_the_table_has_a_cohort_case() -> None:
    """A regularizer marked for cohorts has its case here (a new entry needs one)."""
    covered = set()
    for shared, each in CASES.values():
        for own in each:
            config = _BASE.replace(**shared, **own)
            covered |= {spec.name for spec in REGULARIZERS if spec.is_on(config)}
    assert {spec.name for spec in REGULARIZERS if spec.cohort is not None} <= covered
