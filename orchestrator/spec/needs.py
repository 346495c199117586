"""What a sweep's trials need on disk before they run (datasets, models) and whether each is there.

Nothing is fetched at run time, so a dataset or model that is not on disk fails its trials on the
cluster; this finds it first. Torch-free and read-only: it resolves each planned trial's config
as the trial would (trainables.schema), then looks where the loaders will look, through the same
rules (trainables.schema.data for datasets, trainables.model_folders for models). It never
writes, downloads or builds anything. `orchestrator prepare` prints the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from orchestrator.spec.sweep_spec import SweepSpec
from trainables.model_folders import (
    FOUNDATION_FOLDER,
    VAE_FOLDER,
    ModelFolder,
    cached_hub_config,
    holds_model,
    hub_cache_folder,
    hub_download_command,
    is_hub_name,
    local_folder,
)
from trainables.schema import validate_trial_config
from trainables.schema.data import DATASETS, SPLITS, data_root, missing_paths, required_paths, split_layout
from trainables.schema.foundation import EMBEDDED_NAME, RESNET_NAME
from trainables.schema.preprocessor import PREPROCESSOR_KINDS
from trainables.schema.preprocessor import uses_pseudo_labels as preprocessor_uses_pseudo_labels
from trainables.schema.pretraining import uses_pseudo_labels as pretraining_uses_pseudo_labels

PRESENT, MISSING, DOWNLOAD = "present", "MISSING", "download"
KINDS = ("dataset", "foundation", "vae", "pseudo_model")
# Names the trial builds itself (the embedded ViT-MAE is pre-trained on the embedded digits,
# resnet18 starts untrained): nothing to find on disk.
BUILT_MODELS = (EMBEDDED_NAME, RESNET_NAME)


@dataclass
class Need:
    """One input, however many trials need it; `status` is filled in by `check`."""

    kind: str  # one of KINDS
    name: str  # the dataset name, or the model name as the config gives it
    fields: set[str] = field(default_factory=set)  # the config fields that name it
    trials: set[int] = field(default_factory=set)  # grid points (by index) that need it
    sampled: bool = False  # the search's sampled trials may need it
    splits: set[str] = field(default_factory=set)  # datasets only
    root: Path | None = None  # datasets only: the data root it is read from
    allow_download: bool = True  # models: whether every trial needing it may fetch it
    status: str = MISSING
    source: str = ""  # what `where` is: data root, local folder, HF cache; or why nothing is on disk
    where: str = ""  # the path looked at: the data root, the local folder, the hub cache entry
    missing: list[str] = field(default_factory=list)  # the files or folders absent under `where`
    how_to_get: str = ""  # for a missing (or to be downloaded) input

    def count(self, search_trials: int) -> int:
        return len(self.trials) + (search_trials if self.sampled else 0)


@dataclass
class Inputs:
    """Every input a spec's planned trials need, each once, in first-needed order."""

    spec: SweepSpec
    needs: list[Need]

    def count(self, need: Need) -> int:
        return need.count(self.spec.search_trials)

    @property
    def missing(self) -> list[Need]:
        return [need for need in self.needs if need.status == MISSING]

    def summary(self) -> dict[str, int]:
        return {
            "inputs": len(self.needs),
            "trials": self.spec.num_trials,
            **{status: sum(n.status == status for n in self.needs) for status in (PRESENT, MISSING, DOWNLOAD)},
        }

    def as_records(self) -> list[dict[str, Any]]:
        return [
            {
                "status": need.status,
                "kind": need.kind,
                "name": need.name,
                "source": need.source,
                "where": need.where,
                "missing": list(need.missing),
                "trials": self.count(need),
                "fields": sorted(need.fields),
                "how_to_get": need.how_to_get,
            }
            for need in self.needs
        ]


def spec_inputs(spec: SweepSpec) -> Inputs:
    """What `spec`'s trials need and whether each is on disk now."""
    needs: dict[tuple, Need] = {}
    for index, sampled, config in _planned_configs(spec):
        for need in _trial_needs(config):
            key = (need.kind, need.name, need.root)
            kept = needs.setdefault(key, Need(need.kind, need.name, root=need.root))
            kept.fields |= need.fields
            kept.splits |= need.splits
            kept.allow_download = kept.allow_download and need.allow_download
            if sampled:
                kept.sampled = True
            else:
                kept.trials.add(index)
    for need in needs.values():
        check(need)
    return Inputs(spec, list(needs.values()))


def _planned_configs(spec: SweepSpec) -> Iterator[tuple[int, bool, dict]]:
    """(grid index, sampled?, trial config): each grid point, then what the search's sampled trials
    can be. A sampled trial draws each grid axis from its grid values (already among the grid points)
    and each searched parameter from its distribution: only a `choice` can name another input, so
    the base config and one config per choice value cover them (as spec validation checks them)."""
    for index, point in enumerate(spec.grid_points):
        yield index, False, spec.trial_config(point)
    if not spec.search_trials:
        return
    base_point = spec.grid_points[0] if spec.grid_points else {}
    yield -1, True, spec.trial_config(base_point)
    for parameter in spec.search:
        for value in parameter.values:  # empty unless a choice
            yield -1, True, spec.trial_config({**base_point, parameter.key: value})


