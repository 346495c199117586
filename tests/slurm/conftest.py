"""What the tests against a real Slurm share as fixtures (their helpers are slurm_helpers.py here)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def epoch_s(tmp_path_factory, cache_root, tiny_foundation_config, tiny_arch) -> float:
    """Seconds per pre-processor epoch of a tiny CRoPD trial on this machine (slurm_helpers.py).

    Only the cluster tests use it: without a cluster they skip here, before the trial is trained
    (pytest sets up this session fixture before their module's own cluster check).
    """
    from slurm_helpers import measured_epoch_seconds, require_cluster

    require_cluster()
    return measured_epoch_seconds(tmp_path_factory.mktemp("calibration"), tiny_foundation_config, tiny_arch)
