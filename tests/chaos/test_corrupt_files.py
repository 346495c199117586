"""Corrupt files: damaged records are skipped with one warning line, moved aside on resume, never reused.

One real sweep (the CLI, Ray, Optuna, Parquet) is built once for the file: three trials, the
lambda=10 one SIGKILLed in its pre-processor's epoch 2 (tests/chaos/inject.py) and, with
`max_retries: 0`, left as an ERROR row the driver wrote, its epoch checkpoints on disk. Then five
files are damaged the way crashes and full disks damage them: a trial row truncated, an epochs
file overwritten with junk, the newest epoch checkpoint emptied, a Slurm job record and the
Optuna journal each ending in half a line. Every read-only command must still answer (exit 0)
and name every unreadable file it read in one warning line; the same `sweep` command must then
resume to a complete sweep: nothing lost, nothing trained twice, the damage kept aside.

The tests run in file order (pytest's default): the read-only commands see the damage before the
resume repairs it. Run with `-s` to see what each command printed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import optuna
import pytest
import yaml
from chaos_harness import OurProcesses
from sweep_helpers import planned_hashes, read_rows, write_spec

from orchestrator.cli import app
from orchestrator.engine.search import journal_storage
from orchestrator.engine.trial import trial_key
from orchestrator.spec.sweep_spec import load_spec
from orchestrator.store import damaged_files
from orchestrator.store.parquet import epochs_path, trial_path
from orchestrator.store.paths import SweepPaths

pytestmark = pytest.mark.chaos

REPO = Path(__file__).resolve().parents[2]
WARNING = "orchestrator: warning: skipped"
PRE_EPOCHS = 4
# A rebuilt row is written now, from the trial's saved result: everything but when it was written,
# by which run and from where it resumed ("saved result") is what the trial measured.
NOT_COMPARED = ("started_at", "finished_at", "run_id", "resumed_from")
CHAOS = REPO / "tests" / "chaos"


def _rows(folder: Path) -> list[dict]:
    """Every row of the Parquet files directly in `folder` (the unreadable/ folder beside them is not read)."""
    return [row for path in sorted(folder.glob("*.parquet")) for row in read_rows(path)]


def _comparable(row: dict) -> dict:
    """A row without the columns that say when it was written; NaN as None, so equal rows compare equal."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items() if k not in NOT_COMPARED}


