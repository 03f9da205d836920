"""Everything that derives from the regularizer table agrees with it."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints

from regtune.analysis.effects import NOISE_AND_AUGMENTATION, PENALTIES
from regtune.config import (
    FIELD_CONSTRAINTS,
    REGULARIZER_OFF,
    RegConfig,
    no_regularization,
)
from regtune.estimators.net import RegularizedNetClassifier, RegularizedNetRegressor
from regtune.exceptions import RegConfigError
from regtune.nn.regularizers import (
    Regularizer,
    build_regularizers,
    hook_class,
    make_dropout,
    overrides,
)
from regtune.regularizer_table import ACTS_ON, CATEGORIES, REGULARIZERS, Constraint, RegularizerSpec
from regtune.space.space import REGULARIZER_FAMILIES, RegularizerFamily, SearchSpace

SPECS = {spec.name: spec for spec in REGULARIZERS}
HOOKED = [spec for spec in REGULARIZERS if spec.hook is not None]
CONTEXT = {"n_classes": 3, "image_shape": (1, 8, 8)}


def _on_value(spec: RegularizerSpec) -> Any:
    """A value of the switch that turns ``spec`` on."""
    if spec.switch_on is not None:
        return spec.switch_on
    constraint = spec.fields[spec.switch]
    return next(c for c in constraint.choices if c != spec.off) if constraint.kind == "choice" else 0.1


def _samples(constraint: Constraint) -> list[Any]:
    """Values on both sides of every limit of ``constraint``."""
    if constraint.kind == "choice":
        return [*constraint.choices, "no-such-choice"]
    if constraint.kind == "bool":
        return [True, False, "yes"]
    if constraint.kind == "sizes":
        return [(8, 4), 3, (), (0,), "x"]
    edges = [v for v in (constraint.low, constraint.high) if v is not None]
    values = [e + d for e in edges for d in (-1, 0, 1)] + [0.5 + e for e in edges]
    return [int(v) for v in values] if constraint.kind == "int" else values + [float("nan")]


def test_every_config_field_is_declared_once() -> None:
    owned = [name for spec in REGULARIZERS for name in spec.fields]
    assert len(owned) == len(set(owned)), "a field belongs to two regularizers"
    assert len(SPECS) == len(REGULARIZERS), "two entries share a name"
    assert set(FIELD_CONSTRAINTS) == set(RegConfig.field_names())
    assert set(owned) <= set(FIELD_CONSTRAINTS)


def test_off_values_and_config_defaults_follow_the_table() -> None:
    assert REGULARIZER_OFF == {spec.switch: spec.off for spec in REGULARIZERS}
    assert RegConfig().active_regularizers() == ["early_stopping"]  # the one technique on by default
    assert no_regularization(RegConfig()).active_regularizers() == []
    assert {spec.category for spec in REGULARIZERS} == set(CATEGORIES)


@pytest.mark.parametrize("name", sorted(FIELD_CONSTRAINTS))
def test_config_and_estimators_accept_the_same_values(name: str) -> None:
    constraint = FIELD_CONSTRAINTS[name]
    for value in _samples(constraint):
        try:
            RegConfig(**{name: value})
            config_ok = True
        except RegConfigError:
            config_ok = False
        for estimator in (RegularizedNetClassifier, RegularizedNetRegressor):
            try:
                validate_parameter_constraints(estimator._parameter_constraints, {name: value}, "test")
                estimator_ok = True
            except InvalidParameterError:
                estimator_ok = False
            if constraint.kind == "sizes":  # sklearn cannot look inside an array-like; fit's RegConfig does
                assert estimator_ok or not config_ok, f"{estimator.__name__}: {name}={value!r}"
            else:
                assert estimator_ok == config_ok, f"{estimator.__name__}: {name}={value!r}"


def test_search_families_are_the_table_entries() -> None:
    assert REGULARIZER_FAMILIES == {spec.name: tuple(spec.fields) for spec in REGULARIZERS}
    for name in SearchSpace.available():
        for family in SearchSpace.from_yaml(name).regularizers:
            assert family.name in SPECS, f"space {name!r}: family {family.name!r} is not in the table"


@pytest.mark.parametrize("spec", [s for s in REGULARIZERS if s.switch_on is not None], ids=lambda s: s.name)
def test_a_family_without_params_switches_on_to_its_switch_on_value(spec: RegularizerSpec) -> None:
    space = SearchSpace("t", regularizers=(RegularizerFamily(spec.name),))
    config = space.to_config({f"use_{spec.name}": True})
    assert getattr(config, spec.switch) == spec.switch_on


@pytest.mark.parametrize("spec", HOOKED, ids=lambda s: s.name)
def test_each_hooked_entry_builds_its_hook_when_on(spec: RegularizerSpec) -> None:
    cls = hook_class(spec.hook)
    assert issubclass(cls, Regularizer) and "from_config" in vars(cls), f"{cls.__name__} needs from_config"
    assert any(overrides([cls.__new__(cls)], hook) for hook in
               ("build", "on_batch", "before_forward", "penalty", "after_backward", "after_step"))
    config = RegConfig(**{spec.switch: _on_value(spec)})
    assert [type(r) for r in build_regularizers(config, **CONTEXT)] == [cls]
    assert build_regularizers(config.replace(**{spec.switch: spec.off}), **CONTEXT) == []


def test_hooks_run_in_table_order() -> None:
    everything = RegConfig(**{spec.switch: _on_value(spec) for spec in REGULARIZERS})
    built = [type(r) for r in build_regularizers(everything, **CONTEXT)]
    assert built == [hook_class(spec.hook) for spec in HOOKED]
    names = [spec.name for spec in HOOKED]
    assert names.index("weight_noise") < names.index("weight_decay") < names.index("l1")
    assert names[-1] == "spectral_norm"


def test_entries_without_a_hook_are_built_elsewhere() -> None:
    assert {spec.name for spec in REGULARIZERS if spec.hook is None} == {
        "dropout", "batch_norm", "label_smoothing", "early_stopping"}
    for variant in SPECS["dropout"].fields["dropout_variant"].choices:
        assert make_dropout(0.5, variant) is not None


def test_task_limits_come_from_the_table() -> None:
    X, y = [[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [1.0, 1.0]], [0.0, 1.0, 0.5, 1.0]
    for spec in REGULARIZERS:
        if "regression" not in spec.tasks:
            net = RegularizedNetRegressor(**{spec.switch: _on_value(spec)}, max_epochs=1, device="cpu")
            with pytest.raises(RegConfigError, match=f"{spec.switch}=.* applies to classification only"):
                net.fit(X, y)


def test_report_groups_are_table_categories() -> None:
    assert set(PENALTIES) == {"l1", "l2", "weight_decay", "elastic_net"}
    assert set(NOISE_AND_AUGMENTATION) == {spec.switch for spec in REGULARIZERS if spec.category in ("data", "noise")}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"kind": "float", "low": 1.0, "high": 0.0}, "low=1.0 must be <= high"),
     ({"kind": "choice"}, "needs at least one"),
     ({"kind": "float", "low": 0.0, "closed": "both"}, "not set"),
     ({"kind": "bool", "low": 0}, "no bounds")],
)
def test_a_constraint_checks_itself(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Constraint(**kwargs)


def test_an_entry_checks_itself() -> None:
    from regtune.regularizer_table import NON_NEGATIVE

    with pytest.raises(ValueError, match="category"):
        RegularizerSpec("x", {"x": NON_NEGATIVE}, off=0.0, category="magic", acts_on="weights")
    with pytest.raises(ValueError, match="module.Class"):
        RegularizerSpec("x", {"x": NON_NEGATIVE}, off=0.0, category="noise", hook="X", acts_on="weights")
    with pytest.raises(RegConfigError, match="x=-1.0 must be >= 0"):
        RegularizerSpec("x", {"x": NON_NEGATIVE}, off=-1.0, category="noise", acts_on="weights")
    with pytest.raises(ValueError, match="acts_on='magic'"):
        RegularizerSpec("x", {"x": NON_NEGATIVE}, off=0.0, category="noise", acts_on="magic")
    with pytest.raises(ValueError, match="must be routed"):
        RegularizerSpec("x", {"x": NON_NEGATIVE}, off=0.0, category="structural", acts_on="argument")
    with pytest.raises(TypeError, match="acts_on"):  # every technique says what it acts on
        RegularizerSpec("x", {"x": NON_NEGATIVE}, off=0.0, category="noise")


# ---- adding a regularizer = table entry + hook + test (+ its YAML line): these keep it true

# The techniques without a hook, and what applies them instead; a new one belongs here only with
# the code that applies it (the recipe in the README says so).
NOT_HOOKED = {
    "dropout": "the network: routed to the module's dropout argument, else set on its dropout layers",
    "batch_norm": "the network: routed to the module's batch_norm argument",
    "label_smoothing": "the loss (regtune.nn.losses)",
    "early_stopping": "the EarlyStopping callback the estimators add",
}


def test_every_regularizer_has_a_hook_or_says_what_applies_it() -> None:
    unhooked = {spec.name for spec in REGULARIZERS if spec.hook is None}
    assert unhooked == set(NOT_HOOKED), "a regularizer without a hook: give it one (regtune/nn/regularizers/)"
    for spec in REGULARIZERS:
        if spec.name in NOT_HOOKED and "network" in NOT_HOOKED[spec.name]:
            assert spec.routed, f"{spec.name}: the network applies it only if the table routes it"


def test_every_regularizer_is_searched_by_a_shipped_space() -> None:
    families = {family.name for name in SearchSpace.available() for family in SearchSpace.from_yaml(name).regularizers}
    missing = [spec.name for spec in REGULARIZERS if spec.name not in families]
    assert not missing, f"no shipped search space searches {missing}: add a family to search_spaces/default.yaml"


def test_what_a_regularizer_acts_on_is_found_in_a_module() -> None:
    from regtune.nn.models import TARGETS

    assert set(TARGETS) | {"argument", "batch", "loss", "training"} == set(ACTS_ON)
    for spec in REGULARIZERS:  # a hook on weights or hidden layers refuses a module without them
        if spec.hook is not None and spec.acts_on in ("weights", "hidden_layers"):
            config = no_regularization(RegConfig()).replace(**{spec.switch: _on_value(spec)})
            hook = hook_class(spec.hook).from_config(config, **CONTEXT)
            with pytest.raises(RegConfigError, match=spec.switch):
                hook.build(torch.nn.Sequential(torch.nn.ReLU()))


def test_a_module_gets_no_trial_of_what_it_lacks() -> None:
    from regtune.nn.models import ModuleFactory

    class OneLayer(torch.nn.Module):  # no hidden layer, no dropout layer
        def __init__(self, n_features: int, n_outputs: int) -> None:
            super().__init__()
            self.head = torch.nn.Linear(n_features, n_outputs)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(x)

    class TakesDropout(OneLayer):
        def __init__(self, n_features: int, n_outputs: int, dropout: float = 0.0) -> None:
            super().__init__(n_features, n_outputs)

    lacking = ModuleFactory.of(OneLayer).nothing_to_act_on(OneLayer(4, 2))
    assert lacking == ["dropout", "max_norm", "spectral_norm"]
    assert ModuleFactory.of(TakesDropout).nothing_to_act_on(TakesDropout(4, 2)) == ["max_norm", "spectral_norm"]
    assert ModuleFactory.of(OneLayer).missing_arguments() == [
        name for name in ("hidden_layer_sizes", "conv_channels", "activation", "dropout_variant", "batch_norm",
                          "numeric_embedding", "embedding_dim", "n_frequencies", "frequency_sigma", "tabm")]
