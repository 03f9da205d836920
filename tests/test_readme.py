"""The README's parameter tables list exactly the estimators' parameters, with their defaults.

A table belongs to a section whose heading names the estimator and the word "parameters"
(e.g. ``### `RegularizedNetClassifier` / `RegularizedNetRegressor` parameters``): the first
markdown table under that heading, before the next heading. Its first column holds the
parameters of a row, each in backticks (a row may group related ones: `` `l1`, `l2` ``);
``module__NAME`` stands for the ``**module__params`` keywords. A column headed ``default``,
where a row fills it, holds the signature's default as a Python literal in backticks
(`` `0.0` ``, `` `"mlp"` ``, `` `(128, 128)` ``, `` `None` ``): one for the whole row, or one per
parameter, in order.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import re
from pathlib import Path

import pytest

from regtune import (
    RegTuneClassifier,
    RegTuneRegressor,
    RegularizedNetClassifier,
    RegularizedNetRegressor,
)

README = Path(__file__).resolve().parents[1] / "README.md"
# The estimator each table is named by, and every estimator it documents.
TABLES = {
    "RegularizedNetClassifier": (RegularizedNetClassifier, RegularizedNetRegressor),
    "RegTuneClassifier": (RegTuneClassifier, RegTuneRegressor),
}
VAR_KEYWORD = "module__NAME"


def _headed_lines(text: str) -> list[tuple[str | None, str]]:
    """Each line outside code fences with the heading it sits under (``None`` for a heading)."""
    out: list[tuple[str | None, str]] = []
    heading, fenced = "", False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if fenced:
            continue
        if re.match(r"#{1,6} ", line):
            heading = line
            out.append((None, line))
        else:
            out.append((heading, line))
    return out


def parameter_table(text: str, estimator: str) -> dict[str, str | None]:
    """``{parameter: default cell or None}`` of the table in the section naming ``estimator``."""
    lines = _headed_lines(text)
    sections = [line for heading, line in lines if heading is None
                and re.search(rf"\b{estimator}\b", line) and "parameters" in line.lower()]
    assert len(sections) == 1, (f"README.md needs one heading naming {estimator} and 'parameters' "
                                f"(found {len(sections)}: {sections})")
    section = [line.strip() for heading, line in lines if heading == sections[0]]
    start = next((i for i, line in enumerate(section) if line.startswith("|")), len(section))
    rows = list(itertools.takewhile(lambda line: line.startswith("|"), section[start:]))  # the first table
    assert len(rows) >= 3, f"no markdown table under {sections[0]!r}"
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    header = [c.lower() for c in cells[0]]
    default = header.index("default") if "default" in header else None
    table: dict[str, str | None] = {}
    for row in cells[2:]:
        names = re.findall(r"`([^`]+)`", row[0])
        assert names and re.fullmatch(r"`[^`]+`(, `[^`]+`)*", row[0]), (
            f"{estimator} table: first cell {row[0]!r} is not parameters in backticks")
        defaults = re.findall(r"`([^`]*)`", row[default]) if default is not None and default < len(row) else []
        assert len(defaults) in (0, 1, len(names)), (
            f"{estimator} table: {row[0]} has {len(defaults)} defaults; give one, or one per parameter")
        for k, name in enumerate(names):
            assert name not in table, f"{estimator} table lists {name} twice"
            table[name] = defaults[k if len(defaults) == len(names) else 0] if defaults else None
    return table


def _signature(estimator: type) -> dict[str, object]:
    return {(VAR_KEYWORD if p.kind is p.VAR_KEYWORD else p.name): p.default
            for p in inspect.signature(estimator.__init__).parameters.values() if p.name != "self"}


@pytest.mark.parametrize("name", list(TABLES))
def test_the_readme_table_lists_every_parameter_and_no_other(name: str) -> None:
    table = parameter_table(README.read_text(encoding="utf-8"), name)
    for estimator in TABLES[name]:
        params = _signature(estimator)
        missing = [p for p in params if p not in table]
        stale = [p for p in table if p not in params]
        assert not missing, f"README's {name} table lacks {', '.join(missing)} ({estimator.__name__} takes them)"
        assert not stale, f"README's {name} table lists {', '.join(stale)}, which {estimator.__name__} does not take"
        wrong = {p: cell for p, cell in table.items() if cell is not None and p != VAR_KEYWORD
                 and ast.literal_eval(cell) != params[p]}
        assert not wrong, f"README's {name} table: defaults {wrong} differ from {estimator.__name__}'s signature"


def test_the_table_reader() -> None:
    text = """# x

```python
# RegularizedNetClassifier parameters (a comment in code, not a heading)
```

### `RegularizedNetClassifier` / `RegularizedNetRegressor` parameters

| parameter | default | meaning |
|---|---|---|
| `lr` | `None` | rate |
| `l1`, `l2` | `0.0` | penalties |
| `optimizer`, `batch_size` | `"adam"`, `128` | two defaults |
| `module__NAME` | | the module's |

| `second_table` | | not read |

## Next
| `other` | `1` | x |
"""
    assert parameter_table(text, "RegularizedNetClassifier") == {
        "lr": "None", "l1": "0.0", "l2": "0.0", "optimizer": '"adam"', "batch_size": "128", "module__NAME": None}
    with pytest.raises(AssertionError, match="one heading naming RegTuneClassifier"):
        parameter_table(text, "RegTuneClassifier")
