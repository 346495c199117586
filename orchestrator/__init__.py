"""The sweep side of the project: command line, specs, search, backends, results, analysis.

It drives `trainables` (the science) and is the only side that knows about Ray, Optuna or Slurm.
"""
