"""What this machine offers trials: its cores and GPUs, counted one way for `plan` and `sweep`.

`plan` says how many trials run at once here and `sweep` refuses a trial that cannot fit; both
count with these two functions, so the plan never promises what the sweep then refuses. Neither
imports torch (plan stays instant): a CPU-only torch on a GPU machine would count no GPU, while
Ray, which places the trials, sees the driver's devices.
"""

from __future__ import annotations

import os
from pathlib import Path


def cpus_here() -> int:
    """The cores this process may run on (its affinity: a Slurm step's or taskset's share)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def gpus_here() -> int:
    """This machine's GPUs as CUDA would show them: $CUDA_VISIBLE_DEVICES when set, else the
    NVIDIA driver's entries under /proc."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([device for device in visible.split(",") if device.strip() and device.strip() != "-1"])
    driver = Path("/proc/driver/nvidia/gpus")
    return len(list(driver.iterdir())) if driver.is_dir() else 0
