"""The old home of the Slurm job callables (now backends/slurm/job.py), kept for jobs in flight.

submitit pickles SweepDriver and ArrayTrial by module path when it submits; a job submitted before
the move that starts, or is requeued, afterwards loads them from here. Import nothing from here.
"""

from .slurm.job import ArrayTrial, SweepDriver

__all__ = ["ArrayTrial", "SweepDriver"]
