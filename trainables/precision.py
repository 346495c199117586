"""The `compute:` switches applied: bf16 autocast, TF32, torch.compile (trainables/schema/compute.py).

Autocast works on a CPU too (bf16), so the tests exercise the same code a GPU runs; TF32 only
changes NVIDIA GPUs' matmuls and convolutions and is switched back when the trial ends, because a
Ray worker runs trial after trial.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


def autocast(device: str | torch.device | None, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device`'s type when `enabled`; nothing otherwise (then `device` may be None)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 for matmuls and cuDNN convolutions while the block runs, as it was afterwards."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def compiled(module: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """`module` compiled by torch.compile when `enabled`. Shapes are dynamic: the attacks shrink
    their batches as points are broken, which would otherwise recompile at every new size."""
    return torch.compile(module, dynamic=True) if enabled else module
