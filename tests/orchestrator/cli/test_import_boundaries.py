"""The command line's light paths import no torch: `sweep --help`, a spec refused by validation, `report`.

Each runs as a user runs it (`python -X importtime -m orchestrator ...`, a fresh process) and the
test reads Python's own import log: a heavy package imported anywhere on the way shows there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from store_helpers import add_trial

REPO = Path(__file__).resolve().parents[3]
HEAVY = ("torch", "transformers", "torchvision", "sklearn", "ray")


def imported_packages(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, set[str]]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "orchestrator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    # importtime lines: "import time: self [us] | cumulative | <indent>package"
    names = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    return result, {name.split(".")[0] for name in names}


def test_sweep_help_imports_no_heavy_package(tmp_path):
    result, packages = imported_packages(["sweep", "--help"], tmp_path)
    assert result.returncode == 0 and "usage:" in result.stdout
    assert packages & set(HEAVY) == set(), sorted(packages & set(HEAVY))


@pytest.mark.parametrize(
    ("trial", "field"),
    [
        ({"head": "robust"}, "head: expected a mapping of settings, got 'robust'"),
        ({"preprocessor": {"kind": "cropd", "lambda": -1}}, "preprocessor.lambda"),
        ({"foundation": {"name": "embedded", "embedded": {"hiden_size": 8}}}, "foundation.embedded.hiden_size"),
    ],
)
def test_a_spec_refused_by_validation_is_one_line_exit_2_and_imports_no_heavy_package(tmp_path, trial, field):
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump({"name": "bad", "trial": {"data": {"dataset": "digits2"}, **trial}}))
    result, packages = imported_packages(["sweep", str(spec)], tmp_path)
    errors = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(errors) == 1 and errors[0].startswith("orchestrator: error: ") and field in errors[0], errors
    assert packages & set(HEAVY) == set(), sorted(packages & set(HEAVY))
    assert not (tmp_path / "runs").exists()  # nothing written


def test_report_imports_no_heavy_package(tmp_path):
    sweep = tmp_path / "hand"
    add_trial(sweep, kind="identity", natural=0.7, pgd20=0.0)
    add_trial(sweep, kind="cropd", lam=1, natural=0.6, pgd20=0.3)
    result, packages = imported_packages(["report", str(sweep)], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cropd" in result.stdout and "identity" in result.stdout
    assert packages & set(HEAVY) == set(), sorted(packages & set(HEAVY))
