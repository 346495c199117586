"""Helpers the sweep tests share: a tiny spec on disk, the planned trial hashes, a race-free Parquet read.

A plain module in tests/helpers/ (pyproject's pytest `pythonpath` puts it on sys.path), not a conftest fixture,
because the Slurm tests also write specs for jobs that run in other processes.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import yaml

from orchestrator.engine.trial import trial_key


def write_spec(folder: Path, foundation: dict, arch: dict, *, name: str = "tiny", grid=None, **top) -> Path:
    spec = {
        "name": name,
        "trial": {
            "data": {"dataset": "digits2", "data_fraction": 0.5},
            "foundation": foundation,
            "preprocessor": {"kind": "cropd", "arch": arch, "epochs": 3, "batch_size": 32, "lr": 2e-3},
            "head": {"epochs": 3},
            "evaluation": {"n_examples": 40, "attacks": ["pgd10", "pgd20"]},
        },
        "grid": grid
        if grid is not None
        else [{"preprocessor.kind": ["identity"]}, {"preprocessor.kind": ["cropd"], "preprocessor.lambda": [1, 10]}],
        "objectives": {"val_acc_natural": "max", "val_acc_pgd20": "max"},
        "resources": {"cpu": 1},
        "max_concurrent": 2,
        **top,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def max_overlap(intervals) -> int:
    """The largest number of (start, end) intervals that hold one moment in common."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def planned_hashes(spec) -> set[str]:
    return {trial_key(spec.trial_config(point)) for point in spec.grid_points}


def read_rows(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Read the bytes in one go: pq.read_table(path) takes the size first and reads after, and the
    # running trial may replace the file in between (CI once read a new file with an old size).
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return pq.read_table(pa.BufferReader(data)).to_pylist()


@contextmanager
def local_ray_session(num_cpus: int = 1):
    """A local Ray of its own for one test (module), in a short temp folder, shut down after."""
    import shutil
    import tempfile

    import ray

    from orchestrator.engine import private_apis

    temp_dir = tempfile.mkdtemp(prefix="cr-", dir="/tmp")  # short: Ray's socket paths must stay under ~100 chars
    private_apis.start_local_ray(temp_dir=temp_dir, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
