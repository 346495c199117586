"""The paper's training augmentations (its Table 5), drawn per image and applied to a whole batch.

RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3), horizontal flip (p 0.5), ColorJitter(0.4, 0.4,
0.4, 0.1) in a random order (p 0.8), grayscale (p 0.2): torchvision's transforms, with its way of
drawing their parameters, but each image gets its own draw and the whole batch is transformed by
tensor operations. torchvision's v2 transforms draw one set of parameters per call, so per-image
draws meant a Python loop over the batch: ~2 ms an image on a CPU core, as much as the tiny
auto-encoder's own training step (bench/bench_preprocessor_step.py). The operations are
torchvision's own formulas (resized_crop with bilinear upsampling, adjust_brightness/contrast/
saturation/hue, rgb_to_grayscale); tests/trainables/test_augmentation.py checks image by image that the
batched result equals torchvision's functional ops applied with the same parameters.

Randomness is torch's global RNG (callers seed it per epoch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop.get_params
FLIP_P = 0.5
JITTER_P = 0.8
BRIGHTNESS = CONTRAST = SATURATION = 0.4
HUE = 0.1
GRAYSCALE_P = 0.2
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale
BRIGHTNESS_OP, CONTRAST_OP, SATURATION_OP, HUE_OP = range(4)


@dataclass
class AugmentationDraw:
    """One draw of every random parameter for a batch of B images (all tensors of length B)."""

    top: torch.Tensor  # the crop box, in pixels (int64)
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor
    flip: torch.Tensor  # bool
    jitter: torch.Tensor  # bool: ColorJitter applied at all
    order: torch.Tensor  # (B, 4) int64: the order of the four colour operations
    brightness: torch.Tensor  # float factors
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    grayscale: torch.Tensor  # bool


def draw(batch: int, height: int, width: int) -> AugmentationDraw:
    """Per-image parameters, drawn as torchvision draws them (global RNG)."""
    top, left, crop_h, crop_w = _crop_boxes(batch, height, width)
    return AugmentationDraw(
        top=top,
        left=left,
        height=crop_h,
        width=crop_w,
        flip=torch.rand(batch) < FLIP_P,
        jitter=torch.rand(batch) < JITTER_P,
        order=torch.argsort(torch.rand(batch, 4), dim=1),  # a uniform random permutation per image
        brightness=torch.empty(batch).uniform_(1 - BRIGHTNESS, 1 + BRIGHTNESS),
        contrast=torch.empty(batch).uniform_(1 - CONTRAST, 1 + CONTRAST),
        saturation=torch.empty(batch).uniform_(1 - SATURATION, 1 + SATURATION),
        hue=torch.empty(batch).uniform_(-HUE, HUE),
        grayscale=torch.rand(batch) < GRAYSCALE_P,
    )


def _crop_boxes(batch: int, height: int, width: int):
    """RandomResizedCrop.get_params for every image: up to 10 tries each, else the centre crop."""
    area = height * width
    target = area * torch.empty(batch, CROP_ATTEMPTS).uniform_(*SCALE)
    log_ratio = torch.empty(batch, CROP_ATTEMPTS).uniform_(math.log(RATIO[0]), math.log(RATIO[1]))
    aspect = torch.exp(log_ratio)
    w = torch.round(torch.sqrt(target * aspect)).long()
    h = torch.round(torch.sqrt(target / aspect)).long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(fits.int(), dim=1)  # the first try that fits (0 when none does)
    rows = torch.arange(batch)
    crop_w, crop_h = w[rows, first], h[rows, first]
    # torchvision's fallback when no try fits: the whole image, cut to the ratio range.
    in_ratio = width / height
    if in_ratio < RATIO[0]:
        fallback = (round(width / RATIO[0]), width)
    elif in_ratio > RATIO[1]:
        fallback = (height, round(height * RATIO[1]))
    else:
        fallback = (height, width)
    none_fit = ~fits.any(dim=1)
    crop_h = torch.where(none_fit, fallback[0], crop_h)
    crop_w = torch.where(none_fit, fallback[1], crop_w)
    top = (torch.rand(batch) * (height - crop_h + 1)).long()
    left = (torch.rand(batch) * (width - crop_w + 1)).long()
    top = torch.where(none_fit, (height - crop_h) // 2, top)
    left = torch.where(none_fit, (width - crop_w) // 2, left)
    return top, left, crop_h, crop_w


def apply(images: torch.Tensor, params: AugmentationDraw) -> torch.Tensor:
    """`images` (B, 3, H, W) floats in [0, 1] under `params`; the output in [0, 1]."""
    x = _resized_crop(images, params)
    x = torch.where(params.flip.to(x.device)[:, None, None, None], x.flip(-1), x)
    x = _jitter(x, params)
    gray = _grayscale(x).expand_as(x)
    x = torch.where(params.grayscale.to(x.device)[:, None, None, None], gray, x)
    return x.clamp_(0, 1)


def augment(images: torch.Tensor) -> torch.Tensor:
    """The paper's augmentations, a fresh draw per image (torch's global RNG)."""
    batch, _, height, width = images.shape
    return apply(images, draw(batch, height, width))


def _resized_crop(images: torch.Tensor, params: AugmentationDraw) -> torch.Tensor:
    """Each image's crop box resized back to H x W, bilinear (align_corners=False), as
    torchvision's resized_crop: source coordinates are clamped to the crop, not the image."""
    batch, _, height, width = images.shape
    device, dtype = images.device, images.dtype

    def axis(start: torch.Tensor, length: torch.Tensor, size: int) -> torch.Tensor:
        start, length = start.to(device, dtype)[:, None], length.to(device, dtype)[:, None]
        out = torch.arange(size, device=device, dtype=dtype)[None, :]
        source = ((out + 0.5) * (length / size) - 0.5).clamp(min=0)
        source = torch.minimum(source, length - 1) + start  # pixel coordinates in the image
        return (2 * source + 1) / size - 1  # grid_sample's normalised coordinates (align_corners=False)

    ys = axis(params.top, params.height, height)  # (B, H)
    xs = axis(params.left, params.width, width)  # (B, W)
    grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(dim=1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    ratio = ratio[:, None, None, None]
    return (ratio * x + (1 - ratio) * other).clamp(0, 1)


def _jitter(x: torch.Tensor, params: AugmentationDraw) -> torch.Tensor:
    """ColorJitter, each image's four operations in its own order (images without jitter untouched)."""
    device = x.device
    factors = {
        BRIGHTNESS_OP: params.brightness.to(device, x.dtype),
        CONTRAST_OP: params.contrast.to(device, x.dtype),
        SATURATION_OP: params.saturation.to(device, x.dtype),
        HUE_OP: params.hue.to(device, x.dtype),
    }
    x = x.clone()
    for position in range(4):
        for op, factor in factors.items():
            # Only the images doing this operation at this position: each image pays each op once.
            chosen = (params.jitter & (params.order[:, position] == op)).nonzero().flatten().to(device)
            if len(chosen):
                x[chosen] = _colour_op(x[chosen], op, factor[chosen])
    return x


def _colour_op(x: torch.Tensor, op: int, factor: torch.Tensor) -> torch.Tensor:
    if op == BRIGHTNESS_OP:
        return (x * factor[:, None, None, None]).clamp(0, 1)
    if op == CONTRAST_OP:
        mean = _grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
        return _blend(x, mean, factor)
    if op == SATURATION_OP:
        return _blend(x, _grayscale(x), factor)
    return _adjust_hue(x, factor)


def _adjust_hue(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_hue (RGB -> HSV, hue shifted modulo 1, back), with a shift per image."""
    r, g, _ = x.unbind(dim=1)
    minc, maxc = torch.aminmax(x, dim=1)
    eqc = maxc == minc
    channels_range = maxc - minc
    ones = torch.ones_like(maxc)
    s = channels_range / torch.where(eqc, ones, maxc)
    divisor = torch.where(eqc, ones, channels_range).unsqueeze(1)
    rc, gc, bc = ((maxc.unsqueeze(1) - x) / divisor).unbind(dim=1)
    maxc_neq_r, maxc_eq_g = maxc != r, maxc == g
    hg = (rc + 2.0 - bc) * (maxc_eq_g & maxc_neq_r)
    hr = (bc - gc) * ~maxc_neq_r
    hb = (gc + 4.0 - rc) * (maxc_neq_r & ~maxc_eq_g)
    h = ((hr + hg + hb) * (1.0 / 6.0) + 1.0).fmod(1.0)
    h = (h + factor[:, None, None]).remainder(1.0)
    return _hsv_to_rgb(h, s, maxc)


# Which of (v, p, q, t) each of R, G, B takes in each of the six hue sectors (torchvision's table).
_SECTOR_SELECT = ((0, 2, 1, 1, 3, 0), (3, 0, 0, 2, 1, 1), (1, 1, 3, 0, 0, 2))


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    h6 = h * 6
    i = torch.floor(h6)
    f = h6 - i
    sector = i.to(torch.int64).remainder(6)
    q = ((1.0 - s * f) * v).clamp(0.0, 1.0)
    t = ((s * f + (1.0 - s)) * v).clamp(0.0, 1.0)
    p = ((1.0 - s) * v).clamp(0.0, 1.0)
    vpqt = torch.stack((v, p, q, t), dim=1)  # (B, 4, H, W)
    select = torch.tensor(_SECTOR_SELECT, dtype=torch.int64, device=h.device)[:, sector]  # (3, B, H, W)
    return vpqt.gather(1, select.movedim(0, 1))