def _trial_needs(config: dict) -> Iterator[Need]:
    """The inputs one trial config needs, as its stages load them (trainables/trial.py)."""
    cfg = validate_trial_config(config)
    data, foundation, preprocessor = cfg["data"], cfg["foundation"], cfg["preprocessor"]
    root = data_root(data["root"])
    # The trial reads its dataset's train and test splits, and only the train split of the
    # pre-processor's own dataset (transfer studies).
    yield Need("dataset", data["dataset"], {"data.dataset"}, splits=set(SPLITS), root=root)
    if data["preprocessor_dataset"] is not None:
        yield Need("dataset", data["preprocessor_dataset"], {"data.preprocessor_dataset"}, splits={"train"}, root=root)
    # A robustly pre-trained foundation starts from this one too (robust_pretraining.py).
    yield Need(
        "foundation",
        _foundation_name(foundation),
        {"foundation.name"},
        allow_download=bool(foundation["allow_download"]),
    )
    # An embedded foundation other than the shipped digits one is MAE pre-trained on its data set's
    # training split by the first trial that needs it (trainables/foundation.py).
    embedded = foundation.get("embedded") or {}
    if foundation["name"] == EMBEDDED_NAME and embedded.get("dataset", "digits") != "digits":
        yield Need("dataset", embedded["dataset"], {"foundation.embedded.dataset"}, splits={"train"}, root=root)
    pretraining = foundation.get("pretraining")
    # Robust pre-training on another dataset's training split (read with .get: older trees lack it).
    if pretraining is not None and pretraining.get("dataset"):
        yield Need("dataset", pretraining["dataset"], {"foundation.pretraining.dataset"}, splits={"train"}, root=root)
    # Pseudo-label models load as {"name": pseudo_model}: never downloaded (pseudo_labels.py).
    if pretraining is not None and pretraining_uses_pseudo_labels(pretraining) and pretraining["pseudo_model"]:
        yield Need(
            "pseudo_model",
            pretraining["pseudo_model"],
            {"foundation.pretraining.pseudo_model"},
            allow_download=False,
        )
    if preprocessor_uses_pseudo_labels(preprocessor) and preprocessor["pseudo_model"]:
        yield Need("pseudo_model", preprocessor["pseudo_model"], {"preprocessor.pseudo_model"}, allow_download=False)
    # Files a pre-processor kind loads from disk and never downloads (its registry entry's `needs`:
    # vae's `path`, a diffusers model folder), each a need of the kind's own name.
    kind = PREPROCESSOR_KINDS[preprocessor["kind"]]
    for setting in kind.needs:
        yield Need(kind.name, preprocessor[setting], {f"preprocessor.{setting}"}, allow_download=False)


def _foundation_name(foundation: dict) -> str:
    """The foundation as `prepare` lists it: an embedded one with the data set it is pre-trained on."""
    if foundation["name"] != EMBEDDED_NAME:
        return foundation["name"]
    return f"{EMBEDDED_NAME} {(foundation.get('embedded') or {}).get('dataset', 'digits')}"


def check(need: Need) -> None:
    """Fill in `need`'s status, where it was looked for, what is absent and how to get it."""
    if need.kind == "dataset":
        _check_dataset(need)
    else:
        _check_model(need, VAE_FOLDER if need.kind == "vae" else FOUNDATION_FOLDER)


def _check_dataset(need: Need) -> None:
    info = DATASETS[need.name]
    splits = [split for split in SPLITS if split in need.splits]
    if not required_paths(need.name, splits):
        need.status, need.source = PRESENT, "embedded, nothing on disk"
        return
    need.source, need.where = "data root", str(need.root)
    need.missing = [str(path) for path in missing_paths(need.name, need.root, splits)]
    need.status = MISSING if need.missing else PRESENT
    if need.missing:
        need.how_to_get = info.how_to_get
    else:  # which layout the loader will read: arrays (.npz) or torchvision's files, per split
        layouts = dict.fromkeys(split_layout(need.name, need.root, split) for split in splits)
        need.source = f"{' and '.join(layouts)} in data root"


def _check_model(need: Need, kind: ModelFolder) -> None:
    """The rule of trainables.model_folders.locate_model, looked at, not loaded."""
    if need.name == f"{EMBEDDED_NAME} digits":
        need.status, need.source = PRESENT, "shipped with the project at its default settings, else built by the trial"
        return
    if need.name.split(" ")[0] in BUILT_MODELS and need.kind != "vae":
        need.status, need.source = PRESENT, "built by the trial, nothing on disk"
        if need.name.startswith(EMBEDDED_NAME):
            need.source = "pre-trained once by the first trial on its data set's training split, then cached"
        return
    local = local_folder(need.name)
    if local is not None:  # an existing path is never looked up on the hub
        need.source, need.where = "local folder", str(local.absolute())
        if holds_model(local, kind):
            need.status = PRESENT
        else:
            need.status, need.missing = MISSING, [str(local.absolute() / marker) for marker in kind.markers]
            need.how_to_get = f"expected {kind.expected}"
        return
    if not is_hub_name(need.name):  # a path, not there
        need.status, need.source = MISSING, "local folder"
        need.where = str(Path(need.name).expanduser().absolute())
        need.how_to_get = f"no such folder: give {kind.expected}, or a hub name"
        return
    config = cached_hub_config(need.name)
    need.source = "HF cache"
    if config is not None:
        need.status, need.where = PRESENT, str(config.parent)
        return
    need.where = str(hub_cache_folder(need.name))
    if need.allow_download:
        need.status = DOWNLOAD
        need.how_to_get = "fetched by the first trial (allow_download: true; needs network there)"
    else:
        need.status = MISSING
        need.how_to_get = (
            f"`{hub_download_command(need.name)}` on a machine with network fills this cache "
            "(or copy the model to a local folder and name that)"
        )
