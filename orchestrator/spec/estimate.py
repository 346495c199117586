"""What a sweep would run and cost, before any GPU-hour is spent (`orchestrator plan`).

From the spec alone (torch-free, nothing written): the planned trials; the stages they share, each
counted once as the sweep runs it once (a robust pre-training, a pre-processor artifact, a set of
clean features); and an estimate of every stage from the stage times that earlier sweeps recorded
in their results rows (`time_<stage>_s`), found by the nearest matching settings:

- the candidates are earlier trials that ran the same kind of stage (a pre-processor of the same
  kind, a head of the same mode on a foundation used the same way, an evaluation with the same
  attacks), and the one sharing most of the stage's other settings is taken;
- its time is scaled by the work: epochs x training images for training stages, test points for
  the evaluation. Nothing else is scaled: an estimate from embedded CPU sweeps for a ViT-L on a GPU
  says which sweep and device it comes from, and is only as good as that;
- a stage no earlier trial ran says so, and the total says how many stages it leaves out.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.spec.sweep_spec import SweepSpec
from orchestrator.store.rows import flatten_config
from trainables.schema import results, validate_trial_config
from trainables.schema.data import SPLIT_SIZES
from trainables.schema.preprocessor import PREPROCESSOR_KINDS, artifact_key_config

# A plan's stages are the cost table's (trainables/schema/results.py: COST_STAGES), in the order a
# trial runs them, and called by their labels, as the plan prints them: "foundation pre-training" ...
PRETRAINING = results.stage("foundation_pretraining").label
PREPROCESSOR = results.stage("preprocessor").label
HEAD = results.stage("head").label
EVALUATION = results.stage("evaluation").label
STAGE_KINDS = tuple(results.stage(name).label for name in results.COST_STAGES)
# Where earlier rows recorded each stage's seconds.
TIME_COLUMNS = {results.stage(name).label: results.stage(name).column for name in results.COST_STAGES}
# The setting that counts a training stage's epochs (its work is epochs x training images).
EPOCH_SETTINGS = {
    PREPROCESSOR: "preprocessor.epochs",
    HEAD: "head.epochs",
    PRETRAINING: "foundation.pretraining.epochs",
}


@dataclass
class Stage:
    """One unit of work, however many planned trials share it."""

    kind: str  # one of STAGE_KINDS: foundation pre-training | pre-processor | head | evaluation
    label: str
    work: float  # image-epochs (training) or test points (evaluation): what the estimate scales by
    match: dict[str, Any]  # settings an earlier trial is matched on; the first `required` must be equal
    trials: int = 0
    required: int = 1
    estimate_s: float | None = None
    basis: str = "no earlier trial ran such a stage"
    config: dict | None = field(default=None, repr=False)  # the validated config of a trial that runs it


@dataclass
class Plan:
    spec: SweepSpec
    stages: list[Stage] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        return sum(stage.estimate_s or 0.0 for stage in self.stages)

    @property
    def unestimated(self) -> int:
        return sum(stage.estimate_s is None for stage in self.stages)


def _train_images(data: dict) -> float | None:
    sizes = SPLIT_SIZES.get(data["dataset"])
    return None if sizes is None else sizes[0] * data["data_fraction"]


def trial_stages(config: dict) -> list[tuple[str, Stage]]:
    """(sharing key, stage) of one trial's stages; equal keys are one stage run once."""
    data, foundation, pre, head, evaluation = (
        config["data"],
        config["foundation"],
        config["preprocessor"],
        config["head"],
        config["evaluation"],
    )
    images = _train_images(data) or math.nan
    flat = flatten_config(config)  # matched against earlier rows by their own column names

    def settings(*columns: str) -> dict[str, Any]:
        return {column: flat.get(column) for column in columns}

    stages = []
    if "pretraining" in foundation:
        pretraining = foundation["pretraining"]
        source = pretraining.get("dataset")
        # An arrays: dataset's size is unknown before it is read: no estimate (NaN), as for `images`.
        pretrain_images = SPLIT_SIZES.get(source, (math.nan,))[0] if source else images
        key = json.dumps({k: v for k, v in foundation.items() if k != "mode"}, sort_keys=True, default=str)
        stage = Stage(
            PRETRAINING,
            f"{pretraining['method']} of {foundation['name']}, {pretraining['epochs']} epochs",
            pretraining["epochs"] * pretrain_images,
            settings("foundation.pretraining.method", "foundation.name", "foundation.pretraining.batch_size"),
        )
        stages.append(("pretraining " + key, stage))
    kind = PREPROCESSOR_KINDS[pre["kind"]]
    if kind.trained:
        key = json.dumps(
            [data["dataset"], data["data_fraction"], artifact_key_config(pre)], sort_keys=True, default=str
        )
        stage = Stage(
            PREPROCESSOR,
            f"{kind.label(pre)} on {data['dataset']}, {pre['epochs']} epochs",
            pre["epochs"] * images,
            settings("preprocessor.kind", "dataset", "preprocessor.arch", "preprocessor.batch_size"),
        )
        stages.append(("preprocessor " + key, stage))
    test_points = evaluation.get("n_examples") or (SPLIT_SIZES.get(data["dataset"], (0, math.nan))[1])
    trial_key = json.dumps(config, sort_keys=True, default=str)
    if kind.has_head:  # a kind that gives logits trains its own linear layer with it
        stages.append(
            (
                "head " + trial_key,
                Stage(
                    HEAD,
                    f"{head['mode']} head behind {pre['kind']}, foundation {foundation['mode']}, "
                    f"{head['epochs']} epochs",
                    head["epochs"] * images,
                    settings("head.mode", "foundation.mode", "foundation.name", "preprocessor.kind", "dataset"),
                    required=2,  # a head on cached features and a fine-tuned ViT are different work
                ),
            )
        )
    attacks = ",".join(sorted(evaluation.get("attacks") or []))  # for the label
    stages.append(
        (
            "evaluation " + trial_key,
            Stage(
                EVALUATION,
                f"{attacks or results.NATURAL} through {pre['kind']} on "
                + (f"{test_points} points" if math.isfinite(test_points) else "all test points (how many: unknown)"),
                test_points,
                settings("evaluation.attacks", "foundation.name", "preprocessor.kind", "dataset"),
            ),
        )
    )
    for _, stage in stages:
        stage.config = config  # what a device's measured rates cost it from (device_costs.py)
    return stages


