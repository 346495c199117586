"""The backends a spec may name, and where each one's code lives: the registry of backends.

A backend plugs in with one `BackendEntry`: the `Backend` class that runs or submits a sweep
(backends/base.py says what it implements), the parser of its own section of the spec (the
section is named after the backend, e.g. `slurm:`), and the function that adds its command-line
options to `orchestrator sweep` and `orchestrator plan`. Everything is named by "module:attribute"
and imported on first use, as the pre-processor kinds are (trainables/schema/preprocessor.py), so
checking a spec imports no backend (no submitit, no Ray) and this registry sits below the backends
without an import of theirs.

Entries come from `BUILT_IN` below and from installed packages: a package that declares an entry
point in the group `cropd_orchestrator.backends` (its value "module:attribute" naming a
BackendEntry) adds a backend without a change to this project (tests/orchestrator/backends/
test_plugged_backend.py installs one that lives only in the tests).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable

from trainables.errors import UserError
from trainables.schema.references import imported

ENTRY_POINT_GROUP = "cropd_orchestrator.backends"


@dataclass(frozen=True)
class BackendEntry:
    """One backend: its name in specs and on the command line, and its parts by "module:attribute"."""

    name: str
    backend: str  # the Backend subclass
    # parse(raw, *, source) -> settings: the spec's section named `name`, checked (one-line
    # ConfigError naming file and field), torch- and Ray-free; None: the backend has no section.
    settings: str | None = None
    # add_options(parser): the backend's flags on `sweep` and `plan` (argparse only, nothing heavy).
    options: str | None = None


BUILT_IN = (
    BackendEntry("local", backend="orchestrator.backends.local:LocalBackend"),
    BackendEntry(
        "slurm",
        backend="orchestrator.backends.slurm.backend:SlurmBackend",
        settings="orchestrator.backends.slurm.settings:parse_slurm",
        options="orchestrator.backends.slurm.settings:add_options",
    ),
)


@functools.cache
def backend_entries() -> dict[str, BackendEntry]:
    """Every backend by name: the built-in ones, then those installed packages declare."""
    entries = {entry.name: entry for entry in BUILT_IN}
    for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        entry = point.load()
        if not isinstance(entry, BackendEntry) or entry.name != point.name:
            raise UserError(
                f"entry point {point.name} = {point.value} (group {ENTRY_POINT_GROUP}): "
                f"expected a BackendEntry named {point.name!r}"
            )
        entries.setdefault(entry.name, entry)  # a package cannot replace a built-in backend
    return entries


def backend_names() -> tuple[str, ...]:
    return tuple(backend_entries())


def backend_entry(name: str) -> BackendEntry:
    """The entry registered as `name`; one line listing the valid names for any other."""
    entries = backend_entries()
    if name not in entries:
        raise UserError(f"unknown backend {name!r}: one of {', '.join(entries)}")
    return entries[name]


def settings_sections() -> tuple[str, ...]:
    """The spec's top-level keys that belong to a backend (its section of settings)."""
    return tuple(name for name, entry in backend_entries().items() if entry.settings)


def parse_backend_settings(raw: dict, *, source: str) -> dict[str, Any]:
    """Every backend's section of the spec, parsed by its own parser (absent: its defaults)."""
    parsed = {}
    for name in settings_sections():
        parse: Callable[..., Any] = imported(backend_entries()[name].settings)
        parsed[name] = parse(raw.get(name), source=source)
    return parsed


def add_backend_options(parser) -> None:
    """Each backend's own command-line options (`sweep`, `plan`)."""
    for entry in backend_entries().values():
        if entry.options:
            imported(entry.options)(parser)
