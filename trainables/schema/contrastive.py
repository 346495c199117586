"""AdvCL's settings shared by the pre-processor objective and robust foundation pre-training.

View names, cluster ensembles and the FFT radius: parsed and checked here, torch-free, each error
naming the field of the section it came from (preprocessor.views, foundation.pretraining.views).
"""

from __future__ import annotations

from ..errors import ConfigError
from .fields import Field, did_you_mean, integer, is_int, number, optional, text

# AdvCL's contrastive views (its Table 4): x + delta, the two augmentations, the FFT split of x.
VIEWS = ("adversarial", "t1", "t2", "high", "low")
# Lists cannot be grid values in a sweep, so views and cluster ensembles may also be written as
# one string joined by this separator: "adversarial+t1+t2+high", "2+10+50+100+500".
LIST_SEPARATOR = "+"


def advcl_fields(*, pseudo_model_default: str, note: str = "") -> dict[str, Field]:
    """AdvCL's settings as schema fields, for a section that offers them; `note` ends each description."""
    return {
        "views": Field(
            ["adversarial", "t1", "t2", "high"],
            f"a list of at least two distinct views from {list(VIEWS)}, or them joined by '{LIST_SEPARATOR}'{note}",
            lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(name, str) for name in v)),
        ),
        "fft_radius": Field(
            8,
            f"a number > 0 and at most half the image size (low-pass radius of the high/low views; AdvCL: 8){note}",
            number(0, low_open=True),
        ),
        "pseudo_clusters": Field(
            [],
            "a list of distinct cluster numbers K >= 2 (one pseudo-label head each; [] = no "
            f"pseudo-supervision), a single K, or Ks joined by '{LIST_SEPARATOR}'{note}",
            lambda v: is_int(v) or isinstance(v, str) or (isinstance(v, list) and all(is_int(k) for k in v)),
        ),
        "pseudo_lambda": Field(0.2, f"a number >= 0 (weight of the pseudo-label CE; AdvCL: 0.2){note}", number(0)),
        "pseudo_model": Field(
            None,
            f"null ({pseudo_model_default}) or a foundation name: a local folder, a hub name or 'embedded'{note}",
            optional(text),
        ),
        "pseudo_seed": Field(
            0, f"an integer (K-means seed; pseudo-labels are cached per data, model, K and seed){note}", integer()
        ),
    }


ADVCL_SETTINGS = tuple(advcl_fields(pseudo_model_default=""))


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(LIST_SEPARATOR)] if value.strip() else []


def parse_views(given: list[str] | str, field: str = "preprocessor.views") -> list[str]:
    """At least two distinct known view names, in VIEWS order (eq. 5 is symmetric in its views)."""
    names = _split(given) if isinstance(given, str) else list(given)
    for name in names:
        if name not in VIEWS:
            raise ConfigError(field, f"view names from {list(VIEWS)}{did_you_mean(name, list(VIEWS))}", name)
    if len(set(names)) != len(names):
        raise ConfigError(field, "distinct view names (each view once)", given)
    if len(names) < 2:
        raise ConfigError(field, f"at least two views from {list(VIEWS)} (a contrastive loss needs positives)", given)
    return [name for name in VIEWS if name in names]


def parse_clusters(given: list[int] | int | str, field: str = "preprocessor.pseudo_clusters") -> list[int]:
    """Distinct cluster numbers K >= 2, ascending; [] means no pseudo-supervision."""
    if is_int(given):
        clusters = [given]
    elif isinstance(given, str):
        try:
            clusters = [int(part) for part in _split(given)]
        except ValueError:
            raise ConfigError(field, f"integers K >= 2 joined by '{LIST_SEPARATOR}'", given) from None
    else:
        clusters = list(given)
    for k in clusters:
        if k < 2:
            raise ConfigError(field, "cluster numbers K >= 2 (K-means into fewer than 2 clusters labels nothing)", k)
    if len(set(clusters)) != len(clusters):
        raise ConfigError(field, "distinct cluster numbers (one head per K in an ensemble)", given)
    return sorted(clusters)


def check_radius_fits(radius: float, image_size: int, field: str = "preprocessor.fft_radius") -> None:
    """The low-pass disc must fit in the centred spectrum: a larger one leaves x_high (near) empty."""
    if radius > image_size / 2:
        raise ConfigError(
            field,
            f"a radius > 0 and at most half the image size ({image_size / 2:g} for {image_size}px images)",
            radius,
        )


def check_clusters_fit(clusters: list[int], num_images: int, field: str = "preprocessor.pseudo_clusters") -> None:
    """K-means needs at least K training images; checked where the training set is known."""
    for k in clusters:
        if k > num_images:
            raise ConfigError(field, f"cluster numbers K at most the number of training images ({num_images})", k)
