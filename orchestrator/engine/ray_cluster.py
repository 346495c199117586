"""The Ray cluster a sweep's engine runs on: started in-process here or joined by address.

runner.run_sweep starts and stops it; the local backend is one (backends/local.py), and the
Slurm backend's driver job makes one of its allocation's share (backends/slurm/job.py). It checks
that some node can hold one trial's resources before anything is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from orchestrator.logs import ray_logging_level
from trainables.errors import ConfigError


@dataclass
class RayCluster:
    """`address=None` starts Ray here with this machine's CPUs and GPUs; otherwise joins a cluster."""

    address: str | None = None
    temp_dir: str | None = None  # Ray's session folder; tests give each run its own to clean up by
    # What Ray may use here; default: this machine's (a Slurm job passes its allocation's share).
    num_cpus: int | None = None
    num_gpus: int | None = None

    def check_resources(self, resources: dict[str, float], source: str) -> None:
        """One clear line if no node could ever run one trial; call before start() for local Ray."""
        if self.address:
            return  # checked against the cluster's nodes once connected
        from orchestrator.spec.machine import cpus_here, gpus_here

        # Counted as `plan` counts (spec/machine.py), so a plan never promises what this refuses.
        cpus = self.num_cpus or cpus_here()
        gpus = gpus_here() if self.num_gpus is None else self.num_gpus
        _check_fits(
            resources,
            [{"CPU": cpus, "GPU": gpus}],
            source,
            "this machine" if self.num_cpus is None else "this allocation",
        )

    def start(self, resources: dict[str, float], source: str) -> None:
        import ray

        # -q / -v (logs.py): ray.init resets Ray's logger to this level (default: Ray's own).
        level = ray_logging_level()
        logging_level = {} if level is None else {"logging_level": level}
        if self.address:
            ray.init(address=self.address, log_to_driver=False, **logging_level)
            nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
            try:
                _check_fits(resources, nodes, source, f"the Ray cluster at {self.address}")
            except ConfigError:
                ray.shutdown()
                raise
            return
        from orchestrator.engine.private_apis import start_local_ray

        # In-process Ray listening on 127.0.0.1 only: other machines cannot reach it (other users
        # of this machine still could; token auth is left off as before).
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        start_local_ray(
            temp_dir=self.temp_dir,
            include_dashboard=False,
            log_to_driver=False,
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            **logging_level,
        )

    def stop(self) -> None:
        import ray

        ray.shutdown()


def _check_fits(resources: dict[str, float], nodes: list[dict[str, float]], source: str, where: str) -> None:
    cpu, gpu = resources["cpu"], resources["gpu"]
    if any(node.get("CPU", 0) >= cpu and node.get("GPU", 0) >= gpu for node in nodes):
        return
    largest = max(nodes, key=lambda node: (node.get("GPU", 0), node.get("CPU", 0)), default={})
    field = "resources.gpu" if gpu > largest.get("GPU", 0) else "resources.cpu"
    raise ConfigError(
        field,
        f"a request one node of {where} can hold (largest: {largest.get('CPU', 0):g} CPUs, "
        f"{largest.get('GPU', 0):g} GPUs)",
        resources,
        source=source,
    )
