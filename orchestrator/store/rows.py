"""One row of a sweep's record: what a trial's row, its columns and its provenance are.

A trial's row is its flattened config (settings as `section.key` columns, the data section's
without a prefix), its metrics, its status and where it ran; rows are built here and written by
parquet.py. The column names of metrics and stages come from trainables/schema/results.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from trainables.schema.preprocessor import PREPROCESSOR_KINDS
from trainables.schema.results import (
    ACCURACY_NAMES,
    SEED_FIELDS,
    TrialStatus,
    accuracy_column,
    interval_columns,
)

# The statuses a row is written with, short at the call sites. A STOPPED trial was stopped early by
# a scheduler (engine/stopped_trials.py): never finished, never run again.
TERMINATED, ERROR, STOPPED = TrialStatus.TERMINATED, TrialStatus.ERROR, TrialStatus.STOPPED

# Every row has these (null where no evaluation ran), so a query never misses a column: each
# accuracy with the bounds of its interval, in table order.
ACCURACY_COLUMNS = tuple(
    column for name in ACCURACY_NAMES for column in (accuracy_column(name), *interval_columns(name))
)


# The data section's settings are columns without a prefix (dataset, data_fraction, seed ...).
UNPREFIXED_SECTION = "data"


SETTING_PREFIXES = ("foundation.", "preprocessor.", "head.", "evaluation.")


VERSIONED_PACKAGES = ("torch", "torchvision", "transformers", "ray", "optuna", "pyautoattack", "cropd-orchestrator")


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def flat_name(section: str, key: str) -> str:
    """The Parquet column of a config value: `seed` for data.seed, `preprocessor.lambda` ..."""
    return key if section == UNPREFIXED_SECTION else f"{section}.{key}"


SEED_COLUMNS = tuple(flat_name(*field.split(".")) for field in SEED_FIELDS)


def is_setting(column: str) -> bool:
    """Whether a trials column holds a config value (as opposed to identity, metrics, versions)."""
    from trainables.schema.data import DATA_SCHEMA

    return column in DATA_SCHEMA or column.startswith(SETTING_PREFIXES)


# Mappings whose settings get a column each (`foundation.pretraining.method`), as a sweep varies
# them one by one; other mappings (an inline architecture) stay one JSON column.
NESTED_SETTINGS = ("foundation.pretraining", "foundation.resnet", "preprocessor.validation")


def flatten_config(config: dict) -> dict[str, Any]:
    """A validated nested trial config as flat columns: `dataset`, `preprocessor.lambda`, ...

    Lists and mappings (milestones, an architecture given inline) become JSON text so every
    column holds one scalar type and any Parquet reader can filter on it.
    """
    flat: dict[str, Any] = {}
    for section, values in config.items():
        for key, value in (values or {}).items():
            if f"{section}.{key}" in NESTED_SETTINGS:
                for inner, inner_value in value.items():
                    flat[f"{flat_name(section, key)}.{inner}"] = _scalar(inner_value)
            else:
                flat[flat_name(section, key)] = _scalar(value)
    # Settings a pre-processor kind ignores are null, so `WHERE "preprocessor.lambda" = 1` never
    # matches an identity trial that merely carried the default.
    kind = PREPROCESSOR_KINDS.get((config.get("preprocessor") or {}).get("kind"))
    if kind is not None:
        for key in config["preprocessor"]:
            if key not in kind.relevant and f"preprocessor.{key}" not in NESTED_SETTINGS:
                flat[f"preprocessor.{key}"] = None
    return flat


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def trial_row(
    *,
    sweep: str,
    trial_id: str,
    config_hash: str,
    config: dict,
    status: str,
    metrics: dict | None,
    error: str | None,
    started_at: datetime,
    finished_at: datetime,
    extra: dict | None = None,
) -> dict[str, Any]:
    """One results row: identity, status, flat config, metrics, timestamps, versions."""
    row: dict[str, Any] = {
        "sweep": sweep,
        "trial_id": trial_id,
        "config_hash": config_hash,
        "status": TrialStatus(status).value,  # the plain string, whatever the caller passed
        "error": error,
        "started_at": started_at,
        "finished_at": finished_at,
    }
    row.update(flatten_config(config))
    row.update(dict.fromkeys(ACCURACY_COLUMNS))  # null until the metrics below say otherwise
    for key, value in (metrics or {}).items():
        if key == "integrity_flags":
            row[key] = ",".join(value)
        else:
            row[key] = _scalar(value)
    row.setdefault("integrity_flags", None)
    row.update(extra or {})
    row.update(environment())
    # CPU float sums depend on the thread count: the same trial on 1 and 2 threads differs
    # (embedded foundation weights by ~5e-5 after 2 epochs), so it is part of the provenance.
    torch = sys.modules.get("torch")
    row["torch_threads"] = torch.get_num_threads() if torch is not None else None
    return row


def status_row(
    *,
    sweep: str,
    trial_id: str,
    config_hash: str,
    config: dict,
    status: str,
    error: str | None = None,
    extra: dict | None = None,
) -> dict[str, Any]:
    """The row of a trial that ended without metrics, written by the driver for it: stopped by a
    scheduler (engine/stopped_trials.py), or its worker lost (engine/trial_failures.py). It started
    and finished, as far as the record goes, now."""
    now = now_utc()
    return trial_row(
        sweep=sweep,
        trial_id=trial_id,
        config_hash=config_hash,
        config=config,
        status=status,
        metrics=None,
        error=error,
        started_at=now,
        finished_at=now,
        extra=extra,
    )


@lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """Package versions and the project's git revision (None outside a checkout)."""
    info: dict[str, Any] = {}
    for package in VERSIONED_PACKAGES:
        try:
            info[f"version.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[f"version.{package}"] = None
    info["git_revision"] = _git_revision()
    return info


def _git_revision() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
