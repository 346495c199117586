"""Low/high-frequency split of images by a circular mask on the centred 2-D spectrum (AdvCL eq. 8).

AdvCL's frequency views: x_low keeps the frequencies at distance < r from the centre, x_high the rest.
"""

from __future__ import annotations

import torch


def low_pass_mask(height: int, width: int, radius: float, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean (H, W) mask, in torch.fft.fft2's (unshifted) layout, of the frequencies within `radius`.

    fftfreq * size gives each bin's integer frequency, so the distance to the zero frequency is
    the distance to the centre c of the fftshift-ed spectrum that AdvCL thresholds (for even sizes
    c = size / 2 exactly as in its code) without shifting back and forth.
    """
    fy = torch.fft.fftfreq(height, device=device) * height
    fx = torch.fft.fftfreq(width, device=device) * width
    distance = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    return distance < radius


def frequency_split(x: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_low, x_high) of images (..., H, W), per channel, with x_low + x_high == x.

    The mask is symmetric under f -> -f, so the inverse transform of the masked spectrum is real
    up to rounding; its real part is x_low. x_high is x - x_low rather than a second inverse FFT,
    so the two parts add back to x exactly (up to one float subtraction) whatever the rounding.
    """
    if radius <= 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    mask = low_pass_mask(x.shape[-2], x.shape[-1], radius, device=x.device)
    spectrum = torch.fft.fft2(x)
    low = torch.fft.ifft2(spectrum * mask).real.to(x.dtype)
    return low, x - low
