"""Where everything of a sweep folder lives: the one place its layout is spelled out.

In the manner of submitit's JobPaths: `SweepPaths(root)` names every file and folder of a sweep
(plan, results, trial workdirs, shared artifacts, Ray's and Optuna's state, Slurm's records, the
driver lock), and `ResultsPaths` the results/ folder, which is also read on its own (a copy of it
on a laptop). Nobody else joins names onto a sweep folder.

What a user typed (a folder, a spec file, a results copy) becomes a folder in sweep_target.py.
"""

from __future__ import annotations

from pathlib import Path

from trainables.artifacts import RESULT_FILE

STATE_FILE = "sweep.json"  # marks a sweep directory: the plan and its hash
RESULTS_FOLDER = "results"
PARQUET = ".parquet"


class ResultsPaths:
    """The results/ folder: one Parquet file per trial under trials/, epochs/ and examples/."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def trials(self) -> Path:
        return self.root / "trials"

    @property
    def epochs(self) -> Path:
        return self.root / "epochs"

    @property
    def examples(self) -> Path:
        """Per-example outcomes: one row per (attack, test point)."""
        return self.root / "examples"

    def trial_row(self, key: str) -> Path:
        return self.trials / f"{key}{PARQUET}"

    def epochs_file(self, key: str) -> Path:
        return self.epochs / f"{key}{PARQUET}"

    def examples_file(self, key: str) -> Path:
        return self.examples / f"{key}{PARQUET}"

    def cache_of(self, folder_name: str) -> Path:
        """cache/<trials|epochs|examples>.parquet: every per-trial file's rows in one (cache.py)."""
        return self.root / "cache" / f"{folder_name}{PARQUET}"


def parquet_files(folder: Path) -> list[Path]:
    """The one-per-trial Parquet files of a results folder (trials/, epochs/ or examples/), by name."""
    return sorted(Path(folder).glob(f"*{PARQUET}"))


class SweepPaths:
    """Every path of the sweep folder `root` (given as is: callers resolve it where it matters)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"SweepPaths({str(self.root)!r})"

    # --- the plan -------------------------------------------------------------------------------
    @property
    def state(self) -> Path:
        """sweep.json: the plan and its hash; its presence makes a folder a sweep folder."""
        return self.root / STATE_FILE

    @property
    def spec_copy(self) -> Path:
        """The spec file the sweep was last run from, copied in."""
        return self.root / "spec.yaml"

    @property
    def lock(self) -> Path:
        """The driver lock: beside the folder, not inside (`--restart` moves the folder while it is held)."""
        root = self.root.resolve()  # one lock per folder, however the path was spelled
        return root.with_name(f".{root.name}.driver.lock")

    def replaced(self, stamp: str) -> Path:
        """Where `--restart` moves the previous sweep: beside it, stamped."""
        return self.root.with_name(f"{self.root.name}.replaced-{stamp}")

    # --- results (the record of truth) ----------------------------------------------------------
    @property
    def results(self) -> ResultsPaths:
        return ResultsPaths(self.root / RESULTS_FOLDER)

    # --- trials' own folders --------------------------------------------------------------------
    @property
    def trials(self) -> Path:
        """One workdir per trial config (trials/<config hash>): weights, config.json, result."""
        return self.root / "trials"

    def workdir(self, key: str) -> Path:
        return self.trials / key

    def trial_result(self, key: str) -> Path:
        """A finished trial's saved outcome: a resume writes its rows again from it, without rerunning."""
        return self.workdir(key) / RESULT_FILE

    def trial_config(self, key: str) -> Path:
        """config.json in a trial's workdir: its config, overrides and Ray trial id."""
        return self.workdir(key) / "config.json"

    @property
    def artifacts(self) -> Path:
        """The artifact store trials share (a pre-processor trained once for every trial that uses it)."""
        return self.root / "artifacts"

    # --- the engines' state ---------------------------------------------------------------------
    @property
    def ray(self) -> Path:
        """Ray Tune's experiment folder: only a resume cache."""
        return self.root / "ray"

    @property
    def optuna_journal(self) -> Path:
        return self.root / "optuna.journal"

    @property
    def ray_processes(self) -> Path:
        """The Ray processes a local driver started, for the next driver to stop if it was killed."""
        return self.root / "ray-processes.json"

    # --- Slurm ----------------------------------------------------------------------------------
    @property
    def slurm(self) -> Path:
        return self.root / "slurm"

    @property
    def jobs(self) -> Path:
        """jobs.jsonl: one line per submitted job, for `status` and `cancel`."""
        return self.slurm / "jobs.jsonl"

    @property
    def events(self) -> Path:
        """events.jsonl: what happened to a Slurm driver or task, and when."""
        return self.slurm / "events.jsonl"

    @property
    def slurm_logs(self) -> Path:
        """submitit's pickles and logs, one folder per job id."""
        return self.slurm / "logs"

    @property
    def array_plan(self) -> Path:
        """The trials of a job-array sweep, drawn once so a resubmission runs the same ones."""
        return self.slurm / "array_plan.json"

    def ray_head_address(self, job_tag: str) -> Path:
        return self.slurm / f"ray-head-{job_tag}.address"

    def ray_token(self, job_tag: str) -> Path:
        return self.slurm / f"ray-token-{job_tag}"


def default_sweep_dir(name: str) -> Path:
    """Where a sweep runs without --out: runs/<name> under the current folder."""
    return Path("runs") / name