def planned_stages(spec: SweepSpec) -> Plan:
    """The spec's stages, shared ones once. A search's sampled trials are planned at the base trial
    (their sampled values are not known yet), each with stages of its own."""
    plan = Plan(spec)
    by_key: dict[str, Stage] = {}
    configs = [spec.trial_config(point) for point in spec.grid_points]
    configs += [spec.trial_config({})] * spec.search_trials
    for index, raw in enumerate(configs):
        sampled = index >= len(spec.grid_points)
        for key, stage in trial_stages(validate_trial_config(raw)):
            key = f"{key} sample {index}" if sampled else key
            if key not in by_key:
                by_key[key] = stage
                plan.stages.append(stage)
            by_key[key].trials += 1
    return plan


def history_rows(folders: list[Path]) -> list[dict[str, Any]]:
    """Finished trial rows of the sweeps in (or under) `folders`, each marked with its sweep."""
    from orchestrator.store.paths import SweepPaths
    from orchestrator.store.query import load_trials

    sweeps = []
    for folder in folders:
        if SweepPaths(folder).state.is_file():
            sweeps.append(folder)
        elif folder.is_dir():
            sweeps += sorted(p for p in folder.iterdir() if SweepPaths(p).state.is_file())
    rows = []
    for sweep in sweeps:
        try:
            trials = load_trials(sweep)
        except Exception:  # an unreadable sweep is no history; `orchestrator status` names its files
            continue
        for row in trials.to_dict("records"):
            if row.get("status") == results.TrialStatus.TERMINATED:
                rows.append({**row, "_sweep": sweep.name})
    return rows


def _row_work(stage: Stage, row: dict[str, Any]) -> float | None:
    def number(key: str) -> float | None:
        value = row.get(key)
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)

    if stage.kind == EVALUATION:
        return number(results.count_column(results.NATURAL))
    dataset = row.get("dataset")
    fraction = number("data_fraction")
    if dataset not in SPLIT_SIZES or fraction is None:
        return None
    images = SPLIT_SIZES[dataset][0] * fraction
    epochs = EPOCH_SETTINGS[stage.kind]
    if stage.kind == PRETRAINING and row.get("foundation.pretraining.dataset") in SPLIT_SIZES:
        images = SPLIT_SIZES[row["foundation.pretraining.dataset"]][0]
    count = number(epochs)
    return None if count is None else count * images


