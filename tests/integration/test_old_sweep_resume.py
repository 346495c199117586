"""A sweep folder that 15dd327 wrote and interrupted (tests/fixtures/sweep_15dd327/, described in
tests/orchestrator/test_compat.py).

Its trials trained on the whole training split and it selects on test metrics; since validation
splits (issue 32) this code would compute other trials under the same plan, so resuming it is
refused in one line before anything is written, and the folder stays exactly as it was (finish
it with the version that started it, a71bb9d, or move it aside with --restart). Its pickles
still load (test_compat.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "sweep_15dd327"


def test_a_sweep_folder_that_15dd327_wrote_is_refused_in_one_line_and_left_as_it_was(tmp_path):
    spec_path = tmp_path / "old_sweep.yaml"
    shutil.copy(FIXTURE / "old_sweep.yaml", spec_path)
    sweep_dir = tmp_path / "runs" / "old_sweep"
    shutil.copytree(FIXTURE / "old_sweep", sweep_dir)
    before = {path: path.read_bytes() for path in sorted(sweep_dir.rglob("*")) if path.is_file()}

    refused = subprocess.run(
        [sys.executable, "-m", "orchestrator", "sweep", str(spec_path), "--out", str(sweep_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2
    line = refused.stderr.strip()
    assert "\n" not in line and f"{spec_path}: objectives.acc_natural: expected a validation metric" in line
    assert "select_on_test" in line
    assert {path: path.read_bytes() for path in sorted(sweep_dir.rglob("*")) if path.is_file()} == before
