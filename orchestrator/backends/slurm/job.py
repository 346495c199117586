"""What runs inside a Slurm job: the sweep driver on a Ray cluster in the allocation, or one array task.

Both are submitit Checkpointables: on USR2 (time limit, preemption) submitit pickles them again
and requeues the job, which then resumes the same sweep directory; resuming is idempotent, so a
requeue submitit never saw (`scontrol requeue`) ends just as well.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import submitit

from orchestrator.backends.local import LocalBackend
from orchestrator.backends.slurm.records import record_event
from orchestrator.engine.private_apis import reload_ray_auth
from orchestrator.store.paths import SweepPaths

HEAD_WAIT_S = 300


@contextmanager
def usr2_kept_from_children() -> Iterator[None]:
    """Block USR2 while Ray's processes are spawned: they inherit the mask and never see it.

    Slurm sends USR2 (time limit, `scancel --signal`) to every process of the job step. Ray's
    raylet and GCS die of it (default action), and the driver's core worker aborts with them
    before submitit's handler can checkpoint and requeue. A USR2 that arrives meanwhile stays
    pending and reaches the driver's handler when the block is lifted.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _SlurmLocalBackend(LocalBackend):
    """In-process Ray for one allocation, its processes deaf to Slurm's USR2."""

    def start(self, resources, source) -> None:
        with usr2_kept_from_children():
            super().start(resources, source)


class _SweepJob(submitit.helpers.Checkpointable):
    """Holds the spec as its YAML mapping: unpickling it must not import torch, because submitit
    installs its USR2 handler only after loading the pickle (a signal before that kills the job)."""

    def __init__(self, spec, sweep_dir: str):
        self.raw_spec = spec.raw
        self.spec_source = str(spec.path)
        self.sweep_dir = sweep_dir

    @property
    def spec(self):
        from orchestrator.spec.sweep_spec import parse_spec

        return parse_spec(
            self.raw_spec, source=self.spec_source, default_name=self.raw_spec["name"], path=Path(self.spec_source)
        )

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        # Called in the signal handler; submitit then requeues and exits, and Ray's atexit hook
        # shuts the local cluster down. Work since each trial's last epoch checkpoint is lost.
        record_event(Path(self.sweep_dir), "requeue requested")
        return super().checkpoint(*args, **kwargs)


class SweepDriver(_SweepJob):
    """mode ray: boots Ray across the allocation's nodes and runs the local engine's driver there."""

    def __init__(self, spec, sweep_dir: str, retry_failed: bool = False):
        super().__init__(spec, sweep_dir)
        self.retry_failed = retry_failed

    def __call__(self) -> dict[str, int]:
        from orchestrator.engine.runner import run_sweep
        from orchestrator.logs import apply_from_environment

        apply_from_environment()  # -q / -v of the submitting command (sbatch passes its environment)
        env = submitit.JobEnvironment()
        sweep_dir = Path(self.sweep_dir)
        cpus = int(os.environ.get("SLURM_CPUS_PER_TASK") or os.cpu_count() or 1)
        gpus = _visible_gpus()
        if env.global_rank > 0:
            _run_ray_worker(sweep_dir, env, cpus, gpus)
            return {}
        record_event(sweep_dir, "driver started", nodes=env.num_nodes, cpus=cpus, gpus=gpus)
        head = None
        if env.num_nodes > 1:
            head, address = _start_ray_head(sweep_dir, env, cpus, gpus)
            backend = LocalBackend(address=address)
        else:
            # One node: Ray in-process with the allocation's CPUs, its session folder per job
            # (two users' jobs on one node must not share one).
            backend = _SlurmLocalBackend(num_cpus=cpus, num_gpus=gpus, temp_dir=_short_temp_dir(env.job_id))
        try:
            outcome = run_sweep(self.spec, sweep_dir, backend=backend, retry_failed=self.retry_failed, live=False)
        finally:
            if head is not None:
                head.terminate()  # `ray start --block` stops this node's Ray processes as it exits
                head.wait(timeout=60)
                end_process_group(head.pid)
        summary = {"done": outcome.done, "failed": outcome.failed, "unfinished": outcome.unfinished}
        record_event(sweep_dir, "driver finished", **summary)
        return summary


class ArrayTrial(_SweepJob):
    """mode array: one planned trial (Optuna trial number + dotted overrides), then tell Optuna."""

    def __call__(self, entry: dict[str, Any]) -> dict[str, Any]:
        import optuna

        from orchestrator.engine.search import journal_storage
        from orchestrator.engine.trial import run_recorded_trial

        sweep_dir = Path(self.sweep_dir)
        job_id = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID", "local"))
        task = f"slurm-{job_id}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}"
        record_event(sweep_dir, "trial started", optuna_trial=entry["number"])
        spec = self.spec
        study = optuna.load_study(study_name=spec.name, storage=journal_storage(sweep_dir))
        try:
            metrics = run_recorded_trial(
                entry["params"],
                sweep_dir=self.sweep_dir,
                sweep_name=spec.name,
                base_trial=spec.trial,
                cpus=int(os.environ.get("SLURM_CPUS_PER_TASK", "1")),
                gpus=spec.resources["gpu"],
                trial_id=task,
                # SlurmBackend submitted this task to run: it runs, but a requeue of the
                # same task does not repeat a failure it recorded (same run id).
                run_id=task,
                retry_failed=True,
            )
        except Exception:
            _tell(study, entry["number"], None)
            raise
        values = [float(metrics[metric]) for metric in spec.objectives]
        _tell(study, entry["number"], values)
        record_event(sweep_dir, "trial finished", optuna_trial=entry["number"])
        return {metric: metrics[metric] for metric in spec.objectives}


