"""The spec's slurm: section and the sbatch script submitit writes from it (golden file, as submitit does).

No Slurm needed: these check parsing, the command-line overrides and the generated script text.
submitit's SlurmExecutor refuses to start without `srun` on PATH, so the tests that build one
stand in for a Slurm installation the way submitit's own tests do (its MockedSubprocess, which
answers `which srun` and would answer sbatch/sacct calls; none is made here).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sweep_helpers import write_spec

from orchestrator.backends.slurm.executor import make_executor, sbatch_script
from orchestrator.backends.slurm.settings import SlurmSettings, parse_slurm, parse_time_min
from orchestrator.spec.sweep_spec import parse_spec
from trainables.errors import ConfigError

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "sbatch_script.txt"
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def slurm_commands_stood_in():
    """`srun` "found" for submitit, as in submitit/slurm/test_slurm.py's mocked_slurm()."""
    from submitit.core.test_core import MockedSubprocess

    with MockedSubprocess(known_cmds=["srun"]).context():
        yield


def settings_with_everything() -> SlurmSettings:
    return parse_slurm(
        {
            "partition": "gpu",
            "account": "robustness",
            "qos": "normal",
            "nodes": 2,
            "gpus_per_node": 4,
            "cpus_per_task": 32,
            "mem": "200G",
            "time": "1-12:00:00",
            "constraint": "a100&ib",
            "signal_delay_s": 120,
            "max_requeues": 5,
            "job_name": "lambda ablation",
            "additional": {"exclusive": True, "mail-type": "END,FAIL", "comment": "it's $(not) run"},
            "setup": ["module load cuda/12.4", "source ~/venvs/cropd/bin/activate"],
        },
        source="spec.yaml",
    )


def test_the_sbatch_script_matches_the_golden_file(slurm_commands_stood_in):
    executor = make_executor(
        settings_with_everything(),
        name="lambda_ablation",
        resources={"cpu": 1, "gpu": 0.25},
        log_root=Path("/sweeps/lambda ablation/slurm/logs"),
    )
    script = sbatch_script(executor).replace(sys.executable, "<python>")
    if os.environ.get("CROPD_UPDATE_GOLDEN") == "1":  # an intended change: rewrite it, review the diff
        GOLDEN.write_text(script)
    assert script == GOLDEN.read_text(), "sbatch script changed; rerun with CROPD_UPDATE_GOLDEN=1 if that is intended"


def test_values_reach_sbatch_quoted_and_a_job_array_gets_its_limit(slurm_commands_stood_in):
    executor = make_executor(
        parse_slurm(
            {"mode": "array", "array_parallelism": 3, "partition": "debug; touch /tmp/x", "cpus_per_task": 2},
            source="s.yaml",
        ),
        name="t",
        resources={"cpu": 1, "gpu": 0},
        log_root=Path("/tmp/it's here/logs"),
    )
    script = sbatch_script(executor, tasks=10)
    assert "#SBATCH --partition='debug; touch /tmp/x'" in script
    assert "#SBATCH --array=0-9%3" in script
    assert "'/tmp/it'\"'\"'s here/logs/%j'" in script  # the log folder on the srun line, shell-quoted
    # An array task's logs are named by array id and task.
    assert "#SBATCH --output='/tmp/it'\"'\"'s here/logs/%A_%a/%A_%a_0_log.out'" in script


@pytest.mark.parametrize(
    ("settings", "survives_a_lost_node"),
    [
        (SlurmSettings(nodes=2), True),
        (SlurmSettings(nodes=1), False),  # one node: nothing to survive
        (SlurmSettings(mode="array", nodes=2), False),  # each task its own job
    ],
)
def test_only_a_multi_node_ray_job_outlives_a_lost_node(slurm_commands_stood_in, settings, survives_a_lost_node):
    script = sbatch_script(make_executor(settings, name="t", resources={"cpu": 1, "gpu": 0}, log_root=Path("/x")))
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    assert ("#SBATCH --no-kill" in script.splitlines(), "--no-kill" in srun.split()) == (survives_a_lost_node,) * 2


def test_default_cpus_leave_room_for_two_trials_in_ray_mode_and_one_in_array_mode(slurm_commands_stood_in):
    ray_executor = make_executor(SlurmSettings(), name="t", resources={"cpu": 1.5, "gpu": 0}, log_root=Path("/x"))
    array_executor = make_executor(
        SlurmSettings(mode="array"), name="t", resources={"cpu": 1.5, "gpu": 0}, log_root=Path("/x")
    )
    assert ray_executor.parameters["cpus_per_task"] == 4 and array_executor.parameters["cpus_per_task"] == 2


