"""What a trial's `compute:` section may say: numeric precision and compilation, per trial.

bf16 autocast for the training stages (pre-processor training, head training and fine-tuning),
optionally for the evaluation too, TF32 matmuls, and torch.compile of the pipeline that is
attacked. Defaults are plain fp32 and no compilation; a trial at the defaults has no `compute`
section in its resolved config, so its hash is what it was before the section existed.
"""

from __future__ import annotations

from typing import Any, Mapping

from .fields import Field, Resolved, boolean, one_of, resolve

SECTION = "compute"
COMPUTE_SCHEMA = {
    "autocast": Field(
        "none",
        "'none' (fp32) or 'bf16' (bf16 autocast for pre-processor training, head training and fine-tuning)",
        one_of("none", "bf16"),
    ),
    # Off unless asked: on an H200, PGD-20 under bf16 autocast left robust accuracy at 0.47 where
    # fp32 and TF32 reached 0.00 (bench/gpu.py, bench/results): a weaker attack overstates robustness.
    "evaluation_autocast": Field(False, "true or false (bf16 autocast for the evaluation's attacks too)", boolean),
    "tf32": Field(False, "true or false (TF32 matmuls and convolutions on an NVIDIA GPU; nothing on a CPU)", boolean),
    "compile": Field(False, "true or false (torch.compile the whole pipeline the evaluation attacks)", boolean),
}


def resolve_compute_config(given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The checked section with every default filled."""
    if isinstance(given, Resolved):
        return given
    return resolve(SECTION, given, COMPUTE_SCHEMA)


DEFAULT_COMPUTE = resolve_compute_config(None)
