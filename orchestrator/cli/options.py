"""Options several commands share, spelled one way everywhere.

`--format text` is every command's human-readable output (`table`, its old name in `status`,
`results` and `pareto`, is still accepted for one release); machine formats are json and csv.
"""

from __future__ import annotations

import argparse

# Old spellings still accepted, mapped to the current one.
FORMAT_ALIASES = {"table": "text"}


def add_format_option(parser: argparse.ArgumentParser, machine: tuple[str, ...], help: str) -> None:
    """--format: text (the default) or one of the `machine` formats."""
    parser.add_argument(
        "--format",
        type=lambda value: FORMAT_ALIASES.get(value, value),
        choices=("text", *machine),
        default="text",
        help=help,
    )
