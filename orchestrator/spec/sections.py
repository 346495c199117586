"""The parsers of a spec's sections that stand alone: `name:`, `seeds:`, `grid:` (and the points it
plans), `objectives:` and `resources:`; and what the grid and the search share: the checks of a
dotted key and a scalar value, and a planned trial's config validated with its errors named by
the spec field that set the value.

Each checks one value and raises the spec's one-line ConfigError through `fail` (built by
sweep_spec.parse_spec, which puts the sections together into a SweepSpec).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from trainables.errors import ConfigError
from trainables.schema import SECTIONS, validate_trial_config
from trainables.schema.fields import did_you_mean, is_int, is_number
from trainables.schema.results import HEADLINE_METRICS, SEED_FIELDS, VALIDATION_METRICS, validation_twin

# A grid axis (and a spec's `seeds` key) that sets every training seed at once (results.SEED_FIELDS).
SEED_KEY = "seed"
# The folder runs/<name> becomes <name>.replaced-<UTC stamp> (26 more bytes) when a sweep is moved
# aside, and a file name may be at most 255 bytes on the usual filesystems.
MAX_NAME_BYTES = 200


def parse_name(raw: dict, default_name: str, fail) -> str:
    """The sweep's name (`name:`, else the spec file's stem): it names the folder runs/<name>."""
    name = raw.get("name", default_name)
    where = "name" if "name" in raw else "name (taken from the file name; set name: in the spec)"
    # No '/', NUL, '.' or '..': the name is a folder, runs/<name>.
    if (
        not isinstance(name, str)
        or not name
        or not all(c.isalnum() or c in "-_." for c in name)
        or name.startswith(".")
    ):
        raise fail(where, "a sweep name of letters, digits, '-', '_' or '.'", name)
    if len(name.encode()) > MAX_NAME_BYTES:
        raise fail(
            where,
            f"a sweep name of at most {MAX_NAME_BYTES} bytes in UTF-8 (it names folders, and "
            f"filesystems allow 255), not {len(name.encode())}",
            name[:40] + "...",
        )
    return name


def parse_seeds(raw: dict, fail) -> list:
    """`seeds:` (distinct integers, each grid point repeated with each), else [None]: the trial's own."""
    seeds = raw.get("seeds", [None])
    if "seeds" in raw and (
        not isinstance(seeds, list) or not seeds or not all(is_int(s) for s in seeds) or len(set(seeds)) != len(seeds)
    ):
        raise fail("seeds", "a non-empty list of distinct integers", seeds)
    return seeds


def parse_grid(grid: Any, fail) -> list[dict[str, list]]:
    """A mapping (one cartesian product) or a list of mappings (their union), as in scikit-learn.

    Keys are dotted trial-config keys, or `seed` (every training seed at once, like the top-level
    `seeds`), so one subgrid can give some seeds a setting the others lack (AutoAttack on seed 0).
    """
    if grid is None:
        return []
    subgrids = grid if isinstance(grid, list) else [grid]
    if not subgrids:
        raise fail("grid", "a mapping of dotted keys to lists of values, or a list of such mappings", grid)
    for index, sub in enumerate(subgrids):
        where = "grid" if not isinstance(grid, list) else f"grid[{index}]"
        if not isinstance(sub, dict) or not sub:
            raise fail(where, "a non-empty mapping of dotted keys (preprocessor.lambda) to lists of values", sub)
        for key, values in sub.items():
            if key != SEED_KEY:  # `seed` sets every training seed, as `seeds` does, but per subgrid
                check_key(key, f"{where}.{key}", fail)
            if not isinstance(values, list) or not values:
                raise fail(f"{where}.{key}", "a non-empty list of values", values)
            for value in values:
                if not is_scalar(value):
                    raise fail(f"{where}.{key}", "a list of numbers, strings, booleans or null", value)
    return subgrids


