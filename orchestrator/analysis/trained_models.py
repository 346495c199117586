"""Trained models out of a sweep: `load_pipeline(sweep, trial)` and `export_trial(...)`.

A finished trial leaves its pre-processor in the sweep's artifact store, its foundation in the
model cache, and its head (and a fine-tuned foundation) in its last epoch checkpoint.
trainables.trial.load_trained_pipeline rebuilds the images-to-logits module from those, exactly as
the trial evaluated it; nothing trains again.

An export is a folder a third party loads with one call and no code of ours:

    model = torch.export.load("DIR/model.pt2").module()    # images in [0, 1], (N, 3, H, W) -> logits

`model.pt2` is a torch.export program of the whole pipeline (any batch size, differentiable, so
adaptive attacks run against it). `model_card.json` says what it is: dataset and classes, the
threat model and eps, clean and robust accuracies with the number of test points behind each and
their 95% intervals, the integrity flags, the trial's config and its results row.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from orchestrator.store.paths import SweepPaths
from trainables.errors import UserError
from trainables.schema.results import ACCURACY_NAMES, TrialStatus, accuracy_column, count_column, interval_columns

MODEL_FILE = "model.pt2"
CARD_FILE = "model_card.json"


def find_trial(sweep_dir: Path, trial: str) -> dict[str, Any]:
    """The results row of `trial`: a config hash (or a prefix of one, as `orchestrator status`
    prints) or a Ray trial id. Exactly one finished trial must match."""
    from orchestrator.store.counts import started_trials
    from orchestrator.store.query import load_trials

    rows = load_trials(sweep_dir)
    matches = rows[(rows["config_hash"].str.startswith(trial)) | (rows["trial_id"] == trial)] if len(rows) else rows
    if not len(matches):
        # A trial that started has a folder but no row until it ends: say so, not "no trial".
        started = [key for key in started_trials(sweep_dir, rows) if key.startswith(trial)]
        if started:
            raise UserError(
                f"{sweep_dir}: trial {started[0][:8]} has not finished (running, or interrupted before its "
                "result); its model exists once it has"
            )
        if not len(rows):
            raise UserError(f"{sweep_dir}: no trial results (is it a sweep folder?)")
        raise UserError(f"{sweep_dir}: no trial {trial!r} (give a config hash or its first characters, or a trial id)")
    if matches["config_hash"].nunique() > 1:
        raise UserError(
            f"{sweep_dir}: {trial!r} matches {matches['config_hash'].nunique()} trials; give more of the hash"
        )
    row = matches.iloc[-1].to_dict()
    if row["status"] != TrialStatus.TERMINATED:
        raise UserError(
            f"{sweep_dir}: trial {row['config_hash'][:8]} did not finish ({row['status']}); no model to load"
        )
    return row


def load_pipeline(sweep: str | Path, trial: str, *, device: str = "cpu"):
    """The trained images-to-logits module of one finished trial, in eval mode (torch.nn.Module)."""
    sweep_dir = Path(sweep)
    row = find_trial(sweep_dir, trial)
    return _load(sweep_dir, row["config_hash"], trial_config(sweep_dir, row), device)


def trial_config(sweep_dir: Path, row: dict[str, Any]) -> dict[str, Any]:
    """The nested config the trial ran with (its workdir's config.json)."""
    return json.loads(SweepPaths(sweep_dir).trial_config(row["config_hash"]).read_text())["config"]


def _load(sweep_dir: Path, key: str, config: dict[str, Any], device: str):
    from trainables.trial import load_trained_pipeline

    paths = SweepPaths(sweep_dir)
    return load_trained_pipeline(config, paths.workdir(key), artifacts=paths.artifacts, device=device)


def dataset_entry(config: dict[str, Any]):
    """The trial's dataset entry (trainables.schema.data.DatasetInfo); an arrays: dataset's class
    count and image size read from its train.npz under the trial's data root."""
    from trainables.schema.data import DATASETS, arrays_folder

    name = config["data"]["dataset"]
    if arrays_folder(name) is None:
        return DATASETS[name]
    from trainables.data import dataset_info

    return dataset_info(name, config["data"].get("root"))


def model_card(row: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    dataset = config["data"]["dataset"]
    info = dataset_entry(config)
    accuracies = {}
    for name in ACCURACY_NAMES:  # natural, then each attack, as the row names them
        value = row.get(accuracy_column(name))
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        accuracies[name] = {
            "accuracy": value,
            "test_points": int(row[count_column(name)]),  # AutoAttack's subset is often smaller than natural's
            "ci95": [row.get(column) for column in interval_columns(name)],
        }
    flags = row.get("integrity_flags")
    return {
        "model": MODEL_FILE,
        "load": f"torch.export.load('{MODEL_FILE}').module()",
        "input": f"float32 images in [0, 1], shape (N, 3, {info.image_size}, {info.image_size}); output: logits",
        "dataset": {"name": dataset, "title": info.title, "classes": info.num_classes},
        "threat_model": {"norm": "Linf", "eps": row.get("eps")},
        "accuracy": accuracies,
        "integrity_flags": list(flags) if flags is not None and not isinstance(flags, str) else flags or [],
        "sweep": row.get("sweep"),
        "trial_id": row.get("trial_id"),
        "config_hash": row["config_hash"],
        "config": config,
        "results_row": row,
    }


def export_trial(sweep: str | Path, trial: str, out: str | Path) -> Path:
    """Write `out`/model.pt2 and `out`/model_card.json for one finished trial; returns `out`.

    Written into a scratch folder beside `out` and renamed into place, so an interrupted export
    leaves no half-written folder; an existing `out` is refused, never overwritten.
    """
    import shutil
    import uuid

    import torch

    out = Path(out)
    if out.exists():
        raise UserError(f"{out}: exists; export into a new folder")
    sweep_dir = Path(sweep)
    row = find_trial(sweep_dir, trial)  # once: the results are read, and the config, for both uses
    config = trial_config(sweep_dir, row)
    pipeline = _load(sweep_dir, row["config_hash"], config, "cpu")
    image_size = dataset_entry(config).image_size
    example = torch.rand(2, 3, image_size, image_size)
    try:
        program = torch.export.export(pipeline, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    except Exception as err:  # torch.export names what it cannot trace; one line of it
        raise UserError(f"{out}: torch.export could not trace this trial's model ({type(err).__name__})") from err
    out.parent.mkdir(parents=True, exist_ok=True)
    # mkdir, not mkdtemp: the folder gets the user's umask (mkdtemp's 0700 would hide it from a
    # third party on a shared filesystem).
    scratch = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    scratch.mkdir()
    try:
        torch.export.save(program, scratch / MODEL_FILE)
        card = _plain(model_card(row, config))
        (scratch / CARD_FILE).write_text(json.dumps(card, indent=2, allow_nan=False) + "\n")
        scratch.rename(out)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return out


def _plain(value: Any) -> Any:
    """Strict JSON values: a missing number (NaN) as null, timestamps as ISO text, numpy scalars and
    arrays as numbers and lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
