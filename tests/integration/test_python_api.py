"""The Python API's example in docs/python-api.md, run as written: plan, sweep, report, epochs.

The block under "Plan, run and report from Python" is executed in a fresh folder (its relative
paths resolved against this repository's search_spaces/), so the documented example cannot rot.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MARKER = "<!-- the block below is run by tests/integration/test_python_api.py -->"


def _documented_example() -> str:
    text = (REPO / "docs" / "python-api.md").read_text()
    after = text.split(MARKER, 1)[1]
    match = re.search(r"```python\n(.*?)```", after, re.S)
    assert match, "docs/python-api.md lost its runnable example"
    return match.group(1)


def test_the_documented_example_plans_runs_and_reports_a_sweep(tmp_path, monkeypatch):
    code = _documented_example().replace('"search_spaces/', f'"{REPO}/search_spaces/')
    monkeypatch.chdir(tmp_path)
    ray_root = tempfile.mkdtemp(prefix="api-", dir="/tmp")  # Ray's socket paths must stay short
    monkeypatch.setenv("RAY_TMPDIR", ray_root)
    namespace: dict = {}
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(code, "docs/python-api.md", "exec"), namespace)
    finally:
        shutil.rmtree(ray_root, ignore_errors=True)
    plan, trials, epochs = namespace["plan"], namespace["trials"], namespace["epochs"]

    assert plan["trials"] == 3 and plan["name"] == "api_smoke"  # identity, vanilla, cropd lambda 10; one seed
    assert sorted(trials["preprocessor.kind"]) == ["cropd", "identity", "vanilla"]
    assert set(trials["status"]) == {"TERMINATED"} and (trials["n_natural"] == 40).all()
    assert (tmp_path / "runs" / "api_smoke" / "sweep.json").is_file()
    out = printed.getvalue()
    assert "| Pre-processor |" in out and "Paired differences" in out
    # Every trial's head trained its epochs; the pre-processors one epoch each.
    assert set(epochs["config_hash"]) == set(trials["config_hash"])
    pre = epochs[epochs["stage"] == "preprocessor"]
    assert sorted(pre.groupby("config_hash")["epoch"].max()) == [1, 1]

    import orchestrator

    # Run again: resumed from the rows, nothing trained again, the same numbers back.
    again = orchestrator.sweep(f"{REPO}/search_spaces/quickstart.yaml", namespace["smoke"])
    columns = ["config_hash", "acc_natural", "acc_pgd20"]
    assert (
        again.sort_values("config_hash")[columns].values.tolist()
        == trials.sort_values("config_hash")[columns].values.tolist()
    )
    assert len(orchestrator.load_epochs("runs/api_smoke")) == len(epochs)
