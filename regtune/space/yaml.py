"""Search-space YAML as text: line-aware reading, and writing in the shipped files' layout.

This module knows YAML, not search spaces: it turns a file into plain Python data plus the line
of every key, and plain data back into text. :class:`regtune.space.space.SearchSpace` builds
itself from the data and asks the document where an error is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from regtune.exceptions import SearchSpaceError

__all__ = ["YamlDocument", "dump_yaml", "read_yaml"]

_MAX_DEPTH, _MAX_NODES = 16, 10_000


@dataclass(frozen=True)
class YamlDocument:
    """A YAML file as plain data, with the line of every mapping key (``"params.lr"``)."""

    path: Path
    data: Any
    lines: Mapping[str, int] = field(default_factory=dict)

    def locate(self, err: SearchSpaceError) -> SearchSpaceError:
        """``err`` naming this file and the line of its key, or of the nearest enclosing key."""
        key, line = err.key or "", err.line
        while line is None and key:
            line = self.lines.get(key)
            key = key.rpartition(".")[0]
        return SearchSpaceError(err.detail, path=self.path, line=line, key=err.key)


def read_yaml(path: Path) -> YamlDocument:
    """Parse ``path`` safely (no tags, bounded size); errors name the file and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SearchSpaceError(f"cannot read the file: {err}", path=path) from None
    lines: dict[str, int] = {}
    try:
        root = yaml.compose(text, Loader=_Loader)
        data = None if root is None else _plain(root, "", lines, [0])
    except yaml.YAMLError as err:
        raise _with_path(_yaml_error(err), path) from None
    except SearchSpaceError as err:
        raise _with_path(err, path) from None
    return YamlDocument(path, data, lines)


def dump_yaml(data: Mapping[str, Any]) -> str:
    """YAML text laid out like the shipped files.

    A mapping of plain values below the top level (a param spec) goes on one line; ``None``
    is written as nothing (``spectral_norm:``).
    """
    return yaml.dump(_flow_leaves(data, 0), Dumper=_Dumper, sort_keys=False,
                     default_flow_style=None, width=100)


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-4`` as a float, as YAML 1.2 does (YAML 1.1 reads text)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class _Flow(dict):
    """A mapping dumped on one line."""


class _Dumper(yaml.SafeDumper):
    def represent_none(self, data: None) -> yaml.Node:
        return self.represent_scalar("tag:yaml.org,2002:null", "")


_Dumper.add_representer(
    _Flow, lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True)
)
_Dumper.add_representer(type(None), _Dumper.represent_none)


def _flow_leaves(value: Any, depth: int) -> Any:
    if not isinstance(value, Mapping):
        return value
    if depth >= 2 and not any(isinstance(v, Mapping) for v in value.values()):
        return _Flow(value)
    return {k: _flow_leaves(v, depth + 1) for k, v in value.items()}


def _with_path(err: SearchSpaceError, path: Path) -> SearchSpaceError:
    return SearchSpaceError(err.detail, path=path, line=err.line, key=err.key)


def _yaml_error(err: yaml.YAMLError) -> SearchSpaceError:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    return SearchSpaceError(f"invalid YAML: {problem}", line=mark.line + 1 if mark else None)


def _plain(node: yaml.Node, key: str, lines: dict[str, int], count: list[int], depth: int = 0) -> Any:
    """Python values from YAML nodes, recording the line of every mapping key as we go."""
    count[0] += 1
    if depth > _MAX_DEPTH or count[0] > _MAX_NODES:
        raise SearchSpaceError("nested too deeply or too large", line=node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            name = _plain(key_node, key, lines, count, depth + 1)
            line = key_node.start_mark.line + 1
            sub = f"{key}.{name}" if key else str(name)
            if not isinstance(name, str):
                raise SearchSpaceError(f"key {name!r} must be text", line=line, key=key or None)
            if name in out:
                raise SearchSpaceError("duplicate key", line=line, key=sub)
            lines[sub] = line
            out[name] = _plain(value_node, sub, lines, count, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        # Items are keyed by position ("priors.0"), so an error in one names its own line.
        out_list = []
        for i, item in enumerate(node.value):
            sub = f"{key}.{i}" if key else str(i)
            lines.setdefault(sub, item.start_mark.line + 1)
            out_list.append(_plain(item, sub, lines, count, depth + 1))
        return out_list
    try:
        return yaml.constructor.SafeConstructor().construct_object(node)
    except yaml.YAMLError as err:
        raise _yaml_error(err) from None
    except (ArithmeticError, LookupError, TypeError, ValueError):  # PyYAML on e.g. `!!float ''`
        raise SearchSpaceError(f"invalid {node.tag.rpartition(':')[2]} value {node.value!r}",
                               line=node.start_mark.line + 1, key=key or None) from None
