"""Every public estimator documents each ``__init__`` parameter in its numpydoc "Parameters"."""

from __future__ import annotations

import inspect
import re

import pytest

from regtune import (
    RegTuneClassifier,
    RegTuneRegressor,
    RegularizedNetClassifier,
    RegularizedNetRegressor,
)

ESTIMATORS = [RegularizedNetClassifier, RegularizedNetRegressor, RegTuneClassifier, RegTuneRegressor]


def documented_parameters(doc: str) -> list[str]:
    """Names in the numpydoc "Parameters" section; ``a, b : float`` documents both."""
    lines = inspect.cleandoc(doc).splitlines()
    starts = [i for i in range(len(lines) - 1)
              if lines[i].strip() == "Parameters" and re.fullmatch(r"-{3,}", lines[i + 1].strip())]
    assert starts, "no 'Parameters' section"
    names: list[str] = []
    body = lines[starts[0] + 2:]
    for i, line in enumerate(body):
        if i + 1 < len(body) and re.fullmatch(r"-{3,}", body[i + 1].strip()):
            break  # the next section's title
        if line.strip() and not line[0].isspace():
            names += [name.strip().lstrip("*") for name in line.partition(" : ")[0].split(",")]
    return names


def test_the_parser_reads_grouped_names_and_stops_at_the_next_section() -> None:
    doc = """Summary.

    Parameters
    ----------
    a, b : float
        Both.
    c
        No type.

    Attributes
    ----------
    d_ : int
    """
    assert documented_parameters(doc) == ["a", "b", "c"]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_every_init_parameter_is_documented(estimator: type) -> None:
    params = [p for p in inspect.signature(estimator.__init__).parameters if p != "self"]
    documented = documented_parameters(estimator.__doc__ or "")
    missing = [p for p in params if p not in documented]
    stale = [p for p in documented if p not in params]
    assert not missing, f"{estimator.__name__} does not document: {', '.join(missing)}"
    assert not stale, f"{estimator.__name__} documents parameters it does not take: {', '.join(stale)}"
    assert len(documented) == len(set(documented)), f"{estimator.__name__} documents a parameter twice"
