"""What a pre-processor config may say: the registry of kinds and their settings.

The auto-encoder's architecture (presets, settings, what must fit the image size) is in
architecture.py; ARCH_PRESETS, ARCH_SCHEMA and check_arch_fits are importable from here too.

Validated before any training starts (lambda < 0, tau <= 0, eps < 0, unknown keys ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import ConfigError

# ARCH_SCHEMA and check_arch_fits re-exported: the pre-processor's settings, where callers look for them.
from .architecture import ARCH_PRESETS, ARCH_SCHEMA, check_arch_fits, resolve_arch  # noqa: F401
from .contrastive import ADVCL_SETTINGS, advcl_fields, check_radius_fits, parse_clusters, parse_views
from .contrastive import check_clusters_fit as check_clusters_fit_images
from .fields import Field, Resolved, boolean, integer, is_int, number, one_of, optional, resolve, text
from .references import imported


def _mapping_or_none(value: Any) -> bool:
    return value is None or isinstance(value, Mapping)


_TRAINING = ("epochs", "batch_size", "batch_size_schedule", "lr", "weight_decay", "warmup_epochs", "seed")


@dataclass(frozen=True)
class PreprocessorKind:
    """Everything that makes a pre-processor kind, in one entry.

    `relevant`: the settings that change what the kind computes: its artifact's identity (so an
    identity pre-processor is one artifact whatever lambda says). `builder` and `step` name its
    torch side as "module:function", imported only when the kind is used (vae's diffusers).
    `builder(cfg, image_size, num_classes)` gives the module; `step(model, x, targets, cfg)` one
    training step's named losses ("loss" is optimised), None for a kind that is not trained.
    `augments`: the training loop applies Table 5's augmentations (when `augment: true`).
    `own_settings`: settings only this kind has; another kind's resolved config holds them only
    where given, so the configs and trial hashes of the kinds that existed before stay as they were.
    `report_rank`: the row order of the paper's tables.
    `output`: what its module gives, "images" (the foundation and a linear head follow) or
    "logits" (it is the classifier: no head stage, and no shared clean features).
    `needs`: its settings that name files it loads from disk and never downloads (setting -> what
    must be there); a config without them is refused, and `orchestrator prepare` checks them.
    `targets`: what its training step learns each image against: "labels", or "pseudo_labels"
    (K-means clusters of a foundation's features, when pseudo_clusters and pseudo_lambda ask for them).
    `label_settings`: settings named in its short label (`label(cfg)`: "cropd lambda 1.0").
    `reference_rank`: its preference as the default reference of paired differences (lowest
    first; None: never the default).
    """

    name: str
    relevant: tuple[str, ...]
    builder: str
    step: str | None = None
    augments: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
    own_settings: tuple[str, ...] = ()
    report_rank: int = 99
    output: str = "images"
    needs: Mapping[str, str] = field(default_factory=dict)
    targets: str = "labels"
    label_settings: tuple[str, ...] = ()
    reference_rank: int | None = None

    @property
    def trained(self) -> bool:
        return self.step is not None

    @property
    def has_head(self) -> bool:
        """Whether a linear head is trained behind it (not for a kind that gives logits itself)."""
        return self.output == "images"

    def label(self, cfg: Mapping[str, Any]) -> str:
        """Its short name in sentences and plans: the kind, and the values of its label settings."""
        return self.name + "".join(f" {key} {cfg[key]}" for key in self.label_settings)

    def build(self, cfg: Mapping[str, Any], image_size: int, num_classes: int):
        return imported(self.builder)(cfg, image_size, num_classes)

    def training_step(self):
        return imported(self.step)


_PRE = "trainables.preprocessors"
_REGISTRY = (
    PreprocessorKind("identity", ("kind",), f"{_PRE}.simple:build_identity", report_rank=0, reference_rank=1),
    PreprocessorKind(
        "vanilla",
        ("kind", "arch", *_TRAINING, "augment"),
        f"{_PRE}.masked_autoencoder:build_autoencoder",
        f"{_PRE}.objectives:vanilla_step",
        augments=True,
        report_rank=1,
        reference_rank=0,  # CRoPD without its contrastive term: the paper's baseline
    ),
    PreprocessorKind(
        "cropd",
        ("kind", "arch", *_TRAINING, "augment", "lambda", "temperature", "eps", "fgsm_random_start"),
        f"{_PRE}.masked_autoencoder:build_autoencoder",
        f"{_PRE}.objectives:cropd_step",
        augments=True,
        report_rank=5,
        label_settings=("lambda",),
    ),
    # ARAE trains without augmentation (rohban-lab's code). arae_attack is its own setting: the
    # other kinds' configs and hashes stay as they were; it is always in ARAE's, so an artifact
    # trained by PGD (the default before the setting existed) is never reused as an FGSM one.
    PreprocessorKind(
        "arae",
        ("kind", "arch", *_TRAINING, "eps", "gamma", "arae_attack", "attack_steps", "attack_step_size"),
        f"{_PRE}.masked_autoencoder:build_autoencoder",
        f"{_PRE}.objectives:arae_step",
        own_settings=("arae_attack",),
        report_rank=3,
    ),
    PreprocessorKind(
        "vae",
        ("kind", "path"),
        f"{_PRE}.simple:build_vae",
        report_rank=2,
        needs={
            "path": "a local folder holding a diffusers AutoencoderKL, or a hub name in the local HuggingFace cache"
        },
    ),
    # A baseline classifier: the ViT-MAE encoder with its own linear layer, trained adversarially.
    PreprocessorKind(
        "encoder_only",
        ("kind", "arch", *_TRAINING, "augment", "eps", "attack_steps", "attack_step_size"),
        f"{_PRE}.masked_autoencoder:build_encoder_only",
        f"{_PRE}.objectives:encoder_only_step",
        augments=True,
        report_rank=4,
        output="logits",
    ),
    # AdvCL augments inside its step (t1 and t2 need the stored images) and attacks with PGD-5
    # (eps 8/255, step 2/255).
    PreprocessorKind(
        "advcl",
        (
            "kind",
            "arch",
            *_TRAINING,
            "augment",
            "lambda",
            "temperature",
            "eps",
            "attack_steps",
            "attack_step_size",
            *ADVCL_SETTINGS,
        ),
        f"{_PRE}.advcl:build_advcl",
        f"{_PRE}.advcl:advcl_step",
        defaults={"attack_steps": 5},
        own_settings=ADVCL_SETTINGS,
        report_rank=6,
        targets="pseudo_labels",
    ),
)
PREPROCESSOR_KINDS: dict[str, PreprocessorKind] = {kind.name: kind for kind in _REGISTRY}
KINDS = tuple(PREPROCESSOR_KINDS)
TRAINED_KINDS = tuple(name for name, kind in PREPROCESSOR_KINDS.items() if kind.trained)
# The kinds a paired difference compares against by default, the first one a sweep has.
REFERENCE_KINDS = tuple(
    sorted(
        (name for name, kind in PREPROCESSOR_KINDS.items() if kind.reference_rank is not None),
        key=lambda name: PREPROCESSOR_KINDS[name].reference_rank,
    )
)
OUTPUTS = ("images", "logits")
TARGETS = ("labels", "pseudo_labels")


PREPROCESSOR_SCHEMA = {
    "kind": Field("cropd", f"one of {list(KINDS)}", lambda value: value in PREPROCESSOR_KINDS),
    "arch": Field(
        "tiny",
        f"a preset name {sorted(ARCH_PRESETS)} or a mapping of architecture settings",
        lambda v: isinstance(v, dict) or (isinstance(v, str) and v in ARCH_PRESETS),
    ),
    "epochs": Field(10, "an integer >= 1", integer(1)),
    "batch_size": Field(64, "an integer >= 2 (negatives come from the batch)", integer(2)),
    # Table 6's CIFAR-2 goes from batch 32 to 256 at epoch 150: batch_size 32, schedule {150: 256}.
    # The learning-rate schedule is per epoch and unchanged by it.
    "batch_size_schedule": Field(
        None,
        "a mapping {epochs done: batch size >= 2} (from then on; e.g. {150: 256}), or null",
        lambda v: v is None or (isinstance(v, dict) and all(_schedule_entry(k, b) for k, b in v.items())),
        omit_when_default=True,
        same_as_default=({},),
    ),
    "lr": Field(1.5e-4, "a number > 0", number(0, low_open=True)),
    "weight_decay": Field(0.05, "a number >= 0", number(0)),
    "warmup_epochs": Field(0, "an integer >= 0", integer(0)),
    "seed": Field(0, "an integer", integer()),
    "augment": Field(True, "true or false (paper Table 5 augmentations; ARAE uses none)", boolean),
    # CRoPD
    "lambda": Field(1.0, "a number >= 0 (0 is Vanilla)", number(0)),
    "temperature": Field(0.5, "a number > 0", number(0, low_open=True)),
    "eps": Field(8 / 255, "a number >= 0 (L-inf budget of the training attack; default: the dataset's)", number(0)),
    # The paper trains with plain FGSM (App. A): one signed step of size eps from x. A uniform
    # random start in the ball first (then clipping) is our variant: a weaker adversary.
    "fgsm_random_start": Field(
        False, "true or false (false: the paper's plain FGSM; true: our variant, a random start first)", boolean
    ),
    # ARAE
    "gamma": Field(0.1, "a number >= 0", number(0)),
    # App. A: "For the adversarial perturbation, we use the Fast Gradient Sign Method (FGSM) ... with
    # l_inf-norm with a max perturbation of 8/255 and 4/255": fgsm, the default. pgd is rohban-lab's
    # ARAE code (PGD on the latent distance, attack_steps steps); see docs/deviations.md.
    "arae_attack": Field(
        "fgsm",
        "one of ['fgsm', 'pgd'] (ARAE's training attack: fgsm, the paper's App. A, one signed step of size eps; "
        "pgd, rohban-lab's code, attack_steps steps)",
        one_of("fgsm", "pgd"),
    ),
    "attack_steps": Field(
        10,
        "an integer >= 1 (PGD steps of ARAE with arae_attack pgd / encoder_only, default 10, and of both advcl "
        "attacks, default 5)",
        integer(1),
    ),
    "attack_step_size": Field(
        None,
        "a number > 0, or null for the method's default (PGD only: ARAE's fgsm step is eps)",
        optional(number(0, low_open=True)),
    ),
    # VAE
    "path": Field(
        None,
        "a local folder holding a diffusers AutoencoderKL, or a hub name already in the local HuggingFace cache "
        "(stabilityai/sd-vae-ft-mse), or null",
        optional(text),
    ),
    # A robust signal during training (trainables/validation_probe.py), for schedulers that stop
    # bad trials early: null (off, the default) or a mapping of VALIDATION_SCHEMA's settings.
    "validation": Field(
        None,
        "null, or a mapping such as {every: 4} (preprocessor.validation.*)",
        _mapping_or_none,
        omit_when_default=True,
    ),
    # AdvCL as the contrastive term (kind advcl): reconstruction + lambda * multi-view NT-Xent
    # + pseudo_lambda * pseudo-label CE. eps, temperature, attack_steps, attack_step_size are shared.
    **advcl_fields(pseudo_model_default="the trial's foundation"),
}


VALIDATION_SCHEMA = {
    "every": Field(None, "an integer >= 1 (pre-processor epochs between two measurements)", integer(1)),
    # Only for a trial without a validation split (data.validation_images: 0): then this share of the
    # pre-processor's training images, per class, is held out and measured. Otherwise the probe
    # measures the trial's validation split.
    "fraction": Field(0.1, "a number in (0, 0.5]", number(0, 0.5, low_open=True)),
    "points": Field(200, "an integer >= 2 (held-out images measured, at most)", integer(2)),
    "fit_images": Field(512, "an integer >= 2 (training images the probe head is fitted on, at most)", integer(2)),
    "steps": Field(5, "an integer >= 1 (PGD steps of the robust estimate)", integer(1)),
    "eps": Field(None, "a number >= 0, or null for the dataset's attack budget", optional(number(0))),
}


def resolve_validation(given: Any) -> dict | None:
    """preprocessor.validation complete, or None when off."""
    if given is None:
        return None
    return resolve("preprocessor.validation", given, VALIDATION_SCHEMA)  # `every` has no default: required


def resolve_preprocessor_config(
    given: dict | None, *, image_size: int | None = None, default_eps: float | None = None
) -> dict:
    """Validate a `preprocessor:` section; return it complete, with `arch` expanded to a mapping.

    Vanilla is CRoPD with lambda = 0 in the paper; here it is its own kind and lambda is ignored.
    `default_eps`: the dataset's attack budget, the training attack's eps when the section gives
    none (ImagenetTe's 4/255, App. A; 8/255 without a dataset).
    """
    if isinstance(given, Resolved):
        return given
    given = dict(given or {}) if isinstance(given, dict) or given is None else given
    if isinstance(given, dict) and given.get("kind") in PREPROCESSOR_KINDS:
        given = {**PREPROCESSOR_KINDS[given["kind"]].defaults, **given}
    cfg = resolve("preprocessor", given, PREPROCESSOR_SCHEMA)
    kind = PREPROCESSOR_KINDS[cfg["kind"]]
    if "batch_size_schedule" in cfg:  # keys as integers (JSON makes them strings)
        cfg["batch_size_schedule"] = {
            int(epoch): size for epoch, size in sorted(cfg["batch_size_schedule"].items(), key=lambda e: int(e[0]))
        }
    if default_eps is not None and isinstance(given, dict) and "eps" not in given:
        cfg["eps"] = default_eps
    if "validation" in cfg:
        cfg["validation"] = resolve_validation(cfg["validation"])
    cfg["views"] = parse_views(cfg["views"])
    cfg["pseudo_clusters"] = parse_clusters(cfg["pseudo_clusters"])
    cfg["arch"] = resolve_arch(cfg["arch"], image_size)
    for setting, what in kind.needs.items():
        if cfg[setting] is None:
            raise ConfigError(f"preprocessor.{setting}", f"{what} (kind {kind.name})", None)
    if "fft_radius" in kind.relevant and image_size is not None:
        check_radius_fits(cfg["fft_radius"], image_size)
    # Not Field.omit_when_default: another kind's own settings are left out whatever their value
    # unless given (given ones stay: they were part of those configs and their hashes).
    for other in PREPROCESSOR_KINDS.values():
        if other is not kind:
            for key in other.own_settings:
                if key not in given:
                    del cfg[key]
    return cfg


def _schedule_entry(epoch: Any, size: Any) -> bool:
    epoch_ok = (is_int(epoch) and epoch >= 1) or (isinstance(epoch, str) and epoch.isdigit() and int(epoch) >= 1)
    return epoch_ok and is_int(size) and size >= 2


def check_clusters_fit(cfg: dict, num_images: int) -> None:
    """K-means needs at least K training images; checked where the training set is known."""
    if "pseudo_clusters" in PREPROCESSOR_KINDS[cfg["kind"]].relevant:
        check_clusters_fit_images(cfg["pseudo_clusters"], num_images)


def uses_pseudo_labels(cfg: dict) -> bool:
    """Whether the config trains with the pseudo-label stimulus (AdvCL eq. 10; kind advcl)."""
    return (
        PREPROCESSOR_KINDS[cfg["kind"]].targets == "pseudo_labels"
        and bool(cfg["pseudo_clusters"])
        and cfg["pseudo_lambda"] > 0
    )


def artifact_key_config(cfg: dict) -> dict:
    """The settings that identify a pre-processor's artifact: its kind's relevant ones."""
    return {key: cfg[key] for key in sorted(PREPROCESSOR_KINDS[cfg["kind"]].relevant) if key in cfg}
