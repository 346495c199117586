"""Where a sweep runs: a `Backend` (base.py) per kind, `local` (local.py) and `slurm` (slurm/).

The registry by name is registry.py. LocalBackend is a RayCluster (engine/ray_cluster.py), the
engine's Ray starter; the Slurm backend's driver job runs that same engine inside its allocation.
"""
