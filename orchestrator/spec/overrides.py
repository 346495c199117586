"""Command-line overrides of a spec, in Hydra's `key=value` grammar for the parts a sweep needs.

    orchestrator sweep search_spaces/quickstart.yaml preprocessor.epochs=1 seeds=[0] name=smoke

- A key that starts with a trial section (data, foundation, preprocessor, head, evaluation,
  compute) sets that setting of the base trial: `preprocessor.epochs=1` is `trial.preprocessor.epochs`
  (the `trial.` prefix may also be written).
- Other keys name the spec's own top-level keys: `seeds=[0]`, `name=smoke`, `search.trials=4`,
  `max_concurrent=2`, `resources.gpu=1`.
- `grid.N.AXIS=[values]` replaces (or adds) axis AXIS of the N-th grid entry (0-based), with AXIS
  the entry's own dotted key: `grid.0.preprocessor.lambda=[1]`. A spec whose grid is one mapping
  is entry 0.
- Values are YAML, as in Hydra: `1`, `1e-4`, `null`, `true`, `[0, 1]`, `{150: 256}`; anything else
  is text. A leading `+` (Hydra's "add a key") is accepted and means the same.

Overrides are applied to the YAML mapping before it is checked, so every override is checked like
the spec itself (one line naming the field, exit 2). The result is what the sweep records as its
plan: a resume with other overrides is refused as a changed spec.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from trainables.errors import UserError
from trainables.schema import SECTIONS

TRIAL = "trial"


def apply_cli_overrides(raw: Any, overrides: list[str] | tuple[str, ...], *, source: str) -> Any:
    """`raw` (the spec's YAML mapping) with each `key=value` applied in order; `raw` is not changed."""
    if not overrides:
        return raw
    if not isinstance(raw, dict):
        return raw  # parse_spec says what is wrong with the file itself
    result = copy.deepcopy(raw)
    seen: dict[str, str] = {}
    for text in overrides:
        key, value = _split(text, source)
        dotted = ".".join(key)
        if dotted in seen:  # the later one would win silently: almost always a typo in a long command
            raise UserError(f"{source}: override {text!r}: {dotted} is already set by {seen[dotted]!r}; give it once")
        seen[dotted] = text
        _set(result, key, value, text, source)
    return result


def _split(text: str, source: str) -> tuple[list[str], Any]:
    key, sep, value_text = text.partition("=")
    key = key.strip().lstrip("+")
    if not sep or not key or any(not part for part in key.split(".")):
        raise UserError(
            f"{source}: override {text!r}: expected KEY=VALUE with a dotted KEY, e.g. preprocessor.epochs=1"
        )
    if not value_text.strip():  # `key=` would set null silently; null must be asked for by name
        raise UserError(f"{source}: override {text!r}: expected a value after '=' (write {key}=null for none)")
    try:
        value = yaml.safe_load(value_text)
    except yaml.YAMLError:
        value = value_text  # Hydra reads what is not YAML as text
    return key.split("."), value


def _set(raw: dict, parts: list[str], value: Any, text: str, source: str) -> None:
    if parts[0] in SECTIONS:
        parts = [TRIAL, *parts]
    if parts[0] == TRIAL:
        if len(parts) < 3:
            raise UserError(
                f"{source}: override {text!r}: expected a setting inside a trial section, e.g. head.epochs=5"
            )
        node = raw.setdefault(TRIAL, {})
        if node is None:
            node = raw[TRIAL] = {}
        _set_nested(node, parts[1:], value, text, source)
    elif parts[0] == "grid":
        _set_grid_axis(raw, parts[1:], value, text, source)
    else:
        _set_nested(raw, parts, value, text, source)


def _set_nested(node: dict, parts: list[str], value: Any, text: str, source: str) -> None:
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise UserError(f"{source}: override {text!r}: {where} is {child!r}, not a mapping to set {parts[-1]} in")
        node = child
    node[parts[-1]] = value


def _set_grid_axis(raw: dict, parts: list[str], value: Any, text: str, source: str) -> None:
    grid = raw.get("grid")
    if len(parts) < 2 or not parts[0].isdigit():
        raise UserError(
            f"{source}: override {text!r}: expected grid.N.AXIS=[values] with N a grid entry's number, "
            "e.g. grid.0.preprocessor.lambda=[1]"
        )
    entries = [grid] if isinstance(grid, dict) else grid if isinstance(grid, list) else []
    index = int(parts[0])
    if index >= len(entries):
        raise UserError(
            f"{source}: override {text!r}: the spec's grid has {len(entries)} entries (0-based), no {index}"
        )
    if not isinstance(entries[index], dict):
        return  # parse_spec says what is wrong with the entry
    entries[index][".".join(parts[1:])] = value