def _aside(path: Path) -> list[Path]:
    """What damaged_files.move_aside made of `path`: `unreadable/<name>.<stamp>` beside it."""
    return sorted((path.parent / damaged_files.ASIDE_FOLDER).glob(f"{path.name}.*"))


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, cache_root, tiny_foundation_config, tiny_arch):
    """The sweep, killed in one trial and finished otherwise, then damaged in five places."""
    folder = tmp_path_factory.mktemp("corrupt")
    spec_path = write_spec(folder, tiny_foundation_config, tiny_arch, name="corrupt", max_retries=0)
    text = yaml.safe_load(spec_path.read_text())
    text["trial"]["preprocessor"]["epochs"] = PRE_EPOCHS
    spec_path.write_text(yaml.safe_dump(text, sort_keys=False))
    spec = load_spec(spec_path)
    keys = {}
    for point in spec.grid_points:
        name = "identity" if point["preprocessor.kind"] == "identity" else f"lambda{point['preprocessor.lambda']}"
        keys[name] = trial_key(spec.trial_config(point))
    assert set(keys) == {"identity", "lambda1", "lambda10"}
    out = folder / "runs" / "corrupt"
    out.parent.mkdir()
    ray_root = tempfile.mkdtemp(prefix="cc-", dir="/tmp")
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_TMPDIR": ray_root, "CROPD_CACHE": str(cache_root)}
    processes = OurProcesses(ray_root)
    try:
        killed = processes.run(
            [sys.executable, str(CHAOS / "inject.py"), "kill-at-epoch-2", str(spec_path), str(out)],
            env=env,
            cwd=folder,
            timeout=540,
        )
        # One trial failed for good (max_retries: 0): the sweep says so with exit code 1.
        assert killed.returncode == 1, killed.stdout[-3000:] + killed.stderr[-3000:]
        rows = {row["config_hash"]: row for row in _rows(out / "results" / "trials")}
        assert rows[keys["identity"]]["status"] == rows[keys["lambda1"]]["status"] == "TERMINATED"
        assert (
            rows[keys["lambda10"]]["status"] == "ERROR" and rows[keys["lambda10"]]["error_kind"] == "infrastructure"
        ), rows[keys["lambda10"]]
        assert (folder / "runs" / "killed-once").is_file()  # the worker really was killed

        # Where the killed trial's pre-processor checkpoints are: list the artifact folder.
        listing = sorted(str(p.relative_to(out)) for p in (out / "artifacts").rglob("*"))
        print("\nartifacts after the killed run:\n  " + "\n  ".join(listing))
        checkpoint_folders = [p for p in (out / "artifacts").rglob("*.checkpoints") if list(p.glob("epoch-*.pt"))]
        assert len(checkpoint_folders) == 1, listing
        (checkpoints,) = checkpoint_folders
        assert sorted(p.name for p in checkpoints.glob("epoch-*.pt")) == ["epoch-0001.pt", "epoch-0002.pt"], listing

        killed_epochs = read_rows(epochs_path(out, keys["lambda10"]))
        assert sorted((r["stage"], r["epoch"]) for r in killed_epochs) == [("preprocessor", 1)]
        journal = SweepPaths(out).optuna_journal
        before = {
            "identity_row": read_rows(trial_path(out, keys["identity"]))[0],
            "identity_epochs": epochs_path(out, keys["identity"]).read_bytes(),
            "lambda10_epoch1": killed_epochs[0]["recorded_at"],
            "journal": journal.read_bytes(),
        }
        assert before["journal"].endswith(b"\n")

        # The damage, each file of a different kind (and the two Parquet files of different trials).
        truncated = trial_path(out, keys["identity"])
        truncated.write_bytes(truncated.read_bytes()[:100])  # (1) a finished trial's row cut short
        junked = epochs_path(out, keys["lambda1"])
        junked.write_bytes(b"this is not a Parquet file\x00\xff" * 40)  # (2) another finished trial's epochs
        emptied = checkpoints / "epoch-0002.pt"
        emptied.write_bytes(b"")  # (3) the unfinished trial's newest checkpoint, emptied by a full disk
        jobs = out / "slurm" / "jobs.jsonl"
        jobs.parent.mkdir()
        jobs.write_text(
            '{"job_id": "123", "mode": "ray", "submitted_at": 0, "log_folder": "x", "tasks": 1}\n'
            '{"job_id": "124", "mode": "ra'
        )  # (4) a submit killed mid-line
        with open(journal, "ab") as handle:  # (5) a driver killed mid-append
            handle.write(b'{"op_code": 5, "worker_id": "0123-4567", "trial_id": 2, "param_name": "preproc')
        damaged_at = datetime.now(timezone.utc)
        yield {
            "spec_path": spec_path,
            "spec": spec,
            "out": out,
            "env": env,
            "keys": keys,
            "processes": processes,
            "folder": folder,
            "before": before,
            "checkpoints": checkpoints,
            "truncated": truncated,
            "junked": junked,
            "emptied": emptied,
            "jobs": jobs,
            "journal": journal,
            "damaged_at": damaged_at,
        }
    finally:
        processes.reap()
        shutil.rmtree(ray_root, ignore_errors=True)


def _run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    damaged_files.forget()  # nothing this test process noted earlier may leak into the command's line
    code = app.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(WARNING)]