@pytest.mark.parametrize(
    "given, minutes",
    [
        (90, 90),
        ("90", 90),
        ("30:00", 30),
        ("1:30:00", 90),
        ("2-00", 2880),
        ("1-2:30", 1590),
        ("0:30", 1),
        ("1-00:00:30", 1441),
    ],
)
def test_time_limits_in_sbatch_formats(given, minutes):
    assert parse_time_min(given, lambda expected, got: ConfigError("time", expected, got)) == minutes


@pytest.mark.parametrize(
    "section, field, expected_part",
    [
        ({"partion": "gpu"}, "slurm.partion", "did you mean 'partition'"),
        ({"mode": "mpi"}, "slurm.mode", "one of ['ray', 'array']"),
        ({"time": "soon"}, "slurm.time", "[D-]HH:MM:SS"),
        ({"time": 0}, "slurm.time", "minutes"),
        ({"mem": "lots"}, "slurm.mem", "16G"),
        ({"nodes": 0}, "slurm.nodes", ">= 1"),
        ({"partition": "gpu\necho pwned"}, "slurm.partition", "single-line"),
        ({"additional": {"--exclusive": True}}, "slurm.additional.--exclusive", "without dashes"),
        ({"additional": {"comment": "a\nb"}}, "slurm.additional.comment", "single-line"),
        ({"setup": "module load cuda"}, "slurm.setup", "list of shell lines"),
        ({"mode": "array", "nodes": 2}, "slurm.nodes", "array mode"),
    ],
)
def test_bad_slurm_sections_name_the_field(section, field, expected_part):
    with pytest.raises(ConfigError) as caught:
        parse_slurm(section, source="spec.yaml")
    assert caught.value.field == field and expected_part in str(caught.value)
    assert str(caught.value).startswith("spec.yaml: ") and "\n" not in str(caught.value)


def test_command_line_overrides_win_and_their_errors_name_the_flag():
    base = parse_slurm({"partition": "cpu", "time": 30}, source="spec.yaml")
    merged = base.with_overrides({"partition": "gpu", "time": "2:00:00", "nodes": None})
    assert (merged.partition, merged.time_min, merged.nodes) == ("gpu", 120, 1)
    with pytest.raises(ConfigError, match=r"^command line: --cpus-per-task: expected an integer >= 1, got 0$"):
        base.with_overrides({"cpus_per_task": 0})
    with pytest.raises(ConfigError, match=r"--nodes"):
        parse_slurm({"mode": "array"}, source="s").with_overrides({"nodes": 3})


def test_the_spec_takes_backend_and_slurm_keys_and_they_do_not_change_the_plan(tmp_path):
    raw = yaml.safe_load("""
        name: s
        trial: {data: {dataset: digits2}, foundation: {name: embedded}}
        backend: slurm
        slurm: {partition: gpu, time: 45}
    """)
    spec = parse_spec(raw, source="s.yaml", default_name="s")
    settings = spec.backend_settings["slurm"]
    assert spec.backend == "slurm" and settings.partition == "gpu" and settings.time_min == 45
    other = parse_spec({**raw, "slurm": {"partition": "cpu"}, "backend": "local"}, source="s.yaml", default_name="s")
    assert other.plan_hash == spec.plan_hash  # where it runs is not what it computes: a resume may move
    with pytest.raises(ConfigError, match="did you mean 'slurm'"):
        parse_spec({**raw, "backend": "slrum"}, source="s.yaml", default_name="s")


def test_no_sbatch_on_path_is_one_line_and_nothing_is_written(tmp_path, tiny_foundation_config, tiny_arch):
    spec_path = write_spec(tmp_path, tiny_foundation_config, tiny_arch, name="nosbatch")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": str(Path(sys.executable).parent)}
    refused = subprocess.run(
        [sys.executable, "-m", "orchestrator", "sweep", str(spec_path), "--backend", "slurm"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2
    assert (
        refused.stderr.strip()
        == "orchestrator: error: --backend slurm: no sbatch on PATH (run on a Slurm login node, or use --backend local)"
    )
    assert not (tmp_path / "runs").exists()