def _tell(study, number: int, values: list[float] | None) -> None:
    import optuna

    # A rerun of a task whose trial was already told (a requeue after the end) tells nothing.
    if study.trials[number].state != optuna.trial.TrialState.RUNNING:
        return
    if values is None:
        study.tell(number, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(number, values)


def _visible_gpus() -> int:
    devices = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return len([d for d in devices.split(",") if d.strip()]) if devices else 0


def _short_temp_dir(job_id: str) -> str:
    # Ray's unix socket paths must stay under ~100 characters: a short folder of its own.
    return tempfile.mkdtemp(prefix=f"cropd-ray-{job_id}-", dir="/tmp")


def _node_ip(env) -> str:
    """This node's address on the cluster's network: what its name in the allocation resolves to.

    Ray would otherwise take the address of the interface that routes to the internet, and on a
    node without such a route (a cluster's private network) fall back to 127.0.0.1, which the
    other nodes cannot reach.
    """
    return socket.gethostbyname(env.hostnames[env.node])


def _ray_command() -> str:
    return str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    # The OS picks a free port: two users' heads on one node never ask for the same fixed one.
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def _job_tag(env) -> str:
    """This run of the job: its id and how often Slurm restarted it."""
    return f"{env.job_id}-{os.environ.get('SLURM_RESTART_COUNT', '0')}"


def _head_file(sweep_dir: Path, env) -> Path:
    return SweepPaths(sweep_dir).ray_head_address(_job_tag(env))


def _token_file(sweep_dir: Path, env) -> Path:
    return SweepPaths(sweep_dir).ray_token(_job_tag(env))


def _create_ray_token(path: Path) -> None:
    """A new random token in a file only this user can read; O_EXCL: never one left by another run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))


def ray_auth_env(token_file: Path) -> dict[str, str]:
    """Environment for Ray token authentication (Ray >= 2.52) with the token read from a file.

    Every `ray start` and `ray.init(address=...)` of the job needs it: the head refuses anyone
    without the token. The file, not RAY_AUTH_TOKEN, so the token is in no process's environment.
    """
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}


def end_process_group(leader: int) -> None:
    """Kill what is left of a `ray start` process group once `ray start` has exited.

    Ray's dashboard and runtime-env agents outlive `ray start --block` on a worker node when the
    head goes away: orphaned, they escape Slurm's process tracking on clusters without cgroups
    (proctrack/linuxproc) and stay on the node after the job. Started in their own session, they
    are all in the group of `ray start`, and only they are.
    """
    try:
        os.killpg(leader, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # nothing left


def _start_ray_head(sweep_dir: Path, env, cpus: int, gpus: int) -> tuple[subprocess.Popen, str]:
    """`ray start --head --block` on this node; its address is published in the sweep dir for the workers."""
    port = _free_port()
    node_ip = _node_ip(env)
    address = f"{node_ip}:{port}"
    token = _token_file(sweep_dir, env)
    _create_ray_token(token)  # before the head file: a worker that sees the address finds the token
    # This process joins the head (ray_nodes below, the driver's LocalBackend), and `ray start` inherits it.
    os.environ.update(ray_auth_env(token))
    reload_ray_auth()
    with usr2_kept_from_children():
        head = subprocess.Popen(
            [
                _ray_command(),
                "start",
                "--head",
                "--block",
                f"--port={port}",
                f"--node-ip-address={node_ip}",
                f"--num-cpus={cpus}",
                f"--num-gpus={gpus}",
                "--include-dashboard=false",
                f"--temp-dir={_short_temp_dir(env.job_id)}",
                "--disable-usage-stats",
            ],
            start_new_session=True,  # its own process group: end_process_group
        )
    deadline = time.time() + HEAD_WAIT_S
    while True:  # wait until the head answers, then tell the workers where it is
        try:
            alive = sum(ray_nodes(address))
            break
        except Exception:
            if head.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the Ray head at {address} did not come up (exit code {head.poll()})") from None
            time.sleep(2)
    _head_file(sweep_dir, env).write_text(address)
    # Wait for every worker node to join before the driver sizes its trials to the cluster.
    while alive < env.num_nodes and time.time() < deadline:
        time.sleep(2)
        alive = sum(ray_nodes(address))
    record_event(sweep_dir, "ray cluster up", address=address, nodes=alive, nodes_allocated=env.num_nodes)
    return head, address


def ray_nodes(address: str) -> list[bool]:
    import ray

    ray.init(address=address, log_to_driver=False)
    try:
        return [bool(node.get("Alive")) for node in ray.nodes()]
    finally:
        ray.shutdown()


def _run_ray_worker(sweep_dir: Path, env, cpus: int, gpus: int) -> None:
    """`ray start --address ... --block` on a worker node, until the head goes away."""
    path = _head_file(sweep_dir, env)
    deadline = time.time() + HEAD_WAIT_S
    while not path.is_file():
        if time.time() > deadline:
            raise RuntimeError(f"no Ray head address appeared at {path} within {HEAD_WAIT_S} s")
        time.sleep(2)
    auth = ray_auth_env(_token_file(sweep_dir, env))  # the head wrote the token before its address
    with usr2_kept_from_children():
        worker = subprocess.Popen(
            [
                _ray_command(),
                "start",
                f"--address={path.read_text().strip()}",
                f"--node-ip-address={_node_ip(env)}",
                "--block",
                f"--num-cpus={cpus}",
                f"--num-gpus={gpus}",
                f"--temp-dir={_short_temp_dir(env.job_id)}",
                "--disable-usage-stats",
            ],
            env={**os.environ, **auth},
            start_new_session=True,  # its own process group: end_process_group below
        )
    worker.wait()
    end_process_group(worker.pid)
