"""Ray on loopback and Ray's per-job token (the Ray half of tests/orchestrator/test_hardening.py).

Everything real: a Ray node started here through the local backend, and a `ray start --head` with
token authentication as a multi-node Slurm job starts it, refusing a client without the token.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.integration


# --- 5: a local sweep's Ray listens on loopback only ---------------------------------------------------


def listening_addresses(pids: set[int]) -> set[str]:
    import psutil

    found = set()
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        found |= {c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN}
    return found


def test_a_local_ray_listens_on_loopback_only():
    import psutil
    import ray
    from ray._private import ray_constants

    from orchestrator.backends.local import LocalBackend

    temp_dir = tempfile.mkdtemp(prefix="cr-", dir="/tmp")
    backend = LocalBackend(num_cpus=1, temp_dir=temp_dir)
    backend.start({"cpu": 1, "gpu": 0}, "test")
    try:
        assert ray.nodes()[0]["NodeManagerAddress"] == "127.0.0.1"
        assert ray.get(ray.remote(lambda: 1).remote()) == 1  # a worker started and answered
        me = psutil.Process()
        addresses = listening_addresses({me.pid} | {child.pid for child in me.children(recursive=True)})
        assert addresses and addresses <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}, addresses
        assert ray_constants.ENABLE_RAY_CLUSTER  # set back: a later ray.init(address=...) finds the real address
    finally:
        backend.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


# --- 6: a multi-node Slurm job's Ray requires a per-job token ------------------------------------------


CONNECT = textwrap.dedent("""
    import sys, ray
    try:
        ray.init(address=sys.argv[1], log_to_driver=False)
    except Exception as err:
        print(type(err).__name__)
    else:
        print("connected", len(ray.nodes()))
""")


def test_the_slurm_ray_head_refuses_a_client_without_the_jobs_token(tmp_path, monkeypatch):
    import ray

    from orchestrator.backends.slurm import job as slurm_job
    from orchestrator.engine.private_apis import reload_ray_auth

    # _start_ray_head sets these for the driver; monkeypatch puts them back after the test.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", "")
    job = f"crtest{os.getpid()}"
    env = SimpleNamespace(job_id=job, hostnames=["localhost"], node=0, num_nodes=1)
    head, address = slurm_job._start_ray_head(tmp_path, env, cpus=1, gpus=0)
    try:
        token = slurm_job._token_file(tmp_path, env)
        assert os.environ["RAY_AUTH_MODE"] == "token" and os.environ["RAY_AUTH_TOKEN_PATH"] == str(token)
        assert (tmp_path / "slurm" / f"ray-head-{job}-0.address").read_text() == address
        clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        for extra, expected in (({}, "ConnectionError"), (slurm_job.ray_auth_env(token), "connected 1")):
            done = subprocess.run(
                [sys.executable, "-c", CONNECT, address],
                env={**clean, **extra},
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert done.stdout.strip().splitlines()[-1:] == [expected], done.stderr[-2000:]
    finally:
        ray.shutdown()
        head.terminate()
        head.wait(timeout=60)
        monkeypatch.undo()
        reload_ray_auth()
        for folder in glob.glob(f"/tmp/cropd-ray-{job}-*"):
            shutil.rmtree(folder, ignore_errors=True)
