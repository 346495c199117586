"""`orchestrator results <sweep dir or spec>`: the trial rows as a table, CSV or JSON, or any SQL.

Without --sql: one row per trial (oldest first) with its hash, status, the settings that vary
across the sweep and the headline accuracies with their 95% intervals. With --sql: any DuckDB
query over the tables `trials` (one row per trial), `epochs` (one row per trial and epoch) and
`examples` (one row per trial, attack and test point: config_hash, attack, index, label, correct).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestrator.analysis.plain_json import is_missing, json_value, utc
from orchestrator.cli.options import add_format_option
from orchestrator.spec.target import sweep_dir_of
from orchestrator.store.query import connect, first_line, frame
from orchestrator.store.rows import ACCURACY_COLUMNS, is_setting
from trainables.errors import UserError

FORMATS = ("text", "csv", "json")
IDENTITY_COLUMNS = ("config_hash", "status")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "results",
        help="a sweep's results as a table, CSV or JSON; or any SQL query on them",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("target", type=Path, help="a sweep directory, or the spec it was run from")
    parser.add_argument(
        "--sql",
        metavar="QUERY",
        help="a DuckDB query over the tables `trials`, `epochs` and `examples` (per trial, attack and test point), "
        "e.g. "
        '"SELECT * FROM trials WHERE status = \'ERROR\'" (quote dotted names: "preprocessor.lambda")',
    )
    add_format_option(parser, ("csv", "json"), "text (default): a table; csv; json")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    sweep_dir = sweep_dir_of(args.target)
    frame = query(sweep_dir, args.sql)
    write(frame, args.format)
    return 0


def query(sweep_dir: Path, sql: str | None = None) -> pd.DataFrame:
    """The default view of the trials, or the result of `sql` (a DuckDB error is the user's)."""
    import duckdb

    connection = connect(sweep_dir)
    try:
        if sql is None:
            return default_view(frame(connection, "SELECT * FROM trials ORDER BY started_at"))
        if not sql.strip():
            raise UserError("--sql: the query is empty")
        try:
            return frame(connection, sql)
        except ValueError as err:
            raise UserError(f"--sql: {err}") from None
        except duckdb.Error as err:
            raise UserError(f"--sql: {first_line(err)}") from None
    finally:
        connection.close()


def default_view(trials: pd.DataFrame) -> pd.DataFrame:
    """Hash, status, the settings that differ between trials, and the headline metrics."""
    settings = [c for c in trials.columns if is_setting(c) and trials[c].nunique(dropna=True) > 1]
    if not settings and "preprocessor.kind" in trials.columns:
        settings = ["preprocessor.kind"]
    columns = [c for c in (*IDENTITY_COLUMNS, *settings, *ACCURACY_COLUMNS) if c in trials.columns]
    return trials[columns].reset_index(drop=True)


def write(frame: pd.DataFrame, fmt: str, console: Console | None = None) -> None:
    if fmt == "csv":
        frame.to_csv(sys.stdout, index=False)
    elif fmt == "json":
        records = [{str(k): json_value(v) for k, v in record.items()} for record in frame.to_dict("records")]
        sys.stdout.write(json.dumps(records, indent=2, allow_nan=False) + "\n")
    else:
        print_table(frame, console)


def print_table(frame: pd.DataFrame, console: Console | None = None) -> None:
    # Off a terminal (a pipe, CI logs, Slurm output) rich would assume 80 columns and fold a wide
    # table; there the table gets all the width it needs.
    console = console or Console(width=None if Console().is_terminal else 100_000)
    if not len(frame.columns):
        console.print("(no columns)", markup=False, highlight=False)
        return
    table = Table()
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column])
        table.add_column(Text(str(column)), justify="right" if numeric else "left", overflow="fold")
    for record in frame.itertuples(index=False, name=None):
        table.add_row(*(Text(_table_cell(column, value)) for column, value in zip(frame.columns, record)))
    console.print(table)
    console.print(f"{len(frame)} row{'s' if len(frame) != 1 else ''}", markup=False, highlight=False)


def _table_cell(column: str, value: Any) -> str:
    if is_missing(value):
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        return f"{value:.4f}" if str(column).startswith("acc_") else f"{value:.6g}"
    if isinstance(value, dt.datetime):
        return utc(value).isoformat(timespec="seconds")
    if isinstance(value, (list, tuple, dict, np.ndarray)):
        return json.dumps(json_value(value))
    return str(value)
