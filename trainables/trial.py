"""One whole trial from a nested config: data -> foundation -> pre-processor -> head -> evaluation.

This is the function the sweep engine wraps as a Ray Tune trainable; it knows nothing of Ray.
Each stage resumes from its own checkpoints, and a finished trial returns its saved result.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import precision, stage_progress
from .artifacts import RESULT_FILE, atomic_write_json, config_hash, count_parameters
from .data import ImageDataset, data_fingerprint, load_dataset, stratified_fraction, validation_split
from .errors import ConfigError, UserError
from .evaluation import evaluate
from .evaluation.validation import validation_metrics
from .foundation import default_cache_root, load_foundation
from .head import build_linear_head, pipeline_features, train_head
from .lora import apply_lora
from .pipeline import Pipeline
from .preprocessors import FittedPreprocessor, fit_preprocessor
from .provenance import compute_identity, weights_digest
from .pseudo_labels import FeatureModel
from .robust_pretraining import at_chance, load_robust_foundation
from .schema.compute import DEFAULT_COMPUTE
from .schema.data import DATASETS
from .schema.evaluation import resolve_evaluation_config
from .schema.preprocessor import PREPROCESSOR_KINDS
from .schema.results import time_column
from .schema.trial import validate_trial_config
from .seeding import seed_everything
from .shared_features import SharedFeatures, sharing_enabled
from .survival import is_random
from .training_loop import EpochCallback


def run_trial(
    config: dict,
    workdir: Path,
    *,
    artifacts: Path | None = None,
    device: str = "cpu",
    on_epoch: EpochCallback | None = None,
) -> dict[str, Any]:
    """Run (or resume, or return the saved result of) the trial described by `config`.

    `workdir` holds this trial's checkpoints and result; `artifacts` (default: workdir) holds
    the pre-processors, shared by every trial of a sweep that trains the same one.
    """
    cfg = validate_trial_config(config)
    workdir = Path(workdir)
    if (workdir / RESULT_FILE).is_file():
        try:
            return json.loads((workdir / RESULT_FILE).read_text())
        except ValueError:  # torn by a crash the atomic write did not cover: evaluate again
            (workdir / RESULT_FILE).rename(workdir / f"{RESULT_FILE}.torn")
    compute = cfg.get("compute", DEFAULT_COMPUTE)
    # Where the trial is inside a stage, for the live display and `orchestrator status` (stage_progress.py).
    with precision.tf32(compute["tf32"]), stage_progress.recording(workdir):
        outcome = _run(cfg, compute, workdir, artifacts, device, on_epoch)
    atomic_write_json(workdir / RESULT_FILE, outcome)
    # Return exactly what a resumed call would read back (tuples become lists in JSON).
    return json.loads((workdir / RESULT_FILE).read_text())


def load_trained_pipeline(
    config: dict, workdir: Path, *, artifacts: Path | None = None, device: str = "cpu"
) -> Pipeline:
    """The images-to-logits model of a finished trial (pre-processor, foundation, head) in eval mode,
    rebuilt from its artifacts and last checkpoints exactly as the trial evaluated it.

    Nothing trains: a trial without a result is refused, and so is one whose checkpoints are gone
    (a stage that would train again stops the rebuild at its first epoch).
    """
    cfg = validate_trial_config(config)
    workdir = Path(workdir)
    if not (workdir / RESULT_FILE).is_file():
        raise UserError(
            f"{workdir}: the trial has not finished (no {RESULT_FILE}); only a finished trial's model loads"
        )
    head_records: list[dict] = []

    def refuse_training(record: dict[str, Any]) -> None:
        # A finished trial's head resumes at its last epoch and says that epoch again, once; any
        # other report is a stage training anew.
        replay = record["stage"] == "head" and record.get("epoch") == record.get("epochs") and not head_records
        if not replay:
            raise UserError(
                f"{workdir}: its {record['stage']} stage would train again (epoch {record.get('epoch')}): "
                "its checkpoints or artifacts are gone, so the trained model cannot be rebuilt"
            )
        head_records.append(record)

    compute = cfg.get("compute", DEFAULT_COMPUTE)
    trained = train_stages(cfg, compute, workdir, artifacts, device, refuse_training)
    return trained.pipeline.eval()


@dataclass
class TrainedTrial:
    """What the training stages leave: the pipeline and what its evaluation needs."""

    pipeline: Pipeline
    test: ImageDataset
    validation: ImageDataset
    shared: SharedFeatures
    evaluation_cfg: dict
    default_eps: float
    fitted: FittedPreprocessor
    head_params: int
    times: dict[str, float] = field(default_factory=dict)
    foundation_digest: str | None = None  # provenance.weights_digest of the foundation as loaded


def _run(cfg, compute: dict, workdir: Path, artifacts: Path | None, device: str, on_epoch) -> dict[str, Any]:
    """The stages, in order, with their times; the trial's outcome."""
    trained = train_stages(cfg, compute, workdir, artifacts, device, on_epoch)
    return _evaluate(cfg, compute, trained, device)


