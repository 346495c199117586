"""A backend that lives only in the tests plugs in end to end, with no change to the project.

It is an installed package as a user's own backend would be: a module and a dist-info folder
whose entry point (group cropd_orchestrator.backends) names its BackendEntry, found on the path
given to `python -m orchestrator`. It brings its spec section (`queue:`), its command-line option
(`--queue`), its plan check and how it describes a job; `sweep` and `plan` use them through the
registry (orchestrator/spec/backends.py) alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

BACKEND_MODULE = '''
"""A queue backend: `submits` a sweep by writing its planned trials to a job file."""

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from orchestrator.backends.base import Backend, Launched
from orchestrator.backends.jobs import SubmittedJob
from orchestrator.spec.backends import BackendEntry
from trainables.errors import ConfigError


@dataclass(frozen=True)
class QueueSettings:
    queue: str = "default"
    priority: int = 0


def parse(raw, *, source):
    if raw is None:
        return QueueSettings()
    if not isinstance(raw, dict) or set(raw) - {"queue", "priority"}:
        raise ConfigError("queue", "a mapping with keys queue, priority", raw, source=source)
    settings = QueueSettings(**raw)
    if not isinstance(settings.priority, int) or settings.priority < 0:
        raise ConfigError("queue.priority", "an integer >= 0", settings.priority, source=source)
    return settings


def add_options(parser):
    parser.add_argument("--queue", default=None, help="queue to submit to (overrides queue.queue)")


class QueueBackend(Backend):
    name = "queue"
    lock_holder = "submit"

    def __init__(self, settings=None):
        self.settings = settings or QueueSettings()

    @classmethod
    def from_options(cls, spec, options):
        settings = spec.backend_settings["queue"]
        given = getattr(options, "queue", None)
        return cls(replace(settings, queue=given) if given else settings)

    def _check(self, spec, sweep_dir):
        return None

    def _launch(self, spec, sweep_dir, prepared, *, restart, retry_failed, live):
        self.prepare_folder(spec, sweep_dir, restart=restart)
        folder = Path(sweep_dir) / "queue"
        folder.mkdir(exist_ok=True)
        job = {"queue": self.settings.queue, "priority": self.settings.priority, "trials": spec.num_trials}
        (folder / "job-1.json").write_text(json.dumps(job))
        return Launched(jobs=[SubmittedJob("1", "queue", time.time(), str(folder), tasks=spec.num_trials)])

    def describe(self, job):
        return f"queued {job.tasks} trials on {self.settings.queue} as job {job.job_id}"

    def plan_check(self, spec, wall_s):
        return {"queue": self.settings.queue, "priority": self.settings.priority, "trials": spec.num_trials}

    def plan_lines(self, check):
        return [f"queue {check['queue']} (priority {check['priority']}): {check['trials']} trials"]


ENTRY = BackendEntry("queue", backend="queue_backend:QueueBackend", settings="queue_backend:parse",
                     options="queue_backend:add_options")
NOT_AN_ENTRY = {"name": "broken"}
'''

SPEC = """
name: plugged
trial: {data: {dataset: digits2}}
grid:
  - preprocessor.kind: [identity, vanilla, cropd]
backend: queue
queue: {queue: fast, priority: 2}
"""


def _install(site: Path, entry_points: str) -> None:
    (site / "queue_backend.py").write_text(BACKEND_MODULE)
    info = site / "queue_backend-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: queue-backend\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def plugged(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _install(site, "[cropd_orchestrator.backends]\nqueue = queue_backend:ENTRY\n")
    (tmp_path / "plugged.yaml").write_text(SPEC)
    return tmp_path


def orchestrator(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder / "site"), str(REPO)])}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args], cwd=folder, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_sweep_goes_to_the_plugged_backend_with_its_section_and_its_option(plugged):
    done = orchestrator(plugged, "sweep", "plugged.yaml", "--queue", "gpu-long")
    assert done.returncode == 0, done.stderr
    assert "queued 3 trials on gpu-long as job 1" in done.stderr
    sweep = plugged / "runs" / "plugged"
    assert json.loads((sweep / "queue" / "job-1.json").read_text()) == {"queue": "gpu-long", "priority": 2, "trials": 3}
    # The backend's base class kept the books: the plan written, the job recorded.
    assert json.loads((sweep / "sweep.json").read_text())["num_trials"] == 3
    assert [json.loads(line)["mode"] for line in (sweep / "slurm" / "jobs.jsonl").read_text().splitlines()] == ["queue"]


def test_the_plugged_backends_section_is_checked_before_anything_is_written(plugged):
    (plugged / "plugged.yaml").write_text(SPEC.replace("priority: 2", "priority: -1"))
    refused = orchestrator(plugged, "sweep", "plugged.yaml")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "orchestrator: error: plugged.yaml: queue.priority: expected an integer >= 0, got -1"
    ]
    assert not (plugged / "runs").exists()


def test_plan_shows_the_plugged_backends_check_and_help_lists_its_option(plugged):
    planned = orchestrator(plugged, "plan", "plugged.yaml", "--format", "json")
    assert planned.returncode == 0, planned.stderr
    data = json.loads(planned.stdout)
    assert data["backend"] == "queue" and data["queue"] == {"queue": "fast", "priority": 2, "trials": 3}
    text = orchestrator(plugged, "plan", "plugged.yaml", "--queue", "other")
    assert text.stdout.rstrip().endswith("queue other (priority 2): 3 trials")
    helped = orchestrator(plugged, "sweep", "--help")
    assert "--queue" in helped.stdout and "{local,slurm,queue}" in helped.stdout


def test_without_the_package_the_backend_is_unknown_in_one_line(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "plugged.yaml").write_text(SPEC)
    refused = orchestrator(tmp_path, "sweep", "plugged.yaml")
    assert refused.returncode == 2
    assert "queue" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_an_entry_point_that_names_no_backend_entry_is_refused_in_one_line(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _install(site, "[cropd_orchestrator.backends]\nbroken = queue_backend:NOT_AN_ENTRY\n")
    (tmp_path / "plugged.yaml").write_text(SPEC.replace("backend: queue\nqueue: {queue: fast, priority: 2}\n", ""))
    refused = orchestrator(tmp_path, "plan", "plugged.yaml")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "orchestrator: error: entry point broken = queue_backend:NOT_AN_ENTRY (group cropd_orchestrator.backends): "
        "expected a BackendEntry named 'broken'"
    ]
