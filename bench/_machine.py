"""Facts about the machine a bench runs on, shared by the bench scripts.

Imported as a sibling module (`python bench/<script>.py` puts bench/ on sys.path).
"""

from __future__ import annotations

import math
import os


def available_cores() -> int:
    # Affinity, not os.cpu_count(): in a container or under taskset the two differ.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def concurrency(spec) -> int:
    """Trials of a sweep spec (orchestrator.spec.sweep_spec.SweepSpec) that can run at once here:
    max_concurrent, capped by what the machine's CPUs (and GPUs) hold."""
    slots = math.floor(available_cores() / spec.resources["cpu"])
    if spec.resources["gpu"] > 0:
        import torch

        slots = min(slots, math.floor(torch.cuda.device_count() / spec.resources["gpu"]))
    return max(1, min(spec.max_concurrent or slots, slots, spec.num_trials))
