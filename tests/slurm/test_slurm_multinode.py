"""Several nodes for real: a Slurm cluster of network namespaces, Ray across them, and a node lost mid-sweep.

`slurm/local_cluster/cluster.sh start --nodes 2 --gpus-per-node 2` (what .ci/run starts) makes
each node a network namespace with its own address, hostname and slurmd, and declares two GPUs
per node as a generic resource (stand-in device files: Slurm numbers them and sets
CUDA_VISIBLE_DEVICES; there is no GPU, so trials train on the CPU). Every file is on the one disk,
as a cluster's shared filesystem would be. Losing a node is done as it happens: every process in
its namespace is killed at once (slurmd, the job step, the raylet, the trial); a test that loses
a node brings its slurmd back afterwards, as a reboot would.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
from pathlib import Path

import pytest
from slurm_helpers import (
    CLUSTER_SCRIPT,
    assert_each_trial_once_and_every_epoch_once,
    cluster_nodes,
    epoch_rows,
    events_of,
    jobs_of,
    require_cluster,
    running_trial_past,
    sacct_state,
    slurm_spec,
    submit,
    wait_for,
    wait_until_done,
)
from sweep_helpers import max_overlap

from orchestrator.spec.sweep_spec import load_spec
from orchestrator.store.query import load_trials

pytestmark = pytest.mark.slurm_cluster
NODES, GPUS_PER_NODE = 2, 2


@pytest.fixture(scope="module", autouse=True)
def multinode_cluster():
    require_cluster(nodes=NODES, gpus_per_node=GPUS_PER_NODE)


def start_lost_slurmds() -> None:
    """Start the slurmd of every node that lost it, as a reboot would (cluster.sh start starts
    only the daemons that are not running)."""
    subprocess.run(
        [str(CLUSTER_SCRIPT), "start", "--nodes", str(NODES), "--gpus-per-node", str(GPUS_PER_NODE)],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def every_node_back():
    """After a test that loses a node: its slurmd started again, and every node idle."""
    yield
    start_lost_slurmds()
    wait_for(all_idle, "every node idle again", timeout=120)


def all_idle() -> bool:
    nodes = cluster_nodes()
    return len(nodes) == NODES and all(state == "idle" for state, _ in nodes.values())


def node_processes(node: str) -> dict[int, str]:
    """{pid: command name} of every process on the node (in its network namespace)."""
    listed = subprocess.run(["ip", "netns", "pids", f"cropd-{node}"], capture_output=True, text=True).stdout.split()
    processes = {}
    for pid in map(int, listed):
        try:
            processes[pid] = Path(f"/proc/{pid}/comm").read_text().strip()
        except FileNotFoundError:
            pass  # ended meanwhile
    return processes


def lose_node(node: str) -> list[int]:
    """Kill every process of the node at once, as a power loss would; the PIDs killed."""
    pids = list(node_processes(node))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def test_the_nodes_answer_with_their_own_names_and_gpus(tmp_path):
    wait_for(all_idle, "every node idle", timeout=120)
    names = subprocess.run(["srun", f"-N{NODES}", "hostname"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert names.returncode == 0, names.stderr
    assert sorted(names.stdout.split()) == [f"node{i}" for i in range(1, NODES + 1)]
    # A GPU asked of Slurm comes with its index in CUDA_VISIBLE_DEVICES, on each node.
    gpus = subprocess.run(
        ["srun", f"-N{NODES}", f"--gpus-per-node={GPUS_PER_NODE}", "printenv", "CUDA_VISIBLE_DEVICES"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert gpus.returncode == 0, gpus.stderr
    assert gpus.stdout.split() == [",".join(str(g) for g in range(GPUS_PER_NODE))] * NODES


def test_ray_mode_spreads_trials_over_both_nodes_and_packs_two_per_gpu(
    tmp_path, cache_root, tiny_foundation_config, tiny_arch
):
    # 8 trials asking half a CPU and half a GPU; 2 nodes of 2 CPUs and 2 GPUs hold all 8 at once.
    spec_path = slurm_spec(
        tmp_path,
        tiny_foundation_config,
        tiny_arch,
        name="placed",
        grid={"preprocessor.kind": ["identity"], "data.seed": list(range(8))},
        resources={"cpu": 0.5, "gpu": 0.5},
        max_concurrent=8,
        slurm={"nodes": NODES, "gpus_per_node": GPUS_PER_NODE, "cpus_per_task": 2, "mem": "4G"},
    )
    sweep_dir = tmp_path / "runs" / "placed"
    before = {node: set(node_processes(node).items()) for node in ("node1", "node2")}
    job_id = submit(spec_path, sweep_dir, wait=True)
    assert len(jobs_of(sweep_dir)) == 1 and sacct_state(job_id) == "COMPLETED"
    up = next(e for e in events_of(sweep_dir) if e["event"] == "ray cluster up")
    assert (up["nodes"], up["nodes_allocated"]) == (NODES, NODES)

    trials = load_trials(sweep_dir)
    assert len(trials) == 8 and set(trials["status"]) == {"TERMINATED"}
    assert set(trials["node"]) == {"node1", "node2"}
    # Each trial saw one device, of those its node has, and asked for half of it.
    assert set(trials["gpu_ids"]) <= {str(g) for g in range(GPUS_PER_NODE)} and set(trials["gpus"]) == {0.5}
    # Never more than two trials on one GPU at once, and somewhere two shared one.
    per_gpu = [
        max_overlap(list(zip(group["started_at"], group["finished_at"])))
        for _, group in trials.groupby(["node", "gpu_ids"])
    ]
    assert max(per_gpu) == 2, per_gpu

    # Once the job has ended, nothing it started is left on the nodes (Ray's agents outlive
    # `ray start` on a worker node unless its process group is ended).
    def leftovers():
        return {node: sorted(set(node_processes(node).items()) - before[node]) for node in before}

    try:
        wait_for(lambda: not any(leftovers().values()), "the job's processes to end", timeout=60)
    except AssertionError:
        pytest.fail(f"the job left processes on the nodes: {leftovers()}")


def test_array_mode_spreads_its_tasks_over_both_nodes(tmp_path, cache_root, tiny_foundation_config, tiny_arch):
    # 4 tasks of 1 CPU and 1 GPU; one node holds 2 of them.
    spec_path = slurm_spec(
        tmp_path,
        tiny_foundation_config,
        tiny_arch,
        name="spread",
        grid={"preprocessor.kind": ["identity"], "data.seed": list(range(4))},
        slurm={"mode": "array", "gpus_per_node": 1, "cpus_per_task": 1, "mem": "2G", "array_parallelism": 4},
        resources={"cpu": 1, "gpu": 1},
    )
    sweep_dir = tmp_path / "runs" / "spread"
    submit(spec_path, sweep_dir, wait=True)
    trials = load_trials(sweep_dir)
    assert len(trials) == 4 and set(trials["status"]) == {"TERMINATED"}
    assert set(trials["node"]) == {"node1", "node2"}
    assert all(gpu in {str(g) for g in range(GPUS_PER_NODE)} for gpu in trials["gpu_ids"]), list(trials["gpu_ids"])


def _two_trial_sweep(tmp_path, foundation, arch, epoch_s, name: str) -> tuple[Path, Path, int]:
    """Two trials that each fill a node (2 CPUs, its GPU), each about 20 s of training here."""
    epochs = max(30, math.ceil(20 / epoch_s))
    spec_path = slurm_spec(
        tmp_path,
        foundation,
        arch,
        name=name,
        epochs=epochs,
        grid={"preprocessor.kind": ["cropd"], "preprocessor.lambda": [1, 10]},
        resources={"cpu": 2, "gpu": 1},
        slurm={"nodes": NODES, "gpus_per_node": 1, "cpus_per_task": 2, "mem": "4G"},
    )
    return spec_path, tmp_path / "runs" / name, epochs


def test_a_lost_worker_node_moves_its_trial_to_the_other_node_where_it_resumes(
    tmp_path, cache_root, tiny_foundation_config, tiny_arch, epoch_s, every_node_back
):
    spec_path, sweep_dir, epochs = _two_trial_sweep(tmp_path, tiny_foundation_config, tiny_arch, epoch_s, "lossy")
    job_id = submit(spec_path, sweep_dir)
    moved, _ = wait_for(lambda: running_trial_past(sweep_dir, 3, node="node2"), "a trial at epoch 3 on node2")
    assert lose_node("node2")
    wait_until_done(sweep_dir, job_id)

    # The allocation lived on without the node (sbatch and srun --no-kill), and its last record says so.
    assert sacct_state(job_id) == "COMPLETED"
    assert [e["restart_count"] for e in events_of(sweep_dir) if e["event"] == "driver started"] == [0]
    assert_each_trial_once_and_every_epoch_once(sweep_dir, load_spec(spec_path), epochs)
    # The moved trial: its first epochs on node2, the rest on node1 from its last checkpoint.
    rows = sorted(epoch_rows(sweep_dir)[moved], key=lambda r: r["epoch"])
    on_node2 = [r["epoch"] for r in rows if r["node"] == "node2"]
    on_node1 = [r["epoch"] for r in rows if r["node"] == "node1"]
    assert on_node2 == list(range(1, len(on_node2) + 1)) and on_node1 == list(range(len(on_node2) + 1, epochs + 1))
    trial = load_trials(sweep_dir).set_index("config_hash").loc[moved]
    assert trial["node"] == "node1" and trial["resumed_from"] == f"preprocessor epoch {len(on_node2)}"


def test_a_lost_head_node_requeues_the_job_and_the_sweep_resumes(
    tmp_path, cache_root, tiny_foundation_config, tiny_arch, epoch_s, every_node_back
):
    spec_path, sweep_dir, epochs = _two_trial_sweep(tmp_path, tiny_foundation_config, tiny_arch, epoch_s, "headless")
    job_id = submit(spec_path, sweep_dir)
    wait_for(lambda: running_trial_past(sweep_dir, 3, node="node1"), "a trial at epoch 3 on node1, the head")
    reached = {key: max(r["epoch"] for r in rows) for key, rows in epoch_rows(sweep_dir).items()}
    assert lose_node("node1")
    # The node comes back (a reboot); Slurm finds the job's batch step gone from it and requeues
    # the job (its default for a node failure), which resumes the sweep.
    start_lost_slurmds()
    wait_for(
        lambda: any(e["event"] == "driver started" and e["restart_count"] == 1 for e in events_of(sweep_dir)),
        "the requeued driver to start",
    )
    wait_until_done(sweep_dir, job_id)

    assert sacct_state(job_id) == "COMPLETED"
    assert [e["restart_count"] for e in events_of(sweep_dir) if e["event"] == "driver started"] == [0, 1]
    assert_each_trial_once_and_every_epoch_once(sweep_dir, load_spec(spec_path), epochs)
    trials = load_trials(sweep_dir).set_index("config_hash")
    for key, epoch in reached.items():  # each went on from a checkpoint at or after where it was seen
        assert int(trials.loc[key, "resumed_from"].split()[-1]) >= epoch, (key, trials.loc[key, "resumed_from"])
