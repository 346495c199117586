"""Shared test set-up: no network, a private artifact cache, small thread counts; the test layers.

The embedded foundation is pre-trained once per session with a tiny config (seconds) through the
same code a real run uses.

Layers (markers registered in pyproject.toml): `integration` (starts Ray, runs a real sweep or a
`python -m orchestrator sweep` that runs one), `chaos` (tests/chaos/: faults, kills, restarts) and
`slurm_cluster` (tests/slurm/: a real Slurm). The fast layer for the edit-test loop is
`python -m pytest -m "not integration and not chaos and not slurm_cluster"`. Every test under
tests/integration/, tests/chaos/ and tests/slurm/ must carry its folder's marker: a module there
that leaves one out fails to collect (below), so the fast layer cannot silently grow slow tests.
"""

from __future__ import annotations

import os
from pathlib import Path

# torch's OpenMP threads busy-wait by default; with another busy process on 2 cores a tiny
# pre-training went from 1.6 s to 77 s. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub, even by accident
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import pytest
import torch
from tiny_settings import TINY_ARCH, TINY_EMBEDDED  # tests/helpers/, on sys.path by pyproject's `pythonpath`

torch.set_num_threads(2)

TESTS = Path(__file__).resolve().parent
# The marker every test in these folders (tests/<folder>/...) must carry.
FOLDER_MARKERS = {"integration": "integration", "chaos": "chaos", "slurm": "slurm_cluster"}


class FolderMarkedModule(pytest.Module):
    """A test module of a marked folder: collecting it fails when a test in it lacks the marker."""

    marker = ""

    def collect(self):
        nodes = list(super().collect())
        unmarked = [
            node.name
            for node in nodes
            if node.get_closest_marker(self.marker) is None
            and not (isinstance(node, pytest.Class) and _every_method_marked(node.obj, self.marker))
        ]
        if unmarked:
            folder = self.path.relative_to(TESTS).parts[0]
            raise self.CollectError(
                f"tests/{folder}/ holds only tests marked {self.marker!r}; {self.path.name} has unmarked "
                f"{', '.join(unmarked)} (add `pytestmark = pytest.mark.{self.marker}` to the module, or move "
                "the test to the unit folders)"
            )
        return nodes


def _every_method_marked(cls: type, marker: str) -> bool:
    methods = [getattr(cls, name) for name in dir(cls) if name.startswith("test")]
    return all(any(mark.name == marker for mark in getattr(m, "pytestmark", [])) for m in methods)


def pytest_pycollect_makemodule(module_path: Path, parent):
    try:
        folder = module_path.resolve().relative_to(TESTS).parts[0]
    except ValueError:
        return None
    if folder not in FOLDER_MARKERS:
        return None
    module = FolderMarkedModule.from_parent(parent, path=module_path)
    module.marker = FOLDER_MARKERS[folder]
    return module


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cropd-cache")
    os.environ["CROPD_CACHE"] = str(root)
    return root


@pytest.fixture(scope="session")
def tiny_foundation_config():
    return {"name": "embedded", "embedded": dict(TINY_EMBEDDED)}


@pytest.fixture(scope="session")
def tiny_arch():
    return dict(TINY_ARCH)
