"""Bad input as one line, --where without file access, group-usable artifacts, Ray's per-job token file.

Everything real: the CLI in a subprocess, DuckDB, the file system under a set umask. The Ray parts
(a local Ray on loopback only, a `ray start --head` that refuses a client without the token) are
tests/integration/test_ray_hardening.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from store_helpers import add_trial

from orchestrator.cli.app import main
from orchestrator.spec.sections import MAX_NAME_BYTES
from orchestrator.spec.sweep_spec import load_spec
from trainables import artifacts
from trainables.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
BASE = "trial: {data: {dataset: digits2}}\n"


# --- 1, 2: a spec that is not text, not YAML, or names a folder the file system cannot hold ---------


def test_a_binary_spec_file_is_one_line_and_exit_2_from_the_real_cli(tmp_path):
    spec = tmp_path / "model.yaml"
    spec.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "sweep", str(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    expected = f"orchestrator: error: {spec}: not a UTF-8 text file (byte 0: invalid start byte)"
    assert done.stderr.splitlines() == [expected]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("name: x\ngrid: [{preprocessor.lambda: [1]}\n", "not valid YAML (line 3, column 1)"),
        ("name: x\x00\n", "not valid YAML: unacceptable character #x0000"),  # PyYAML's message spans two lines
        (BASE + f"name: {'a' * (MAX_NAME_BYTES + 1)}\n", "name: expected a sweep name of at most 200 bytes"),
    ],
)
def test_bad_spec_text_is_one_line_and_exit_2_from_the_cli(tmp_path, capsys, text, fragment):
    spec = tmp_path / "study.yaml"
    spec.write_text(text)
    assert main(["sweep", str(spec)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and fragment in lines[0], lines


@pytest.mark.parametrize(
    "name", ["a" * (MAX_NAME_BYTES + 1), "é" * (MAX_NAME_BYTES // 2 + 1), "a/b", "a\x00b", ".", ".."]
)
def test_a_sweep_name_that_cannot_be_a_folder_is_refused_naming_the_field(tmp_path, name):
    spec = tmp_path / "study.yaml"
    spec.write_text(BASE + f"name: {json_string(name)}\n")
    with pytest.raises(ConfigError) as info:
        load_spec(spec)
    assert info.value.field == "name" and "\n" not in str(info.value)


def test_a_sweep_name_of_200_bytes_is_accepted(tmp_path):
    spec = tmp_path / "study.yaml"
    spec.write_text(BASE + f"name: {'é' * (MAX_NAME_BYTES // 2)}\n")
    assert len(load_spec(spec).name.encode()) == MAX_NAME_BYTES


def json_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\x00", "\\0") + '"'


# --- 3: --where runs without file access ---------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    sweep_dir = tmp_path / "hand"
    sweep_dir.mkdir()
    (sweep_dir / "sweep.json").write_text("{}")
    trials = [("identity", 0.7, 0.0), ("vanilla", 0.65, 0.3), ("cropd", 0.62, 0.33)]
    for minute, (kind, natural, pgd20) in enumerate(trials):
        add_trial(sweep_dir, kind=kind, lam=1 if kind == "cropd" else None, natural=natural, pgd20=pgd20, minute=minute)
    return sweep_dir


def test_locked_connection_answers_queries_on_the_tables_and_refuses_files(store, tmp_path):
    import duckdb

    from orchestrator.store.safe_query import locked_connection

    connection = locked_connection(store / "results")
    assert connection.execute("SELECT count(*) FROM trials WHERE acc_pgd20 > 0.1").fetchall() == [(2,)]
    assert connection.execute("SELECT count(*) FROM epochs").fetchall() == [(0,)]
    target = tmp_path / "out.csv"
    for sql in (
        "SELECT * FROM read_text('/etc/passwd')",
        f"COPY (SELECT 1) TO '{target}'",
        f"ATTACH '{tmp_path / 'x.db'}'",
        "SET enable_external_access = true",
    ):
        with pytest.raises(duckdb.Error):
            connection.execute(sql)
    assert not target.exists() and not (tmp_path / "x.db").exists()


@pytest.mark.parametrize(
    "where",
    [
        "1=1 AND (SELECT count(*) FROM read_text('/etc/passwd')) > 0",
        "1=1) ; COPY (SELECT 1) TO '{out}'; SELECT * FROM trials WHERE (1=1",
    ],
)
def test_a_where_that_touches_a_file_is_one_line_exit_2(store, tmp_path, capsys, where):
    # Passes once analysis.relation runs a --where on safe_query.locked_connection; before, the COPY writes the file.
    out = tmp_path / "written.csv"
    assert main(["pareto", str(store), "--format", "csv", "--where", where.format(out=out)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("orchestrator: error: --where ") and "Permission Error" in lines[0]
    assert not out.exists()


def test_a_plain_where_still_selects(store, capsys):
    where = ["--where", "\"preprocessor.kind\" <> 'identity'"]
    assert main(["pareto", str(store), "--x", "acc_natural", "--y", "acc_pgd20", "--format", "csv", *where]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 3 and rows[0].startswith("config_hash,")  # header, vanilla and cropd: both on the front


# --- 4: artifacts as an ordinary file or folder would be, umask read without setting it --------------


def proc_umask() -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("Umask:"))
    return int(line.split()[1], 8)


def test_the_umask_is_read_from_proc_without_setting_it(monkeypatch):
    previous = os.umask(0o027)
    try:

        def no_umask(mask):
            raise AssertionError("os.umask called: it changes the mask of every thread")

        monkeypatch.setattr(os, "umask", no_umask)
        assert artifacts._umask() == 0o027 == proc_umask()
    finally:
        monkeypatch.undo()
        os.umask(previous)


def test_published_files_and_folders_get_group_permissions_under_umask_002(tmp_path):
    previous = os.umask(0o002)
    try:
        checkpoint = tmp_path / "ckpt" / "epoch.pt"
        artifacts.save_checkpoint(checkpoint, {"epoch": 3})
        with artifacts.atomic_dir(tmp_path / "folder") as scratch:
            (scratch / "weights.bin").write_bytes(b"w")
        artifacts.atomic_write_bytes(tmp_path / "report.md", b"table")
    finally:
        os.umask(previous)
    mode = lambda path: path.stat().st_mode & 0o777  # noqa: E731
    assert (mode(checkpoint), mode(tmp_path / "folder"), mode(tmp_path / "report.md")) == (0o664, 0o775, 0o664)
    assert artifacts.load_checkpoint(checkpoint) == {"epoch": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "folder", "report.md"]  # no scratch left


# --- 6: a multi-node Slurm job's Ray requires a per-job token ------------------------------------------


def test_each_job_gets_its_own_token_file_readable_by_its_user_only(tmp_path, monkeypatch):
    from orchestrator.backends.slurm import job as slurm_job

    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    first, other = (slurm_job._token_file(tmp_path, SimpleNamespace(job_id=job)) for job in ("7", "8"))
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # the same job, requeued
    requeued = slurm_job._token_file(tmp_path, SimpleNamespace(job_id="7"))
    for path in (first, requeued, other):
        slurm_job._create_ray_token(path)
    tokens = [path.read_text() for path in (first, requeued, other)]
    assert len(set(tokens)) == 3 and all(len(token) == 64 for token in tokens)
    assert all(path.parent == tmp_path / "slurm" for path in (first, requeued, other))
    assert [path.stat().st_mode & 0o777 for path in (first, requeued, other)] == [0o600] * 3
    with pytest.raises(FileExistsError):
        slurm_job._create_ray_token(first)
    assert slurm_job.ray_auth_env(first) == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(first)}
