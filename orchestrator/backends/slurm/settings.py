"""The `slurm:` section of a sweep spec and its command-line options, parsed and validated.

The Slurm backend's entry in the backends registry (spec/backends.py) names `parse_slurm` and
`add_options`: the spec is checked with them before anything runs, without importing submitit.

Pure parsing, no Slurm needed: sbatch itself is asked about partitions and options at submit
time (`sbatch --test-only`), before anything is submitted.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from trainables.errors import ConfigError
from trainables.schema.fields import did_you_mean, is_int

MODES = ("ray", "array")
# Command-line flags that override the spec's slurm: section (argparse dest -> spec key).
SLURM_FLAGS = {
    "slurm_mode": "mode",
    "partition": "partition",
    "account": "account",
    "qos": "qos",
    "nodes": "nodes",
    "gpus_per_node": "gpus_per_node",
    "cpus_per_task": "cpus_per_task",
    "mem": "mem",
    "time": "time",
    "constraint": "constraint",
}
# sbatch's own time formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
_TIME = re.compile(r"^(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")
_MEM = re.compile(r"^\d+(?:\.\d+)?[KMGT]?B?$", re.IGNORECASE)
_SBATCH_KEY = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class SlurmSettings:
    """How a sweep is laid onto Slurm. Field names are the spec's `slurm.<field>` keys."""

    mode: str = "ray"  # ray: one allocation runs a Ray cluster; array: one array task per trial
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int | None = None  # per node in ray mode, per trial in array mode; default from resources
    mem: str | None = None  # per node, as sbatch writes it: 16G, 4000M
    time_min: int = 60  # `time:` in the spec (minutes or sbatch's D-HH:MM:SS)
    constraint: str | None = None
    signal_delay_s: int = 90  # USR2 this long before the time limit: time to stop cleanly
    max_requeues: int = 3  # time-limit requeues submitit allows
    array_parallelism: int = 16  # array mode: tasks running at once
    job_name: str | None = None
    additional: dict[str, Any] = field(default_factory=dict)  # more #SBATCH options
    setup: tuple[str, ...] = ()  # shell lines run before the job: module load, source venv

    def with_overrides(self, overrides: dict[str, Any]) -> SlurmSettings:
        """These settings with command-line values laid over: spec keys (`time`, not `time_min`).

        Each value is checked like the spec's, and an error names the flag (--partition).
        """
        merged = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in overrides.items():
            if value is None:
                continue
            flag = "--" + key.replace("_", "-")
            merged[_SPEC_KEYS[key]] = _parse_value(
                key, value, lambda _k, expected, got: ConfigError(flag, expected, got, source="command line")
            )
        return _checked(
            SlurmSettings(**merged),
            lambda _k, expected, got: ConfigError("--nodes", expected, got, source="command line"),
        )


# spec key -> field name, where they differ
_SPEC_KEYS = {f.name: f.name for f in fields(SlurmSettings) if f.name != "time_min"} | {"time": "time_min"}


def parse_slurm(raw: Any, *, source: str, where: str = "slurm") -> SlurmSettings:
    """The `slurm:` mapping as SlurmSettings; a ConfigError naming the field for anything wrong."""

    def fail(key: str, expected: str, got: Any) -> ConfigError:
        return ConfigError(f"{where}.{key}" if where else key, expected, got, source=source)

    if raw is None:
        return SlurmSettings()
    if not isinstance(raw, dict):
        raise ConfigError(where, "a mapping such as {partition: gpu, time: 120, gpus_per_node: 1}", raw, source=source)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _SPEC_KEYS:
            raise fail(
                str(key),
                f"a known key: one of {sorted(_SPEC_KEYS)}{did_you_mean(key, sorted(_SPEC_KEYS))}",
                "unknown key",
            )
        values[_SPEC_KEYS[key]] = _parse_value(key, value, fail)
    return _checked(SlurmSettings(**values), fail)


def _checked(settings: SlurmSettings, fail) -> SlurmSettings:
    """Settings that fit together: an array task is one trial on one node."""
    if settings.mode == "array" and settings.nodes != 1:
        raise fail("nodes", "1 in array mode (each array task is one trial on one node)", settings.nodes)
    return settings


