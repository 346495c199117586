"""Facts about the machine a bench runs on, shared by the bench scripts.

Imported as a sibling module (`python bench/<script>.py` puts bench/ on sys.path).
"""

from __future__ import annotations

import os


def available_cores() -> int:
    # Affinity, not os.cpu_count(): in a container or under taskset the two differ.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
