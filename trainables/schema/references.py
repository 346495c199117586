"""A registry entry names its torch side as "module:attribute", imported only when used.

So the schema stays free of torch, and an optional dependency (diffusers for kind vae) is
imported only by a trial that uses it.
"""

from __future__ import annotations

import importlib
from typing import Any


def imported(reference: str) -> Any:
    """The attribute a "module:attribute" reference names, its module imported now."""
    module, name = reference.split(":")
    return getattr(importlib.import_module(module), name)
