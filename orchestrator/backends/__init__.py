"""Where a sweep's Ray cluster comes from: started in-process here, or joined by address.

The Slurm backend (submitit) starts a cluster inside an allocation and then runs this same driver.
"""
from .local import LocalBackend

# Where a sweep runs: `local` (Ray here, or at --address) or `slurm` (submitted with submitit).
BACKENDS = ("local", "slurm")

__all__ = ["LocalBackend"]
