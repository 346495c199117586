"""What a trial's numbers depend on beyond its config: the foundation's weights and the compute.

A foundation pre-trained on the spot differs between machines: PyTorch picks its CPU kernels by
the instruction set (ATEN_CPU_CAPABILITY: avx512, avx2, default), and the same pre-training on
three of them gave three foundations whose weights are 14-15% apart. The same config can
therefore mean another model, and a paired difference between rows on different foundations
measures the foundations, not the method. Every row records the digest of the foundation weights
it used and what computed it, so a report can refuse the one and warn about the other.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

DIGEST_CHARS = 16  # 64 bits of sha256: enough to tell foundations apart, short enough to read


def weights_digest(foundation: nn.Module) -> str:
    """sha256 (first DIGEST_CHARS hex) of a foundation's weights and its input normalisation.

    Of the tensors themselves, by name in sorted order with dtype and shape, not of a file: the
    same weights saved as safetensors or a pickle, or loaded on another device, give one digest.
    The normalisation (mean, std) is part of the model the attacks see, so it is included.
    """
    tensors = dict(foundation.model.state_dict()) if hasattr(foundation, "model") else dict(foundation.state_dict())
    for name in ("mean", "std"):
        if isinstance(getattr(foundation, name, None), torch.Tensor):
            tensors[f"normalisation.{name}"] = getattr(foundation, name)
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:DIGEST_CHARS]


def compute_identity(device: str | torch.device) -> dict[str, str | None]:
    """What computes a trial on `device`: `device_name` (cpu, or the GPU's model) and
    `cpu_capability` (the kernels PyTorch's CPU ops use here: AVX512, AVX2, DEFAULT...).

    The CPU capability matters on a GPU too: data preparation and some reductions run on the CPU.
    torch's version is in every row already (`version.torch`).
    """
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "cpu":
        name = "cpu"
    else:
        name = device.type
    return {"device_name": name, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
