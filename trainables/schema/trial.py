"""A whole trial config checked once, at the edge: every section resolved, then frozen.

`validate_trial_config` is the only place a trial's config is resolved. The stages receive the
frozen sections it returns (trainables.schema.fields.Resolved) and never resolve them again;
given a frozen trial it returns it as it is, so a caller that validated already pays nothing.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .compute import DEFAULT_COMPUTE, resolve_compute_config
from .data import DATA_SCHEMA, DATASET_NAMES, DATASETS, VALIDATION_IMAGES, is_dataset_name
from .evaluation import check_evaluation_config
from .fields import Resolved, frozen, resolve
from .foundation import resolve_foundation_config
from .head import resolve_head_config
from .preprocessor import resolve_preprocessor_config

SECTIONS = ("data", "foundation", "preprocessor", "head", "evaluation", "compute")


def validate_trial_config(config: Any) -> Resolved:
    """Every section checked before any work starts; returns the complete resolved config, read-only.

    The evaluation section is kept as given (checked here): its eps and counts are completed
    against the dataset and its test set when the trial runs (resolve_evaluation_config).
    """
    if isinstance(config, Resolved):
        return config
    if not isinstance(config, dict):
        raise ConfigError("trial", "a mapping with sections " + ", ".join(SECTIONS), type(config).__name__)
    for section in config:
        if section not in SECTIONS:
            raise ConfigError(section, f"one of the sections {list(SECTIONS)}", "unknown section")
    data = resolve("data", config.get("data"), DATA_SCHEMA)
    for field_name in ("dataset", "preprocessor_dataset"):
        if data[field_name] is not None and not is_dataset_name(data[field_name]):
            raise ConfigError(f"data.{field_name}", DATASET_NAMES, data[field_name])
    info = DATASETS[data["dataset"]]  # an arrays: dataset's image size is None: unknown until loaded
    # Resolved here, so the count is part of the trial's hash; an arrays: dataset's stays null, its
    # rule (data.arrays_validation_images) applied to its training split when it is loaded.
    if data["validation_images"] is None and data["dataset"] in VALIDATION_IMAGES:
        data["validation_images"] = VALIDATION_IMAGES[data["dataset"]]
    source = data["preprocessor_dataset"]
    source_size = None if source is None else DATASETS[source].image_size
    if None not in (source_size, info.image_size) and source_size != info.image_size:
        raise ConfigError(
            "data.preprocessor_dataset", f"a dataset of {info.image_size}px images like {data['dataset']}", source
        )
    foundation = resolve_foundation_config(config.get("foundation"), image_size=info.image_size)
    preprocessor = resolve_preprocessor_config(
        config.get("preprocessor"), image_size=info.image_size, default_eps=info.eps
    )
    head = resolve_head_config(config.get("head"), foundation_mode=foundation["mode"])
    evaluation = config.get("evaluation")
    check_evaluation_config(evaluation)
    compute = resolve_compute_config(config.get("compute"))
    # At its defaults the section is left out: the configs (and hashes) of trials from before it stay.
    optional = {"compute": compute} if compute != DEFAULT_COMPUTE else {}
    return frozen(
        {
            "data": data,
            "foundation": foundation,
            "preprocessor": preprocessor,
            "head": head,
            "evaluation": dict(evaluation or {}),
            **optional,
        }
    )
