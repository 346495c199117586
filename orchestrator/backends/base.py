"""What every backend is: public methods keep a sweep folder's books, private hooks launch.

In the manner of Syne Tune's TrialBackend: `sweep()` checks (nothing written), takes the sweep's
lock, calls the backend's `_launch`, and records every job it submitted; `prepare_folder()` is the
plan's bookkeeping for a backend that launches elsewhere. A backend implements `_check` and
`_launch`, and, when it submits jobs that outlive the command, `jobs`, `live_jobs` and `cancel`
(the local backend runs the sweep in-process and has none).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from orchestrator.backends.jobs import SubmittedJob, record_job

if TYPE_CHECKING:
    from orchestrator.engine.folder import SweepOutcome
    from orchestrator.spec.sweep_spec import SweepSpec
    from orchestrator.store.paths import SweepPaths


@dataclass
class Launched:
    """What a launch left: a run finished here (`outcome`), or jobs submitted to run elsewhere."""

    outcome: SweepOutcome | None = None
    jobs: list[SubmittedJob] = field(default_factory=list)


@dataclass
class JobStatus:
    """One job (or array task) of a sweep as `orchestrator status` lists it."""

    backend: str
    job_id: str
    mode: str
    state: str
    log: Path


class Backend(ABC):
    """Where a sweep's trials run; registered by `name` in orchestrator.backends."""

    name: ClassVar[str]
    # Who holds the sweep's lock while `_launch` runs, for the refusal line of a second one.
    lock_holder: ClassVar[str] = "driver"

    def sweep(
        self,
        spec: SweepSpec,
        sweep_dir: Path,
        *,
        restart: bool = False,
        retry_failed: bool = False,
        live: bool | None = None,
    ) -> Launched:
        """Check, then launch under the sweep's lock; returns the outcome or the submitted jobs.

        Everything a user can get wrong is refused by `_check` before the folder is touched.
        """
        from orchestrator.store.lock import sweep_lock

        sweep_dir = Path(sweep_dir).resolve()
        prepared = self._check(spec, sweep_dir)
        # Two drivers on one sweep would race for the same trials: one holder at a time.
        with sweep_lock(sweep_dir, self.lock_holder):
            launched = self._launch(spec, sweep_dir, prepared, restart=restart, retry_failed=retry_failed, live=live)
            for job in launched.jobs:
                record_job(sweep_dir, job)
        return launched

    def prepare_folder(self, spec: SweepSpec, sweep_dir: Path, *, restart: bool) -> bool:
        """The sweep folder checked against the spec (a resume repairs Optuna's journal) and the plan
        written; returns True when an earlier run is resumed. Call with the sweep's lock held."""
        from orchestrator.engine.folder import prepare_folder

        return prepare_folder(spec, sweep_dir, restart=restart)

    @classmethod
    @abstractmethod
    def from_options(cls, spec: SweepSpec, options: Any) -> Backend:
        """The backend for `orchestrator sweep`: the spec's settings with the command line's over them."""

    @classmethod
    def for_folder(cls) -> Backend:
        """A backend that reads and cancels a sweep's jobs (status, cancel): no launch settings."""
        return cls()

    # --- jobs that outlive the command: none unless a backend submits some ----------------------
    def jobs(self, sweep_dir: Path) -> list[JobStatus]:
        """The sweep's submitted jobs with their states, for `orchestrator status`."""
        return []

    def live_jobs(self, sweep_dir: Path) -> dict[str, str]:
        """Jobs of the sweep that may still run, by id, with their states."""
        return {}

    def cancel(self, sweep_dir: Path) -> list[str]:
        """Cancel the sweep's jobs that may still run; returns their ids."""
        return []

    # --- what `sweep` and `plan` say about this backend's work -----------------------------------
    def describe(self, job: SubmittedJob) -> str:
        """The line `orchestrator sweep` prints for a job it submitted."""
        return f"submitted {self.name} job {job.job_id} ({job.mode}); logs under {job.log_folder}"

    def plan_concurrency(self, spec: SweepSpec) -> tuple[int, str] | None:
        """How many trials run at once and why, for `orchestrator plan`; None: as many as fit here."""
        return None

    def plan_check(self, spec: SweepSpec, wall_s: float | None) -> dict | None:
        """What `orchestrator plan` asks of the backend before anything is submitted (JSON-ready,
        under the backend's name); None: nothing to check."""
        return None

    def plan_lines(self, check: dict) -> list[str]:
        """`plan_check`'s result as lines of `orchestrator plan`'s text."""
        return [f"{self.name}: {check}"]

    # --- hooks ----------------------------------------------------------------------------------
    @classmethod
    def owns(cls, paths: SweepPaths) -> bool:
        """Whether this backend's job records are in the sweep folder (status and cancel ask it)."""
        return False

    @abstractmethod
    def _check(self, spec: SweepSpec, sweep_dir: Path) -> Any:
        """Refuse (a UserError) what cannot run, writing nothing; returns what `_launch` needs."""

    @abstractmethod
    def _launch(
        self, spec: SweepSpec, sweep_dir: Path, prepared: Any, *, restart: bool, retry_failed: bool, live: bool | None
    ) -> Launched:
        """Run or submit the sweep; the sweep's lock is held."""
