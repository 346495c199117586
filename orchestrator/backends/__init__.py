"""Where a sweep's Ray cluster comes from: started in-process here, or joined by address.

The Slurm backend (submitit) starts a cluster inside an allocation and then runs this same driver.
"""
from .local import LocalBackend

__all__ = ["LocalBackend"]
