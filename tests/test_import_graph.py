"""No import cycle anywhere, and orchestrator's rooms import downward only, counting every import
statement (lazy and TYPE_CHECKING ones too, which import-linter's contracts do not see)."""

from __future__ import annotations

import pytest
from import_graph import cycles, import_graph

# Top to bottom, as pyproject.toml's layers contract; rooms on one floor do not import each other.
LAYERS = [
    {"orchestrator.cli"},
    {"orchestrator.backends", "orchestrator.analysis"},
    {"orchestrator.engine"},
    {"orchestrator.spec"},
    {"orchestrator.store"},
    {"orchestrator.logs", "orchestrator.errors", "orchestrator.compat"},
]


def _room(module: str) -> str | None:
    for rooms in LAYERS:
        for room in rooms:
            if module == room or module.startswith(room + "."):
                return room
    return None


def _floor(room: str) -> int:
    return next(number for number, rooms in enumerate(LAYERS) if room in rooms)


def test_no_import_cycle_among_the_modules_of_either_package():
    assert cycles(import_graph()) == []


def test_the_cycle_check_sees_a_cycle_made_by_a_lazy_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(name for name in import_graph() if name.startswith("orchestrator.")))
def test_an_orchestrator_module_imports_only_its_own_room_or_rooms_below(module):
    room = _room(module)
    if room is None:  # orchestrator/__init__.py and __main__.py stand above the rooms
        return
    upward = [
        target
        for target in import_graph()[module]
        if (other := _room(target)) is not None and other != room and _floor(other) <= _floor(room)
    ]
    assert upward == [], f"{module} imports {upward}: a room on its own floor or above"


def test_every_orchestrator_module_is_in_a_room():
    modules = [name for name in import_graph() if name.startswith("orchestrator.") and name != "orchestrator.__main__"]
    loose = [name for name in modules if _room(name) is None]
    assert loose == []
