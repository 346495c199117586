"""One place that turns (seed, stage, epoch) into RNG state.

Seeding every epoch from its index (not carrying RNG state across epochs) is what makes a run
resumed from an epoch checkpoint end with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from .artifacts import config_hash


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from any parts, stable across processes (unlike hash())."""
    return int(config_hash(list(map(str, parts)), length=8), 16) & 0x7FFFFFFF


def seed_everything(*parts: object) -> int:
    seed = derive_seed(*parts)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed
