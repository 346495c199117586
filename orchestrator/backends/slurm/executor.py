"""The sbatch side of a Slurm sweep: a submitit executor from the settings, and sbatch's own checks.

Everything a user can get wrong is asked of sbatch itself (`sbatch --test-only`) before the
sweep directory is touched.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from orchestrator.backends.slurm.settings import SlurmSettings
from trainables.errors import UserError


def require_sbatch() -> None:
    if shutil.which("sbatch") is None:
        raise UserError("--backend slurm: no sbatch on PATH (run on a Slurm login node, or use --backend local)")


def make_executor(
    settings: SlurmSettings, *, name: str, resources: dict[str, float], log_root: Path, script_only: bool = False
):
    """A submitit SlurmExecutor (not AutoExecutor: that one also picks Slurm by itself whenever
    sbatch is on PATH) writing its pickles and logs under log_root/<job id>. `script_only`: one
    that only renders its sbatch script (`plan` on a machine without Slurm), never submits."""
    import submitit

    cls = _script_only_executor() if script_only else submitit.SlurmExecutor
    executor = cls(folder=str(log_root / "%j"), max_num_timeout=settings.max_requeues)
    parameters: dict[str, Any] = {
        "job_name": settings.job_name or f"cropd-{name}",
        "time": settings.time_min,
        "nodes": settings.nodes,
        # One task per node: the Ray head or worker (ray mode) or the trial (array mode).
        "ntasks_per_node": 1,
        "cpus_per_task": settings.cpus_per_task or default_cpus(settings, resources),
        "signal_delay_s": settings.signal_delay_s,
        "array_parallelism": settings.array_parallelism,
    }
    optional = {
        "partition": settings.partition,
        "account": settings.account,
        "qos": settings.qos,
        "mem": settings.mem,
        "constraint": settings.constraint,
        "gpus_per_node": settings.gpus_per_node or None,
        "additional_parameters": dict(settings.additional) or None,
        "setup": list(settings.setup) or None,
    }
    parameters.update({key: value for key, value in optional.items() if value is not None})
    if settings.mode == "ray" and settings.nodes > 1:
        # A node lost mid-sweep must not end the allocation (sbatch) nor the job step that runs the
        # Ray head and workers (srun): Ray moves the lost node's trials to the others. A lost head
        # node still ends the job, which Slurm requeues (its default for a node failure).
        parameters["additional_parameters"] = {"no_kill": True, **(parameters.get("additional_parameters") or {})}
        parameters["srun_args"] = ["--no-kill"]
    executor.update_parameters(**parameters)
    return executor


def _script_only_executor():
    """submitit's SlurmExecutor without its check for srun (its `affinity`, > 0 where Slurm is),
    which it makes only to refuse to start elsewhere: rendering the script needs no Slurm."""
    import submitit

    class ScriptOnlySlurmExecutor(submitit.SlurmExecutor):
        @classmethod
        def affinity(cls) -> int:
            return 1

    return ScriptOnlySlurmExecutor


def default_cpus(settings: SlurmSettings, resources: dict[str, float]) -> int:
    """A whole trial per array task; in ray mode, room for two trials per node."""
    per_trial = max(1, math.ceil(resources["cpu"]))
    return per_trial if settings.mode == "array" else 2 * per_trial


def sbatch_script(executor, tasks: int | None = None) -> str:
    """The sbatch script submitit will write for this executor (a job array when `tasks` is set)."""
    from orchestrator.engine.private_apis import sbatch_script_text

    return sbatch_script_text(executor, tasks)


def sbatch_verdict(script: str) -> tuple[bool, str]:
    """(accepted, sbatch's own line) for this script from `sbatch --test-only`: nothing is submitted.
    Of a refusal, the line that says why (its first error), not the summary after it."""
    with tempfile.TemporaryDirectory(prefix="cropd-sbatch-") as folder:
        path = Path(folder) / "preflight.sh"
        path.write_text(script)
        result = subprocess.run(["sbatch", "--test-only", str(path)], capture_output=True, text=True, timeout=60)
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    if result.returncode == 0:
        return True, lines[-1] if lines else ""
    errors = [line for line in lines if "error" in line.lower() or "unrecognized" in line.lower()] or lines
    return False, errors[0] if errors else "exit code %d" % result.returncode


def preflight(executor, *, source: str, tasks: int | None = None) -> None:
    """Ask sbatch whether it would take this job (`--test-only`: nothing is submitted).

    Unknown options, a partition, account or QOS that does not exist, a request no node can
    hold: sbatch's own message, as one line.
    """
    accepted, line = sbatch_verdict(sbatch_script(executor, tasks))
    if not accepted:
        raise UserError(f"{source}: slurm: sbatch refuses this job: {line}")


def warn_about_paths(sweep_dir: Path, settings: SlurmSettings) -> None:
    # A multi-node job's workers write results into the sweep dir: /tmp is local to each node.
    if settings.nodes > 1 and (
        str(sweep_dir) == "/tmp" or str(sweep_dir).startswith(("/tmp/", "/var/tmp/", "/dev/shm/"))
    ):
        print(
            f"orchestrator: warning: {sweep_dir} is probably local to each node; a {settings.nodes}-node job's "
            "workers need a shared filesystem (use --out on one)",
            file=sys.stderr,
        )
