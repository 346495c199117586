"""The sweep engine: Ray Tune and Optuna around the trial function, in one driver process.

`runner.py` runs a sweep (Tuner, resume, outcome); `trial.py` is what a Ray worker runs for one
trial (the config rebuilt from Optuna's params, trainables.trial.run_trial, rows written as it
goes); `folder.py` keeps the sweep folder's lifecycle (prepare, state, journal repair). The rest
are the engine's parts: search (Optuna searcher, grid first), schedulers and pruning, progress,
stopped and failed trials, trackers, the local Ray it starts and the private Ray/Optuna APIs it
calls (private_apis.py, the only module that touches them).
"""