def _parse_value(key: str, value: Any, fail) -> Any:
    if key == "mode":
        if value not in MODES:
            raise fail(key, f"one of {list(MODES)}{did_you_mean(value, list(MODES))}", value)
        return value
    if key in ("partition", "account", "qos", "constraint", "job_name"):
        return _plain_text(key, value, fail)
    if key in ("nodes", "max_requeues", "array_parallelism", "cpus_per_task"):
        if not (is_int(value) and value >= (0 if key == "max_requeues" else 1)):
            raise fail(key, "an integer >= 1" if key != "max_requeues" else "an integer >= 0", value)
        return value
    if key in ("gpus_per_node", "signal_delay_s"):
        if not (is_int(value) and value >= 0):
            raise fail(key, "an integer >= 0", value)
        return value
    if key == "mem":
        text = str(value) if is_int(value) else value
        if not isinstance(text, str) or not _MEM.match(text):
            raise fail(key, "memory per node as sbatch takes it, such as 16G or 4000M", value)
        return text
    if key == "time":
        return parse_time_min(value, lambda expected, got: fail(key, expected, got))
    if key == "additional":
        if not isinstance(value, dict):
            raise fail(
                key, "a mapping of sbatch long options to values, such as {exclusive: true, gres: 'gpu:2'}", value
            )
        for option, option_value in value.items():
            if not isinstance(option, str) or not _SBATCH_KEY.match(option):
                raise fail(f"{key}.{option}", "an sbatch long option without dashes, such as mail-type", option)
            if option_value is not True:
                _plain_text(f"{key}.{option}", option_value, fail, allow_numbers=True)
        return dict(value)
    if key == "setup":
        if not isinstance(value, list) or not all(isinstance(line, str) and "\n" not in line for line in value):
            raise fail(
                key, "a list of shell lines, such as ['module load cuda/12.4', 'source ~/venv/bin/activate']", value
            )
        return tuple(value)
    raise AssertionError(key)


def _plain_text(key: str, value: Any, fail, allow_numbers: bool = False) -> str:
    if allow_numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    # A line break would end the #SBATCH line and start a shell line: never let one through.
    if not isinstance(value, str) or not value or any(ord(c) < 32 for c in value):
        raise fail(key, "a non-empty single-line string", value)
    return value


def parse_time_min(value: Any, fail) -> int:
    """Minutes from an integer or sbatch's time formats (rounded up to whole minutes)."""
    if is_int(value) and value >= 1:
        return int(value)
    match = _TIME.match(value) if isinstance(value, str) else None
    if not match:
        raise fail("minutes (an integer >= 1) or sbatch's [D-]HH:MM:SS", value)
    days, a, b, c = (int(match[g]) if match[g] else None for g in ("days", "a", "b", "c"))
    if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = a * 3600 + b * 60 + c
    elif b is not None:  # MM:SS
        seconds = a * 60 + b
    else:  # minutes
        seconds = a * 60
    if seconds <= 0:
        raise fail("a positive time limit", value)
    return math.ceil(seconds / 60)


def add_options(parser: argparse.ArgumentParser) -> None:
    """--slurm-mode, --partition, --time ...: the spec's slurm: section overridden (sweep and plan)."""
    slurm = parser.add_argument_group("slurm", "override the spec's slurm: section")
    slurm.add_argument(
        "--slurm-mode",
        choices=MODES,
        default=None,
        help="ray: one allocation runs a Ray cluster; array: one array task per trial",
    )
    for flag, kind, what in (
        ("partition", str, "partition"),
        ("account", str, "account"),
        ("qos", str, "QOS"),
        ("nodes", int, "nodes (ray mode)"),
        ("gpus-per-node", int, "GPUs per node"),
        ("cpus-per-task", int, "CPUs per node (ray) or per trial (array)"),
        ("mem", str, "memory per node, e.g. 16G"),
        ("time", str, "time limit: minutes or D-HH:MM:SS"),
        ("constraint", str, "node features"),
    ):
        slurm.add_argument(f"--{flag}", type=kind, default=None, help=what)


def settings_with_options(settings: SlurmSettings, options: argparse.Namespace) -> SlurmSettings:
    """The spec's settings with the command line's values over them (a flag not given keeps the spec's)."""
    return settings.with_overrides({key: getattr(options, flag, None) for flag, key in SLURM_FLAGS.items()})
