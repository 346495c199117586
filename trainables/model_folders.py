"""Where a model named in a config lives: an existing local folder, or a hub name in the local Hugging Face cache.

One rule for every model a trial loads by name (the foundation, a pseudo-label model, the VAE
pre-processor), and for `orchestrator prepare`, which checks the same places without loading.
Free of torch; huggingface_hub is imported only when a hub name is looked up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

# What a hub snapshot needs for loading (configs and weights), not the whole repository.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.bin"]
IN_HUB_CACHE = "an existing local folder, or a hub name already in the local HuggingFace cache"
RESNET_FILE = "resnet.json"  # marks a saved ResNet foundation folder (a ViT-MAE one has config.json)


@dataclass(frozen=True)
class ModelFolder:
    """What a local folder of one kind of model must hold: one of `markers`, as `expected` says."""

    markers: tuple[str, ...]
    expected: str


FOUNDATION_FOLDER = ModelFolder(
    ("config.json", RESNET_FILE),
    f"a folder holding a ViT-MAE saved with save_pretrained (config.json missing) or a saved ResNet ({RESNET_FILE})",
)
VAE_FOLDER = ModelFolder(("config.json",), "a local folder holding a diffusers AutoencoderKL (config.json and weights)")


def local_folder(name: str) -> Path | None:
    """The path `name` names when it exists; such a name is never looked up on the hub."""
    path = Path(name).expanduser()
    return path if path.exists() else None


def holds_model(folder: Path, kind: ModelFolder) -> bool:
    """Whether `folder` holds one of the files that say it is a model of `kind`."""
    return any((folder / marker).is_file() for marker in kind.markers)


def locate_model(name: str, kind: ModelFolder, *, field: str, allow_download: bool = False, hint: str = "") -> Path:
    """The folder to load `name` from: the local folder itself (holding a model of `kind`), else
    the hub snapshot in the local HF cache, fetched first only when `allow_download`.

    A ConfigError names `field`: `kind.expected` for a folder without its marker file, otherwise
    that a local folder or a cached hub name was expected, followed by `hint`.
    """
    local = local_folder(name)
    if local is not None:
        if not holds_model(local, kind):
            raise ConfigError(field, kind.expected, str(local))
        return local
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, local_files_only=not allow_download, allow_patterns=HUB_PATTERNS))
    except Exception as exc:  # offline misses and malformed names raise several hub error types
        raise ConfigError(field, f"{IN_HUB_CACHE}{hint}", name) from exc


def is_hub_name(name: str) -> bool:
    """Whether `name` can be a hub repository id ("org/name"); a path such as /models/vit cannot."""
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except ValueError:  # HFValidationError
        return False
    return True


def cached_hub_config(name: str) -> Path | None:
    """The cached config.json of hub model `name`, or None when the local HF cache lacks it.

    Reads the cache only (the layout models--ORG--NAME/{refs/main, snapshots/<commit>/}): no
    network, nothing written; the cache is where huggingface_hub looks ($HF_HUB_CACHE, $HF_HOME/hub).
    """
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(name, "config.json")
    except (ValueError, OSError):  # a name that cannot be a repository id (HFValidationError is a ValueError)
        return None
    return Path(found) if isinstance(found, str) else None


def hub_cache_folder(name: str) -> Path:
    """Where the local HF cache keeps hub model `name` (whether or not it is there)."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    return Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=name, repo_type="model")


def hub_download_command(name: str) -> str:
    """The command that puts hub model `name` into the local cache (the `hf` CLI of huggingface_hub)."""
    return f"hf download {name}"