def test_read_only_commands_answer_and_name_every_unreadable_file_in_one_line(damaged, tmp_path, capsys):
    out = damaged["out"]
    parquet = [damaged["truncated"], damaged["junked"]]
    commands = {
        "status": (["status", out], [*parquet, damaged["jobs"]]),
        "results": (["results", out], parquet),
        "report": (["report", out], parquet),
        "plot": (["plot", out, "--kind", "pareto", "-o", tmp_path / "pareto.png"], parquet),
        "pareto": (["pareto", out], parquet),
    }
    problems, printed = [], {}
    for name, (args, expected) in commands.items():
        code, stdout, stderr = _run_cli(args, capsys)
        lines = _warnings(stderr)
        printed[name] = lines
        with capsys.disabled():
            print(
                f"\n=== orchestrator {' '.join(str(a) for a in args)} -> exit {code}\n--- stdout\n{stdout}--- "
                f"stderr\n{stderr}"
            )
        if code != 0:
            problems.append(f"{name}: exit {code}: {stderr.strip()}")
        if len(lines) != 1:
            problems.append(f"{name}: {len(lines)} warning lines: {lines}")
            continue
        if f"skipped {len(expected)} unreadable file(s): " not in lines[0]:
            problems.append(f"{name}: expected {len(expected)} files named: {lines[0]}")
        missing = [str(path) for path in expected if str(path) not in lines[0]]
        if missing:
            problems.append(f"{name}: does not name {missing}: {lines[0]}")
    with capsys.disabled():
        print("\n=== the warning line of each command")
        for name, lines in printed.items():
            print(f"{name}: {lines}")
    assert (tmp_path / "pareto.png").is_file() or any(p.startswith("plot") for p in problems)
    assert not problems, "\n".join(problems)
    # Reading never repairs: every damaged file is still where it was.
    for path in (*parquet, damaged["jobs"], damaged["emptied"]):
        assert path.is_file() and not _aside(path)


def test_the_same_sweep_command_resumes_past_every_damaged_file(damaged, capsys):
    out, keys, before, spec = damaged["out"], damaged["keys"], damaged["before"], damaged["spec"]
    command = [sys.executable, "-m", "orchestrator", "sweep", str(damaged["spec_path"]), "--out", str(out), "--plain"]
    resumed = damaged["processes"].run(command, env=damaged["env"], cwd=damaged["folder"], timeout=540)
    with capsys.disabled():
        print(
            f"\n=== resumed sweep -> exit {resumed.returncode}\n--- stdout\n{resumed.stdout}--- "
            f"stderr\n{resumed.stderr}"
        )
        print("=== its warning lines:", _warnings(resumed.stderr))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    # One row per planned trial, every one finished.
    rows = _rows(out / "results" / "trials")
    assert sorted(r["config_hash"] for r in rows) == sorted(planned_hashes(spec))
    assert {r["status"] for r in rows} == {"TERMINATED"}
    by_key = {r["config_hash"]: r for r in rows}

    # (1) The truncated row was written again from the trial's saved result: the same trial, the
    # same numbers, and not trained again (its epochs file is byte for byte what it was).
    old, new = before["identity_row"], by_key[keys["identity"]]
    assert _comparable(new) == _comparable(old) and new["resumed_from"] == "saved result"
    assert epochs_path(out, keys["identity"]).read_bytes() == before["identity_epochs"]
    (kept,) = _aside(damaged["truncated"])
    assert len(kept.read_bytes()) == 100

    # (3) The unfinished trial resumed from the checkpoint before the emptied one: epoch 1 was not
    # trained (nor recorded) again, epoch 2 was trained again, and the emptied file is kept aside.
    records = read_rows(epochs_path(out, keys["lambda10"]))
    pre = {r["epoch"]: r["recorded_at"] for r in records if r["stage"] == "preprocessor"}
    assert sorted(pre) == list(range(1, PRE_EPOCHS + 1))
    assert pre[1] == before["lambda10_epoch1"]
    assert all(pre[epoch] > damaged["damaged_at"] for epoch in range(2, PRE_EPOCHS + 1))
    assert by_key[keys["lambda10"]]["resumed_from"] == "preprocessor epoch 1"
    assert (damaged["checkpoints"] / "unreadable" / "epoch-0002.pt").is_file()
    assert (damaged["checkpoints"] / "unreadable" / "epoch-0002.pt").stat().st_size == 0
    assert not list(damaged["checkpoints"].glob("epoch-*.pt"))  # cleared once the pre-processor was published

    # (5) The torn journal line was dropped (the journal as it was kept aside) and the study loads.
    journal = damaged["journal"]
    (journal_kept,) = _aside(journal)
    assert journal_kept.read_bytes().startswith(before["journal"]) and not journal_kept.read_bytes().endswith(b"\n")
    text = journal.read_bytes()
    assert text.startswith(before["journal"]) and text.endswith(b"\n")
    for line in text.splitlines():
        json.loads(line)
    study = optuna.load_study(study_name=spec.name, storage=journal_storage(out))
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(completed) >= 2
    # Optuna was told the spec's objectives (validation metrics), in the spec's order.
    measured = {tuple(r[metric] for metric in spec.objectives) for r in rows}
    assert {tuple(t.values) for t in completed} <= measured

    # (2) The junk where a finished trial's epochs were is kept aside, out of every reader's way.
    assert _aside(damaged["junked"]), sorted(str(p.relative_to(out)) for p in (out / "results").rglob("*"))
    assert not damaged["junked"].is_file() or read_rows(damaged["junked"])

    # After the resume only the Slurm record (no command rewrites it) is still reported damaged_files.
    code, _, stderr = _run_cli(["status", out], capsys)
    assert code == 0 and _warnings(stderr) == [
        f"{WARNING} 1 unreadable file(s): {damaged['jobs']} (line 2: JSONDecodeError)"
    ], stderr


