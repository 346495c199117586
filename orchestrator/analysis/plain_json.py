"""Values that pandas and DuckDB hand out, as plain JSON: NaN/NaT -> null, times as ISO 8601 text.

Shared by every `--format json` (results, status, report), so the three agree on how a missing
value or a time stamp looks.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from typing import Any

import numpy as np
import pandas as pd


def dumps(document: Any) -> str:
    """`document` as indented JSON text with a final newline (never NaN: JSON has none)."""
    return json.dumps(json_value(document), indent=2, allow_nan=False) + "\n"


def is_missing(value: Any) -> bool:
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def json_value(value: Any) -> Any:
    """A value DuckDB/pandas gave as plain JSON: NaN and NaT -> null, times as ISO 8601 text."""
    if isinstance(value, np.ndarray):
        return [json_value(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating, decimal.Decimal)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, dt.datetime):
        return utc(value).isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (dt.timedelta, pd.Timedelta)):
        return pd.Timedelta(value).isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value if isinstance(value, str) else str(value)


def utc(value: dt.datetime) -> dt.datetime:
    """DuckDB hands out time stamps in the local time zone; results show them in UTC."""
    return value.astimezone(dt.timezone.utc) if value.tzinfo is not None else value
