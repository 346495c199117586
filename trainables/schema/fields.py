"""The field checker every config section is declared with: defaults, types, ranges, did-you-mean.

Each stage declares its fields once; `resolve` merges the user's section over the defaults and
raises a ConfigError naming the dotted field before any work starts.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..errors import ConfigError


@dataclass(frozen=True)
class Field:
    """One config field: its default, a description of what is accepted, and the check.

    `omit_when_default`: the project's rule for a setting added after sweeps existed: at its
    default (or at a value in `same_as_default`, which means the same thing: `adamw` where null
    means AdamW, an empty schedule) the setting is left out of the resolved section, so the
    configs and trial hashes from before the setting existed stay as they were. Readers use
    `section.get(key)`.
    """

    default: Any
    expected: str
    check: Callable[[Any], bool]
    omit_when_default: bool = False
    same_as_default: tuple = ()

    def omitted(self, value: Any) -> bool:
        """Whether `value` leaves this field out of its resolved section."""
        return self.omit_when_default and any(_same(value, v) for v in (self.default, *self.same_as_default))


def _same(value: Any, other: Any) -> bool:
    # By type too: False is not a null setting, nor 0 an unset one.
    return type(value) is type(other) and value == other


class Resolved(dict):
    """A checked config section: complete, every value checked, and read-only, so no stage can
    change what was validated (copy it with dict(...) to derive another). A resolve function given
    a Resolved section returns it as it is: a config is validated once, at the edge."""

    def _read_only(self, *args, **kwargs):
        raise TypeError("a resolved config section is read-only; derive a changed copy with {**section, ...}")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self):  # pickled (Ray, multiprocessing) and deep-copied without __setitem__
        return (type(self), (dict(self),))


def frozen(section: Mapping[str, Any]) -> Resolved:
    """`section` and every mapping inside it as Resolved (lists stay lists: JSON and hashes are unchanged)."""
    return Resolved({key: frozen(value) if isinstance(value, Mapping) else value for key, value in section.items()})


def did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(word), choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def resolve(section: str, given: Mapping[str, Any] | None, schema: Mapping[str, Field]) -> dict[str, Any]:
    """Return `given` merged over the schema defaults, every value checked; fields flagged
    omit_when_default are left out at their default."""
    if given is None:
        given = {}
    if not isinstance(given, Mapping):  # `head: robust` in a spec: one line, not a traceback from dict()
        raise ConfigError(section, "a mapping of settings", given)
    given = dict(given)
    for key in given:
        if key not in schema:
            raise ConfigError(
                f"{section}.{key}",
                f"a known setting: one of {sorted(schema)}{did_you_mean(key, list(schema))}",
                "unknown key",
            )
    resolved = {}
    for key, field in schema.items():
        value = given.get(key, field.default)
        if not field.check(value):
            raise ConfigError(f"{section}.{key}", field.expected, value)
        if not field.omitted(value):
            resolved[key] = value
    return resolved


# Reusable checks. bool is an int subclass in Python, so numbers exclude it explicitly.
def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def number(
    low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False
) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not is_number(value):
            return False
        if low is not None and (value < low or (low_open and value == low)):
            return False
        if high is not None and (value > high or (high_open and value == high)):
            return False
        return True

    return check


def integer(low: int | None = None) -> Callable[[Any], bool]:
    return lambda value: is_int(value) and (low is None or value >= low)


def one_of(*choices: Any) -> Callable[[Any], bool]:
    return lambda value: value in choices


def boolean(value: Any) -> bool:
    return isinstance(value, bool)


def text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)