def test_a_torn_published_preprocessor_is_moved_aside_and_built_again(tmp_path, tiny_arch, recwarn):
    from safetensors.torch import load_file

    from trainables.data import load_dataset, stratified_fraction
    from trainables.preprocessors import fit_preprocessor, load_preprocessor
    from trainables.published import damage

    train = stratified_fraction(load_dataset("digits2", "train"), 0.2, seed=0)
    cfg = {"kind": "cropd", "arch": tiny_arch, "epochs": 1, "batch_size": 16, "lr": 1e-3, "warmup_epochs": 1}
    first = fit_preprocessor(cfg, train, tmp_path)
    weights = first.path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a copy cut short by a full quota

    second = fit_preprocessor(cfg, train, tmp_path)
    assert second.reused is False and second.path == first.path
    torn = list(first.path.parent.glob(f"{first.path.name}.torn-*"))
    assert len(torn) == 1 and (torn[0] / "model.safetensors").stat().st_size == 100
    assert damage(second.path) is None
    assert load_file(str(second.path / "model.safetensors"))  # whole weights again
    assert load_preprocessor(second.path).params == first.params
    assert any("damaged" in str(w.message) for w in recwarn)
    assert fit_preprocessor(cfg, train, tmp_path).reused  # and the rebuilt one is reused


def test_a_torn_embedded_foundation_is_moved_aside_and_pretrained_again(tmp_path, tiny_foundation_config):
    from trainables.foundation import pretrain_embedded_foundation
    from trainables.published import damage

    config = tiny_foundation_config["embedded"]
    folder = pretrain_embedded_foundation(config, cache_root=tmp_path)
    weights = folder / "model.safetensors"
    whole = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[:100])

    with pytest.warns(UserWarning, match="damaged"):
        again = pretrain_embedded_foundation(config, cache_root=tmp_path)
    assert again == folder
    torn = list(folder.parent.glob(f"{folder.name}.torn-*"))
    assert len(torn) == 1 and (torn[0] / "model.safetensors").stat().st_size == 100
    assert damage(again) is None and (again / "model.safetensors").stat().st_size == whole
    from transformers import ViTMAEForPreTraining

    assert ViTMAEForPreTraining.from_pretrained(str(again)) is not None