def grid_points(grid: list[dict[str, list]]) -> list[dict[str, Any]]:
    """Each sub-grid's points in turn, as scikit-learn's ParameterGrid orders them (keys sorted within
    a point, the last key varying fastest, the user's order of values): that order, and so the
    trials' order, is what sweeps made before had. Written out to keep scikit-learn (a second of
    imports) off the command line."""
    points = []
    for sub_grid in grid:
        keys = sorted(sub_grid)
        points += [dict(zip(keys, values)) for values in itertools.product(*(sub_grid[key] for key in keys))]
    return points


def parse_objectives(objectives: Any, fail, *, select_on_test: bool = False) -> dict[str, str]:
    """The objectives a search steers by and a sweep selects on: validation metrics (val_acc_*).

    A test metric is refused with its validation twin named: the test set is only reported, never
    optimised. `select_on_test: true` in the spec allows one (and the report says so).
    """
    if not isinstance(objectives, dict) or not objectives:
        raise fail(
            "objectives",
            "a mapping of metric to max or min, such as {val_acc_natural: max, val_acc_pgd20: max}",
            objectives,
        )
    allowed = (*VALIDATION_METRICS, *HEADLINE_METRICS) if select_on_test else VALIDATION_METRICS
    for metric, mode in objectives.items():
        if metric in HEADLINE_METRICS and not select_on_test:
            raise fail(
                f"objectives.{metric}",
                f"a validation metric such as {validation_twin(metric)} (sweeps select on the validation split "
                "and report the test set; `select_on_test: true` allows a test metric, and the report says so)",
                metric,
            )
        if metric not in allowed:
            raise fail(
                f"objectives.{metric}",
                f"one of {list(allowed)}{did_you_mean(metric, list(allowed))}",
                "unknown metric",
            )
        if mode not in ("max", "min"):
            raise fail(f"objectives.{metric}", "max or min", mode)
    return dict(objectives)


def parse_resources(resources: Any, fail) -> dict[str, float]:
    if not isinstance(resources, dict):
        raise fail("resources", "a mapping such as {cpu: 1, gpu: 0.25}", resources)
    for key in resources:
        if key not in ("cpu", "gpu"):
            raise fail(f"resources.{key}", "cpu or gpu", "unknown key")
    cpu, gpu = resources.get("cpu", 1), resources.get("gpu", 0)
    if not (is_number(cpu) and cpu > 0):
        raise fail("resources.cpu", "a number > 0 (CPUs per trial; fractions allowed)", cpu)
    # Ray packs fractional GPUs onto one device; a request above 1 must be whole devices.
    if not (is_number(gpu) and gpu >= 0 and (gpu <= 1 or float(gpu).is_integer())):
        raise fail("resources.gpu", "a number >= 0: a fraction such as 0.25, or a whole number of GPUs", gpu)
    return {"cpu": cpu, "gpu": gpu}


def check_key(key: Any, where: str, fail) -> None:
    if not isinstance(key, str) or "." not in key:
        raise fail(where, "a dotted trial-config key such as preprocessor.lambda", key)
    section = key.split(".", 1)[0]
    if section not in SECTIONS:
        raise fail(
            where, f"a key in one of the sections {list(SECTIONS)}{did_you_mean(section, list(SECTIONS))}", section
        )


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, str)) or (is_number(value))


def validate_point(config: dict, point: dict[str, Any], where: str, source: str) -> dict:
    """The trial config of one planned `point` (set by the grid or the search), validated; an error is
    named by the spec field that set the value (`grid.<key>`, `search.parameters.<key>`, `seeds`),
    else by the base trial's (`trial.<field>`)."""
    try:
        validated = validate_trial_config(config)
    except ConfigError as err:
        touched = [
            key
            for key in point
            if key == err.field or err.field.startswith(key + ".") or key.startswith(err.field + ".")
        ]
        if SEED_KEY in point and err.field in SEED_FIELDS:
            touched = ["seeds"]
        prefix = "" if touched == ["seeds"] else (f"{where}." if touched else "trial.")
        raise ConfigError(prefix + err.field, err.expected, err.got, source=source) from None
    # Non-finite values cannot come from YAML numbers we accept, but a float('nan') from .nan can.
    for key, value in point.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}.{key}", "a finite number", value, source=source)
    return validated
