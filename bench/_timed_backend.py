"""A LocalBackend that stamps when Ray comes up and goes down, shared by the sweep benches.

Imported as a sibling module (`python bench/<script>.py` puts bench/ on sys.path).
"""

from __future__ import annotations

import time
from typing import Callable

from orchestrator.backends.local import LocalBackend


class TimedBackend(LocalBackend):
    """Writes ray_init_begin/end and ray_stop_begin/end (time.time()) into `stamps`."""

    def __init__(self, stamps: dict[str, float], before_stop: Callable[[], None] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.stamps = stamps
        # Runs while Ray's processes are still there, e.g. a last memory sample.
        self.before_stop = before_stop

    def start(self, resources, source):
        self.stamps["ray_init_begin"] = time.time()
        super().start(resources, source)
        self.stamps["ray_init_end"] = time.time()

    def stop(self):
        if self.before_stop is not None:
            self.before_stop()
        self.stamps["ray_stop_begin"] = time.time()
        super().stop()
        self.stamps["ray_stop_end"] = time.time()
