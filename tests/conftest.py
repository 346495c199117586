"""Shared test set-up: no network, a private artifact cache, small thread counts.

The embedded foundation is pre-trained once per session with a tiny config (seconds) through the
same code a real run uses.
"""

from __future__ import annotations

import os

# torch's OpenMP threads busy-wait by default; with another busy process on 2 cores a tiny
# pre-training went from 1.6 s to 77 s. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub, even by accident
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import pytest
import torch
from tiny_settings import TINY_ARCH, TINY_EMBEDDED

torch.set_num_threads(2)


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


@pytest.fixture(scope="session")
def epoch_s(tmp_path_factory, cache_root, tiny_foundation_config, tiny_arch) -> float:
    """Seconds per pre-processor epoch of a tiny CRoPD trial on this machine (slurm_helpers.py).

    Only the cluster tests use it: without a cluster they skip here, before the trial is trained
    (pytest sets up this session fixture before their module's own cluster check).
    """
    from slurm_helpers import measured_epoch_seconds, require_cluster

    require_cluster()
    return measured_epoch_seconds(tmp_path_factory.mktemp("calibration"), tiny_foundation_config, tiny_arch)
