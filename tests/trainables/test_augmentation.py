"""The batched Table 5 augmentation (trainables/augmentation.py) against torchvision, image by image."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from trainables import augmentation
from trainables.augmentation import BRIGHTNESS_OP, CONTRAST_OP, HUE_OP, SATURATION_OP

TORCHVISION_OP = {
    BRIGHTNESS_OP: TF.adjust_brightness,
    CONTRAST_OP: TF.adjust_contrast,
    SATURATION_OP: TF.adjust_saturation,
    HUE_OP: TF.adjust_hue,
}


def _torchvision(image: torch.Tensor, params: augmentation.AugmentationDraw, i: int) -> torch.Tensor:
    """Image i under its own parameters, through torchvision's functional ops one image at a time."""
    size = list(image.shape[-2:])
    out = TF.resized_crop(
        image,
        int(params.top[i]),
        int(params.left[i]),
        int(params.height[i]),
        int(params.width[i]),
        size,
        antialias=True,
    )
    if params.flip[i]:
        out = TF.horizontal_flip(out)
    if params.jitter[i]:
        factors = {
            BRIGHTNESS_OP: params.brightness[i],
            CONTRAST_OP: params.contrast[i],
            SATURATION_OP: params.saturation[i],
            HUE_OP: params.hue[i],
        }
        for op in params.order[i].tolist():
            out = TORCHVISION_OP[op](out, float(factors[op]))
    if params.grayscale[i]:
        out = TF.rgb_to_grayscale(out, num_output_channels=3)
    return out.clamp(0, 1)


@pytest.mark.parametrize("size", [32, 20])
def test_each_image_is_what_torchvision_makes_of_it_with_the_same_draw(size):
    torch.manual_seed(0)
    images = torch.rand(64, 3, size, size)
    params = augmentation.draw(len(images), size, size)
    batched = augmentation.apply(images, params)
    # The draw covers every branch: flips, jitter off and on, grayscale, crops smaller than the image.
    assert 0 < int(params.flip.sum()) < 64 and 0 < int(params.jitter.sum()) < 64 and int(params.grayscale.sum()) > 0
    assert bool((params.width < size).any()) and bool((params.height < size).any())
    for i in range(len(images)):
        expected = _torchvision(images[i], params, i)
        torch.testing.assert_close(batched[i], expected, atol=2e-5, rtol=0, msg=f"image {i}")


def test_parameters_are_drawn_per_image_within_torchvision_ranges():
    torch.manual_seed(1)
    size, n = 32, 4000
    params = augmentation.draw(n, size, size)
    area = (params.height * params.width).float() / size**2
    ratio = params.width.float() / params.height.float()
    assert bool((params.top >= 0).all() and (params.top + params.height <= size).all())
    assert bool((params.left >= 0).all() and (params.left + params.width <= size).all())
    # Rounding to whole pixels moves area and ratio a little past the ranges drawn from.
    assert area.min() >= 0.05 and area.max() <= 1.0
    assert ratio.min() >= 0.6 and ratio.max() <= 1.6
    for name, low, high in (("brightness", 0.6, 1.4), ("contrast", 0.6, 1.4), ("saturation", 0.6, 1.4)):
        values = getattr(params, name)
        assert low <= float(values.min()) and float(values.max()) <= high
    assert -0.1 <= float(params.hue.min()) and float(params.hue.max()) <= 0.1
    # Independent draws per image, at torchvision's rates (4,000 draws: 5 standard errors).
    for flag, p in ((params.flip, 0.5), (params.jitter, 0.8), (params.grayscale, 0.2)):
        assert abs(float(flag.float().mean()) - p) < 5 * math.sqrt(p * (1 - p) / n)
    # Every one of the 24 orders of the four colour operations turns up.
    assert len({tuple(row) for row in params.order.tolist()}) == 24
    assert sorted(params.order[0].tolist()) == [0, 1, 2, 3]


def test_the_same_seed_gives_the_same_images_and_the_output_stays_in_range():
    images = torch.rand(16, 3, 32, 32)
    torch.manual_seed(3)
    first = augmentation.augment(images)
    torch.manual_seed(3)
    assert torch.equal(augmentation.augment(images), first)
    assert first.shape == images.shape and float(first.min()) >= 0 and float(first.max()) <= 1
    # One image sixteen times: sixteen different results (a draw per image, not one per batch).
    same = augmentation.augment(images[:1].expand(16, -1, -1, -1).contiguous())
    assert len({tuple(image.flatten()[:64].tolist()) for image in same}) == 16
