"""Reading search-space YAML: line-aware parsing, strict keys, and building a SearchSpace."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from regtune.space.distributions import (
    CategoricalParam,
    FloatParam,
    IntParam,
    Param,
    SearchSpaceError,
)
from regtune.space.space import SPACES_DIR, RegularizerFamily, SearchSpace, _hint

_TOP_KEYS = ("description", "fixed", "params", "regularizers")
_NUMERIC_KEYS = ("type", "low", "high", "log", "step", "default")
_SPEC_KEYS = {
    "float": _NUMERIC_KEYS,
    "int": _NUMERIC_KEYS,
    "categorical": ("type", "choices", "default"),
}

# ---------------------------------------------------------------- YAML loading


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-4`` as a float, as YAML 1.2 does (YAML 1.1 reads text)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class _Flow(dict):
    """A param spec, dumped on one line like the shipped files."""


class _Dumper(yaml.SafeDumper):
    def represent_none(self, data: None) -> yaml.Node:
        return self.represent_scalar("tag:yaml.org,2002:null", "")


_Dumper.add_representer(
    _Flow, lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True)
)
_Dumper.add_representer(type(None), _Dumper.represent_none)


def _resolve(name_or_path: str | os.PathLike[str]) -> Path:
    text = os.fspath(name_or_path)
    available = SearchSpace.available()
    if not isinstance(name_or_path, os.PathLike) and text in available:
        return SPACES_DIR / f"{text}.yaml"
    path = Path(text)
    looks_like_path = isinstance(name_or_path, os.PathLike) or "/" in text or os.sep in text \
        or text.endswith((".yaml", ".yml"))
    if path.is_file():
        return path
    if looks_like_path:
        raise SearchSpaceError(f"no such file: {text}", path=path)
    raise SearchSpaceError(f"no space named {text!r}{_hint(text, available)}; available: "
                           f"{', '.join(available) or '(none)'}, or give a path to a .yaml file")


def _load(path: Path) -> SearchSpace:
    lines: dict[str, int] = {}
    try:
        return _build(path, path.read_text(encoding="utf-8"), lines)
    except (OSError, UnicodeDecodeError) as err:
        raise SearchSpaceError(f"cannot read the file: {err}", path=path) from None
    except SearchSpaceError as err:
        key, line = err.key or "", err.line
        while line is None and key:
            line = lines.get(key)
            key = key.rpartition(".")[0]
        raise SearchSpaceError(err.detail, path=path, line=line, key=err.key) from None


def _build(path: Path, text: str, lines: dict[str, int]) -> SearchSpace:
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as err:
        raise _yaml_error(err) from None
    if root is None:
        raise SearchSpaceError(f"the file is empty; expected the keys {', '.join(_TOP_KEYS)}")
    data = _plain(root, "", lines, [0])
    if not isinstance(data, dict):
        raise SearchSpaceError(f"expected a mapping with the keys {', '.join(_TOP_KEYS)}", line=1)
    _check_keys(data, _TOP_KEYS, "")
    families = []
    for family, spec in _section(data, "regularizers").items():
        key = f"regularizers.{family}"
        spec = {} if spec is None else spec
        if not isinstance(spec, dict):
            raise SearchSpaceError("expected a mapping of the family's params (empty for a plain "
                                   "switch)", key=key)
        params = tuple(_param(name, value, f"{key}.{name}") for name, value in spec.items())
        families.append(_within(key, lambda f=family, p=params: RegularizerFamily(f, p)))
    return SearchSpace(
        name=path.stem,
        description="" if data.get("description") is None else data["description"],
        path=path,
        fixed=_section(data, "fixed"),
        params=tuple(_param(name, spec, f"params.{name}")
                     for name, spec in _section(data, "params").items()),
        regularizers=tuple(families),
    )


def _yaml_error(err: yaml.YAMLError) -> SearchSpaceError:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    return SearchSpaceError(f"invalid YAML: {problem}", line=mark.line + 1 if mark else None)


def _plain(node: yaml.Node, key: str, lines: dict[str, int], count: list[int], depth: int = 0) -> Any:
    """Python values from YAML nodes, recording the line of every mapping key as we go."""
    count[0] += 1
    if depth > 16 or count[0] > 10_000:
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
        return [_plain(item, key, lines, count, depth + 1) for item in node.value]
    try:
        return yaml.constructor.SafeConstructor().construct_object(node)
    except yaml.YAMLError as err:
        raise _yaml_error(err) from None
    except (ArithmeticError, LookupError, TypeError, ValueError):  # PyYAML on e.g. `!!float ''`
        raise SearchSpaceError(f"invalid {node.tag.rpartition(':')[2]} value {node.value!r}",
                               line=node.start_mark.line + 1, key=key or None) from None


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SearchSpaceError(f"expected a mapping, got {value!r}", key=name)
    return value


def _check_keys(spec: dict[str, Any], allowed: tuple[str, ...], key: str) -> None:
    for name in spec:
        if name not in allowed:
            detail = f"unknown key {name!r}{_hint(name, allowed)}; allowed: {', '.join(allowed)}"
            raise SearchSpaceError(detail, key=f"{key}.{name}" if key else name)


def _param(name: str, spec: Any, key: str) -> Param:
    if not isinstance(spec, dict):
        raise SearchSpaceError(f"{spec!r} must be a mapping such as "
                               "{type: float, low: 0.1, high: 0.5}", key=key)
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in _SPEC_KEYS:
        raise SearchSpaceError(f"type={kind!r} must be one of {', '.join(_SPEC_KEYS)}",
                               key=f"{key}.type" if "type" in spec else key)
    _check_keys(spec, _SPEC_KEYS[kind], key)
    required = ("choices",) if kind == "categorical" else ("low", "high")
    for needed in required:
        if needed not in spec:
            raise SearchSpaceError(f"{kind} param needs {needed!r}", key=key)
    classes: dict[str, Callable[..., Param]] = {
        "float": FloatParam, "int": IntParam, "categorical": CategoricalParam,
    }
    cls = classes[kind]
    return _within(key, lambda: cls(name, **{k: v for k, v in spec.items() if k != "type"}))


def _within(key: str, build: Callable[[], Any]) -> Any:
    try:
        return build()
    except SearchSpaceError as err:
        raise err.within(key) from None