def _matches(stage: Stage, row: dict[str, Any]) -> int | None:
    """How many of the stage's settings the row shares; None when one of the required ones (the
    stage's kind: a pre-processor's, a head's mode and the foundation's use) differs."""
    values = [_matches_value(row, key) for key in stage.match]
    wanted = [_matches_value(stage.match, key) for key in stage.match]
    if values[: stage.required] != wanted[: stage.required]:
        return None
    return sum(_same(a, b) for a, b in zip(values, wanted))


def _as_list(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
            return [str(v) for v in parsed] if isinstance(parsed, list) else [value]
        except ValueError:
            return [value]
    return [str(v) for v in value]


def _same(a: Any, b: Any) -> bool:
    try:
        return a == b or float(a) == float(b)
    except (TypeError, ValueError):
        return False


# The parts device_costs.stage_seconds names, per stage kind of a plan.
DEVICE_PARTS = {
    PRETRAINING: ("pretraining",),
    PREPROCESSOR: ("preprocessor",),
    HEAD: ("features", "head"),
    EVALUATION: ("evaluation", "autoattack"),
}


def ran_on(row: dict[str, Any], device: str) -> bool:
    """Whether an earlier trial row ran on `device` (a kind: 'h200' matches 'NVIDIA H200')."""
    return device.lower() in str(row.get("device_name") or "").lower()


def estimate(plan: Plan, rows: list[dict[str, Any]], device: str | None = None) -> Plan:
    """Fill each stage's estimate from the nearest matching earlier trial, scaled by its work.

    `device` (a kind with measured rates: device_costs.DEVICES): only earlier trials that ran on
    it count, and a stage none of them ran is costed from the device's measured rates instead."""
    if device is not None:
        rows = [row for row in rows if ran_on(row, device)]
    _from_history(plan, rows)
    if device is not None:
        _from_rates(plan, device)
    return plan


def _from_rates(plan: Plan, device: str) -> None:
    from orchestrator.spec.device_costs import Rates, stage_seconds

    rates = Rates.of_device(device)
    for stage in plan.stages:
        if stage.estimate_s is not None or stage.config is None:
            continue
        parts = {
            name: seconds
            for name, seconds in stage_seconds(stage.config, rates).items()
            if name.split(" (")[0] in DEVICE_PARTS[stage.kind]
        }
        if parts:
            stage.estimate_s = float(sum(parts.values()))
            stage.basis = f"{rates.source}: " + ", ".join(f"{name} {s:,.0f} s" for name, s in parts.items())
        else:
            stage.basis = f"no earlier trial on {device} ran such a stage, and its rates do not cost it"


def _from_history(plan: Plan, rows: list[dict[str, Any]]) -> None:
    for stage in plan.stages:
        column = TIME_COLUMNS[stage.kind]
        # The most settings in common; among equals the most work measured, where fixed costs
        # (start-up, the first epoch's caches) weigh least in the time scaled up.
        best: tuple[int, float, dict] | None = None
        for row in rows:
            seconds = row.get(column)
            if seconds is None or not (isinstance(seconds, (int, float)) and seconds > 0 and math.isfinite(seconds)):
                continue
            if stage.kind == PREPROCESSOR and row.get("preprocessor_reused") is True:
                continue  # its time is a load, not the training
            score, work = _matches(stage, row), _row_work(stage, row)
            if score is None or not work:
                continue
            if best is None or (score, work) > best[:2]:
                best = (score, work, row)
        if best is None or not math.isfinite(stage.work):
            continue
        score, work, row = best
        scale = stage.work / work
        stage.estimate_s = row[column] * scale
        missed = [key for key in stage.match if not _same(_matches_value(row, key), _matches_value(stage.match, key))]
        stage.basis = (
            f"{row['_sweep']}/{row['config_hash'][:8]} on {row.get('device_name') or row.get('device') or '?'}: "
            f"{row[column]:.0f} s "
            f"x {scale:.3g} (work {stage.work:,.0f} / {work:,.0f}); "
            + (f"differs in {', '.join(missed)}" if missed else "same settings")
        )


def _matches_value(row: dict[str, Any], key: str) -> Any:
    if key == "evaluation.attacks":
        return ",".join(sorted(_as_list(row.get(key))))
    return row.get(key)
