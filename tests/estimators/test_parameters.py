"""Each network default is declared once, in RegConfig: the estimators' signatures, the built-in
networks and the docstrings agree with it (checked by introspection, not by copies)."""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest

from regtune.config import DEFAULT_LR, RegConfig
from regtune.estimators.net import RegularizedNetClassifier, RegularizedNetRegressor
from regtune.estimators.parameters import DESCRIPTIONS, format_default, parameters_section
from regtune.nn.embeddings import NumericEmbedding
from regtune.nn.models import CNN, MLP

DEFAULT = RegConfig()
FIELDS = set(RegConfig.field_names())
ESTIMATORS = [RegularizedNetClassifier, RegularizedNetRegressor]


def _defaults(function: Callable[..., Any]) -> dict[str, Any]:
    return {p.name: p.default for p in inspect.signature(function).parameters.values()
            if p.default is not p.empty}


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_the_estimators_defaults_are_regconfigs(estimator: type) -> None:
    defaults = _defaults(estimator.__init__)
    shared = FIELDS & set(defaults)
    assert shared == FIELDS, f"RegConfig fields the estimator does not take: {sorted(FIELDS - shared)}"
    # lr=None is "the optimizer's own rate", which for RegConfig's optimizer is RegConfig's lr.
    assert defaults["lr"] is None and DEFAULT_LR[DEFAULT.optimizer] == DEFAULT.lr
    differ = {name: (defaults[name], getattr(DEFAULT, name)) for name in shared - {"lr"}
              if defaults[name] != getattr(DEFAULT, name)}
    assert not differ, f"estimator default vs RegConfig's: {differ}"
    assert estimator().get_params()["hidden_layer_sizes"] == DEFAULT.hidden_layer_sizes


@pytest.mark.parametrize("network", [MLP, CNN, NumericEmbedding], ids=lambda cls: cls.__name__)
def test_the_built_in_networks_defaults_are_regconfigs(network: type) -> None:
    defaults = {k: v for k, v in _defaults(network.__init__).items() if k in FIELDS}
    assert defaults, f"{network.__name__} takes no RegConfig field"
    assert defaults == {name: getattr(DEFAULT, name) for name in defaults}


def test_the_cnn_head_is_the_mlps() -> None:
    assert _defaults(CNN.__init__)["hidden_layer_sizes"] == _defaults(MLP.__init__)["hidden_layer_sizes"] \
        == DEFAULT.hidden_layer_sizes


def _documented(doc: str) -> dict[str, str | None]:
    """Each documented parameter and the literal after its ``default=`` (None when it has none)."""
    lines = inspect.cleandoc(doc).splitlines()
    start = lines.index("Parameters") + 2
    out: dict[str, str | None] = {}
    for line in lines[start:]:
        if line and not line[0].isspace():
            if re.fullmatch(r"-{3,}", line) or line in ("Attributes", "Returns"):
                break
            name, _, kind = line.partition(" : ")
            match = re.search(r", default=(.+)$", kind)
            out[name] = match.group(1) if match else None
    return out


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_the_docstring_lists_every_parameter_with_its_signature_default(estimator: type) -> None:
    params = inspect.signature(estimator.__init__).parameters.values()
    documented = _documented(estimator.__doc__ or "")
    expected = {(f"**{p.name}" if p.kind is p.VAR_KEYWORD else p.name): p.default for p in params
                if p.name != "self"}
    assert list(documented) == list(expected), "documented parameters differ from the signature's, or their order"
    for name, default in expected.items():
        if default is inspect.Parameter.empty:
            assert documented[name] is None, name
            continue
        assert documented[name] is not None, f"{name}: no default= in the docstring"
        assert ast.literal_eval(documented[name]) == default, f"{name}: docstring default={documented[name]}"


def test_every_description_belongs_to_a_parameter() -> None:
    params = {(f"**{p.name}" if p.kind is p.VAR_KEYWORD else p.name)
              for p in inspect.signature(RegularizedNetClassifier.__init__).parameters.values()}
    assert set(DESCRIPTIONS) <= params, f"descriptions of no parameter: {sorted(set(DESCRIPTIONS) - params)}"


def test_a_parameter_without_description_is_an_error() -> None:
    def init(self: Any, hidden_layer_sizes: tuple[int, ...] = (1,), undocumented: int = 0) -> None: ...

    with pytest.raises(KeyError, match="undocumented"):
        parameters_section(init)


@pytest.mark.parametrize(("value", "text"), [(0.0, "0"), (0.1, "0.1"), ("mlp", '"mlp"'), ((128, 128), "(128, 128)"),
                                             (None, "None"), (True, "True"), (16, "16")])
def test_defaults_are_written_as_python_literals(value: Any, text: str) -> None:
    assert format_default(value) == text
    assert ast.literal_eval(text) == value


def test_the_search_estimators_share_the_networks_defaults() -> None:
    from regtune.search.estimators import RegTuneClassifier, RegTuneRegressor

    network = _defaults(RegularizedNetClassifier.__init__)
    for estimator in (RegTuneClassifier, RegTuneRegressor):
        search = _defaults(estimator.__init__)
        shared = set(search) & set(network)
        assert {"criterion", "class_weight", "precision", "channels_last", "module", "image_shape"} <= shared
        differ = {name: (search[name], network[name]) for name in shared if search[name] != network[name]}
        assert not differ, f"{estimator.__name__} vs RegularizedNetClassifier defaults: {differ}"