def train_stages(cfg, compute: dict, workdir: Path, artifacts: Path | None, device: str, on_epoch) -> TrainedTrial:
    """Data, foundation, pre-processor and head, each resumed from its checkpoints or artifact: for a
    finished trial nothing trains again, which is how load_trained_pipeline rebuilds its model."""
    training_autocast = compute["autocast"] == "bf16"
    times: dict[str, float] = {}
    started = time.perf_counter()

    data = cfg["data"]
    # The validation split first, from the whole training split, so it is the same images for every
    # data_fraction and seed of a sweep; the fraction is drawn from the rest.
    pool, validation = validation_split(
        load_dataset(data["dataset"], "train", root=data["root"]), data["validation_images"], data["validation_seed"]
    )
    train = stratified_fraction(pool, data["data_fraction"], seed=data["seed"])
    test = load_dataset(data["dataset"], "test", root=data["root"])
    preprocessor_train = train
    if data["preprocessor_dataset"]:
        source = load_dataset(data["preprocessor_dataset"], "train", root=data["root"])
        if source.image_size != train.image_size:
            raise ConfigError(
                "data.preprocessor_dataset",
                f"a dataset of {train.image_size}px images like {data['dataset']}",
                data["preprocessor_dataset"],
            )
        preprocessor_train = stratified_fraction(source, data["data_fraction"], seed=data["seed"])
    default_eps = DATASETS[data["dataset"]].eps
    evaluation_cfg = resolve_evaluation_config(cfg["evaluation"], num_test=len(test), default_eps=default_eps)
    times["data"] = time.perf_counter() - started

    started = time.perf_counter()
    # Robust pre-training (when configured) sees the trial's training images, or the whole training
    # split of foundation.pretraining.dataset, never their labels.
    # Its epochs are this trial's; the embedded MAE pre-training, shared by all trials, is not reported.
    if "pretraining" in cfg["foundation"]:
        pretraining_dataset = cfg["foundation"]["pretraining"].get("dataset")
        pretraining_images = (
            load_dataset(pretraining_dataset, "train", root=data["root"]) if pretraining_dataset else train
        )
        foundation = load_robust_foundation(
            cfg["foundation"], pretraining_images, cache_root=default_cache_root(), device=device, on_epoch=on_epoch
        )
    else:
        foundation = load_foundation(cfg["foundation"], device=device, data_root=data["root"])
    # Which weights, not which config: an embedded foundation built on another CPU is another model.
    foundation_digest = weights_digest(foundation)
    if "lora" in cfg["foundation"]:
        apply_lora(foundation, cfg["foundation"]["lora"])
    times["foundation"] = time.perf_counter() - started
    if foundation.pretraining is not None:  # its cost, also when an earlier trial paid it (paper Table 11)
        times["foundation_pretraining"] = foundation.pretraining["time_s"]

    # With sharing switched off (CROPD_SHARE_STAGES=0, to measure what it saves) every trial trains
    # its own pre-processor in its workdir.
    artifacts = artifacts if artifacts is not None and sharing_enabled() else workdir
    fitted = fit_preprocessor(
        cfg["preprocessor"],
        preprocessor_train,
        artifacts,
        device=device,
        on_epoch=on_epoch,
        foundation=FeatureModel.of_foundation(cfg["foundation"], foundation),
        autocast=training_autocast,
        eps=default_eps,
        validation=validation if len(validation) else None,
    )
    times["preprocessor"] = fitted.time_s

    # The pre-processor enters by its artifact's name (a content hash), never by where the sweep
    # folder lies: the head's seeds derive from this key, and a trial's result must depend on its
    # config alone (an absolute path here made two runs of one spec in two folders differ).
    preprocessor_identity = fitted.path.name if fitted.path is not None else fitted.config
    key = config_hash(
        {
            "head": cfg["head"],
            "foundation": cfg["foundation"],
            "foundation_digest": foundation_digest,
            "preprocessor": preprocessor_identity,
            "data": data_fingerprint(train),
        }
    )
    # Clean features of the training and test images, shared by every trial behind the same
    # pre-processor and foundation (trainables/shared_features.py).
    # Not for a foundation the head stage trains (its features change) nor one that gives logits.
    gives_logits = not PREPROCESSOR_KINDS[fitted.config["kind"]].has_head
    shares = sharing_enabled() and not gives_logits and not any(p.requires_grad for p in foundation.parameters())
    shared = SharedFeatures(
        artifacts if shares else None,
        {
            "foundation": cfg["foundation"],
            "foundation_digest": foundation_digest,
            "preprocessor": _features_identity(fitted),
        },
        torch.nn.ModuleList([fitted.module, foundation]),
        device,
    )
    head = None
    if not gives_logits:
        # Seeded here, not by whatever ran before in this process (a Ray worker runs many trials).
        seed_everything(cfg["head"]["seed"], "head-init", key)
        head = build_linear_head(foundation.feature_dim, train.num_classes)
    pipeline = Pipeline(fitted.module, foundation, head).to(device)
    head_params = 0
    if head is not None:
        result = train_head(
            pipeline,
            train,
            cfg["head"],
            workdir / "head.checkpoints",
            key,
            eps=default_eps,
            device=device,
            on_epoch=on_epoch,
            autocast=training_autocast,
            shared=shared,
        )
        times["head"], head_params = result.time_s, result.params
    else:
        times["head"] = 0.0

    return TrainedTrial(
        pipeline, test, validation, shared, evaluation_cfg, default_eps, fitted, head_params, times, foundation_digest
    )


