"""Errors a user can cause, each rendered as one clear line.

The CLI catches `UserError` and prints `str(err)` with exit code 2; everything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An input the user got wrong: bad config, missing data, missing or corrupt file."""


class ConfigError(UserError):
    """A config field with a value outside what is accepted.

    `field` is the dotted path (``preprocessor.lambda``); the message says what was expected
    and what was given, so the line alone tells the user what to fix.
    """

    def __init__(self, field: str, expected: str, got: object = None, *, source: str | None = None):
        self.field = field
        self.expected = expected
        self.got = got
        self.source = source
        where = f"{source}: " if source else ""
        got_part = "" if got is None else f", got {got!r}"
        super().__init__(f"{where}{field}: expected {expected}{got_part}")


class DataNotFoundError(UserError):
    """A dataset asked for by name is not under the data root and download was not requested."""


class CheckpointError(UserError):
    """A checkpoint or saved artifact that is missing, truncated or not what it claims to be."""
