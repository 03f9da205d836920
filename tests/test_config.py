"""Tests for regtune.config: a RegConfig checks every field, round-trips through its logged dict,
and the no-regularization baseline switches off every regularizer and nothing else."""

from __future__ import annotations

import pytest

from regtune.config import REGULARIZER_OFF, RegConfig, RegConfigError, no_regularization


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"lr": -1}, r"lr=-1 must be > 0"),
    ({"activation": "nope"}, r"activation='nope' is not allowed; choose one of 'relu', 'gelu'"),
    ({"hidden_layer_sizes": (0,)}, r"hidden_layer_sizes=\(0,\) must be a sequence of positive integers"),
    ({"dropout": 1.5}, r"dropout=1.5 must be in \[0, 1\)"),
])
def test_a_bad_field_is_refused_naming_the_value_and_what_is_allowed(kwargs: dict, says: str) -> None:
    with pytest.raises(RegConfigError, match=says):
        RegConfig(**kwargs)


def test_the_logged_dict_rebuilds_the_same_config_and_lists_become_tuples() -> None:
    config = RegConfig(hidden_layer_sizes=[16, 8], dropout=0.3, l2=1e-3, lr=0.01, extra={"note": 1})
    assert config.hidden_layer_sizes == (16, 8)  # hashable and comparable, as logged
    logged = config.to_dict()
    assert "extra" not in logged and set(logged) == set(RegConfig.field_names())
    assert RegConfig(**logged) == config
    assert RegConfig.from_params({**logged, "n_trials": 5, "user_attr": "x"}) == config  # other keys ignored


def test_no_regularization_switches_off_every_regularizer_and_keeps_the_rest() -> None:
    config = RegConfig(hidden_layer_sizes=(32,), lr=0.02, optimizer="sgd", dropout=0.3, l2=1e-3)
    assert config.active_regularizers() == ["l2", "dropout", "early_stopping"]  # stable table order
    base = no_regularization(config)
    assert base.active_regularizers() == []
    assert all(getattr(base, name) == off for name, off in REGULARIZER_OFF.items())
    assert (base.hidden_layer_sizes, base.lr, base.optimizer) == ((32,), 0.02, "sgd")
    assert config.dropout == 0.3  # frozen: the original is unchanged