def _features_identity(fitted: FittedPreprocessor) -> str | dict:
    """What names the pre-processor in the shared features' key: a trained one's artifact name; an
    untrained one's config without its seed. The key also holds a digest of the weights, so a seed
    that draws other weights still gives another key, while Identity's rows of several seeds (no
    weights at all) share their test features."""
    if fitted.path is not None:
        return fitted.path.name
    return {name: value for name, value in fitted.config.items() if name != "seed"}


def _evaluate(cfg, compute: dict, trained: TrainedTrial, device: str) -> dict[str, Any]:
    pipeline, test, shared, times = trained.pipeline, trained.test, trained.shared, trained.times
    evaluation_cfg, default_eps, fitted, head_params = (
        trained.evaluation_cfg,
        trained.default_eps,
        trained.fitted,
        trained.head_params,
    )
    foundation = pipeline.foundation
    natural_started = time.perf_counter()
    natural_logits = _natural_logits(pipeline, test, shared, device, compute)
    natural_s = time.perf_counter() - natural_started
    with precision.autocast(device, compute["evaluation_autocast"]):
        metrics = evaluate(
            precision.compiled(pipeline, compute["compile"]),
            test.float_images(),
            test.labels,
            evaluation_cfg,
            num_classes=test.num_classes,
            default_eps=default_eps,
            device=device,
            natural_logits=natural_logits,
        )
        # The same pipeline on the validation split: what the sweep selects on (never the test set).
        metrics["validation_split"] = data_fingerprint(trained.validation)  # which images, checkable
        metrics.update(
            validation_metrics(
                precision.compiled(pipeline, compute["compile"]),
                trained.validation.float_images(),
                trained.validation.labels,
                evaluation_cfg,
                num_classes=test.num_classes,
                default_eps=default_eps,
                device=device,
            )
        )
    if compute["evaluation_autocast"]:
        # bf16 rounds the logits and the input gradients: its attacks are weaker than fp32's.
        metrics["integrity_flags"] = sorted({*metrics["integrity_flags"], "attacked_in_bf16"})
    if foundation.pretraining is not None and at_chance(foundation.pretraining):
        # The robust pre-training ended where a collapsed encoder would: its robustness is not the method's.
        metrics["integrity_flags"] = sorted({*metrics["integrity_flags"], "pretraining_at_chance"})
    # The natural pass, when it ran here on shared features, is part of the evaluation's time.
    times["evaluation"] = (
        metrics.pop(time_column("evaluation"), math.nan) + natural_s + metrics[time_column("validation")]
    )
    metrics[time_column("natural")] = metrics.get(time_column("natural"), 0.0) + natural_s
    outcome = {
        **metrics,
        **{time_column(stage): seconds for stage, seconds in times.items()},
        "params_preprocessor": fitted.params,
        "params_foundation": count_parameters(foundation),
        "params_foundation_trained": count_parameters(foundation, trainable_only=True),
        "params_head": head_params,
        "preprocessor_reused": fitted.reused,
        # Which clean feature sets came from an earlier trial ("train", "test").
        "features_reused": sorted(name for name, reused in shared.reused.items() if reused),
        # What computed it (also at the defaults, where the config has no compute section).
        **{f"compute_{name}": value for name, value in compute.items()},
        # Which foundation weights and which hardware: a report refuses to pair rows on different
        # foundations and warns about rows from different compute (orchestrator/analysis/provenance.py).
        "foundation_digest": trained.foundation_digest,
        **compute_identity(device),
    }
    return outcome


def _natural_logits(pipeline: Pipeline, test, shared: SharedFeatures, device: str, compute: dict):
    """head(shared test features), or None where the evaluation must run the pipeline itself: no
    head (the pre-processor gives logits), a foundation the head stage fine-tuned (its weights are
    no longer the ones the features were keyed by), an evaluation under autocast, or a foundation
    that masks at random (its features are a draw)."""
    if pipeline.head is None or compute["evaluation_autocast"] or is_random(pipeline):
        return None  # a randomly masking foundation: the evaluation draws its own masks per point
    if any(p.requires_grad for p in pipeline.foundation.parameters()):
        return None
    features = shared.of("test", test, lambda: pipeline_features(pipeline, test, device))
    with torch.no_grad():
        return pipeline.head(features.to(device))
