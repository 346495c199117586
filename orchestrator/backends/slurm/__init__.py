"""The Slurm backend, one package: a sweep submitted with submitit as a Ray job or a job array.

executor.py   the submitit executor and sbatch's own checks (`sbatch --test-only`)
backend.py    SlurmBackend: check, submit, list and cancel the sweep's jobs
array_plan.py array mode's trials, drawn once and saved
job.py        what runs inside a job: the sweep driver on Ray, or one array task
records.py    Slurm's states of the recorded jobs, scancel, the event log

Nothing is imported here: validating a spec must not import submitit. The spec's `slurm:` section
is parsed by orchestrator/backends/slurm/settings.py, beside spec.py: the spec sits below the backends,
which run it (no import cycle).
"""
