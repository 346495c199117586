"""Experiment trackers a sweep reports to: the spec's `trackers: [tensorboard, mlflow, wandb]`.

Each name maps onto one of Ray Tune's own logger callbacks, which log every report a trial makes
to Tune (per epoch and the final one: the numbers; strings such as `stage` are skipped by each
callback) and the trial's config as parameters. By default everything they write stays under the
sweep folder; each tracker's usual environment variables send it elsewhere.

`parse_trackers` checks the spec's value without importing any tracker (the spec is checked on
the command line's light path); the engine's `tracker_callbacks` (engine/trackers.py) imports
them, so only a sweep that asked for a tracker pays for it.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from trainables.errors import ConfigError, UserError
from trainables.schema.fields import did_you_mean

TRACKERS = ("tensorboard", "mlflow", "wandb")

# The module each tracker's callback imports, and the pip extra (pyproject.toml) that installs it.
# TensorBoard's callback writes with tensorboardX (which ray[tune] brings); the extra adds
# tensorboard itself, whose reader and UI open the files.
_MODULES = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}
PROJECT = "cropd-orchestrator"


def parse_trackers(value: Any, source: str) -> tuple[str, ...]:
    """The spec's `trackers:` value (None or a list of names) checked: the names, in order.

    A mistake raises a UserError of one line naming the file (`source`), the field and what was
    expected: a value that is not a list, an unknown or repeated name, or a tracker whose package
    is not installed (with the pip command that installs it).
    """
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError("trackers", f"a list of tracker names such as [{', '.join(TRACKERS)}]", value, source=source)
    for name in value:
        _check_name(name, source)
    for index, name in enumerate(value):
        if name in value[:index]:
            raise ConfigError("trackers", f"each tracker once ({name!r} is listed twice)", value, source=source)
    for name in value:
        _check_installed(name, source)
    return tuple(value)


def _check_name(name: Any, source: str) -> None:
    if isinstance(name, str) and name in TRACKERS:
        return
    hint = did_you_mean(name, list(TRACKERS)) if isinstance(name, str) else ""
    raise ConfigError("trackers", f"one of {', '.join(TRACKERS)}{hint}", name, source=source)


def _check_installed(name: str, source: str) -> None:
    # find_spec, not import: mlflow alone takes over a second to import, and the spec is checked
    # on the command line's light path (tests/orchestrator/cli/test_import_boundaries.py).
    if importlib.util.find_spec(_MODULES[name]) is None:
        raise UserError(
            f"{source}: trackers: {name} needs the Python package {_MODULES[name]}, which is not installed "
            f"(pip install '{PROJECT}[{name}]')"
        )
