"""The results-row contract: trial statuses, timed stages, attacks, seed fields and column names.

One trial is one row (written by the sweep side as Parquet, `trials` table); this module names what
that row may hold, so the writer, the evaluation, the reports, the plots, the cost estimate and the
status display read one vocabulary instead of spelling it out each. Torch-free, like the rest of
trainables.schema: the command line imports it.

Column families of a trial's row (`<a>` is `natural`, an attack name or `worst`, `<s>` a stage name):

* identity and status: `sweep`, `trial_id`, `config_hash`, `status` (a TrialStatus value),
  `error` (its first line), `started_at`, `finished_at`.
* settings: one column per config value; the data section's without a prefix (`dataset`,
  `data_fraction`, `seed`), the others as `<section>.<key>` (`preprocessor.lambda`). SEED_FIELDS
  are where a spec's `seeds` land.
* accuracies, one family per name in ACCURACY_NAMES (natural first, then the attacks in table
  order, then `worst`): `acc_<a>` (the share of evaluated points classified correctly, natural,
  under the attack, or under every attack that ran on the point: `worst`, NaN when no attack ran),
  `acc_<a>_lo` / `acc_<a>_hi` (its Wilson score interval at CONFIDENCE), `n_<a>` (the points
  behind it). An attack that did not run has NaN accuracies and `n_<a>` 0, never a 0 that reads as
  "not robust". HEADLINE_METRICS are the `acc_<a>` columns: every row has them (null where no
  evaluation ran, e.g. a failed trial).
* attack settings: `<attack>_step_size` for each PGD attack (its default: a fraction of eps, the
  attack's `step_rule`); `eps` (the evaluation budget); `attacks` (those asked for).
* AutoAttack: `autoattack_version` (standard, custom or null), `autoattack_list` (the attacks it
  ran), `autoattack_acc_natural` (natural accuracy on AutoAttack's own, smaller, set of points),
  `autoattack_outside_budget` (a returned point broke the eps-ball: never trusted).
* integrity: `integrity_flags` (comma-separated short names; empty is clean), `integrity_checked`
  (the costly checks ran), `integrity_details` (JSON: the measurements behind the flags),
  `sweep_eps` / `sweep_steps` (JSON `[[x, accuracy], ...]`: PGD on the first SWEEP_POINTS points
  at growing eps and growing steps, which must not rise; `sweep_eps` ends with an unbounded eps,
  where the accuracy must reach about 0).
* times: `time_<s>_s` for each of STAGES (seconds; `time_foundation_pretraining_s` is the robust
  pre-training's cost also when an earlier trial paid it) and for each of EVALUATION_PARTS
  (`time_natural_s`, `time_pgd10_s`, ..., `time_integrity_s`: parts of `time_evaluation_s`).
* sizes and reuse: `params_preprocessor`, `params_foundation`, `params_foundation_trained`,
  `params_head`; `preprocessor_reused` (an earlier trial's artifact), `features_reused` (which clean
  feature sets came from an earlier trial).
* compute: `compute_<setting>` for each compute setting (what computed it, also at the defaults).
* provenance: `version.<package>`, `git_revision`, `torch_threads`; `foundation_digest` (the foundation
  weights it used: trainables/provenance.py), `device_name` (cpu, or the GPU's model) and
  `cpu_capability` (the CPU kernels PyTorch used: AVX512, AVX2, DEFAULT).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class TrialStatus(str, Enum):
    """A trial's status; the values are the strings results rows hold (and Ray Tune's names).

    A str subclass: `TrialStatus.ERROR == "ERROR"`, and it is written as its plain value.
    """

    TERMINATED = "TERMINATED"  # finished: its metrics are in the row
    ERROR = "ERROR"  # failed (after its retries); `error` holds the first line
    STOPPED = "STOPPED"  # stopped early by a scheduler: never finished, never run again
    RUNNING = "RUNNING"  # only in the live display and status: a running trial has no row yet

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


# The statuses a results row can hold (a row is written when a trial ends).
ROW_STATUSES = (TrialStatus.TERMINATED, TrialStatus.ERROR, TrialStatus.STOPPED)


@dataclass(frozen=True)
class Stage:
    """A timed stage of a trial: its name (in `time_<name>_s` and the epochs' `stage` column),
    a label for sentences ("pre-processor") and a title for table headings.

    `wall`: part of the trial's own running time (the wall stages add up to it).
    `cost`: a column of the cost table (paper Table 11): what the method costs, including robust
    pre-training an earlier trial paid for, and without data loading.
    `epochs`: writes per-epoch rows under this name (the `epochs` table's `stage`).
    """

    name: str
    label: str
    title: str
    wall: bool = True
    cost: bool = True
    epochs: bool = False

    @property
    def column(self) -> str:
        return time_column(self.name)


# In the order a trial runs them. `foundation` is loading the foundation (and pre-training it, when
# this trial does); `foundation_pretraining` is the robust pre-training's cost whoever paid it.
STAGES: tuple[Stage, ...] = (
    Stage("data", "data", "Data", cost=False),
    Stage("foundation", "foundation", "Foundation", cost=False, epochs=True),
    Stage("foundation_pretraining", "foundation pre-training", "Pre-training", wall=False),
    Stage("preprocessor", "pre-processor", "Pre-processor", epochs=True),
    Stage("head", "head", "Head", epochs=True),
    Stage("evaluation", "evaluation", "Evaluation"),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)
WALL_STAGES = tuple(stage.name for stage in STAGES if stage.wall)
COST_STAGES = tuple(stage.name for stage in STAGES if stage.cost)
EPOCH_STAGES = tuple(stage.name for stage in STAGES if stage.epochs)


def stage(name: str) -> Stage:
    """The stage called `name`; a ValueError naming the known ones otherwise."""
    for candidate in STAGES:
        if candidate.name == name:
            return candidate
    raise ValueError(f"unknown stage {name!r}: one of {list(STAGE_NAMES)}")


@dataclass(frozen=True)
class Attack:
    """An attack the evaluation runs on the whole pipeline (images in [0, 1] -> logits), L-inf at eps.

    `family`: how it runs ("pgd": PGD from a random start in the ball, `steps` steps of
    `step_fraction` * eps on `loss`; "autoattack": Croce & Hein's ensemble, its own losses and
    steps). `order`: its column's place in tables (after natural accuracy). `label`: its title.
    """

    name: str
    label: str
    family: str
    order: int
    loss: str | None = None
    steps: int | None = None
    step_fraction: float | None = None

    @property
    def step_rule(self) -> str | None:
        """The default step size as text ("eps/5"), None for an attack without one."""
        return None if self.step_fraction is None else f"eps/{round(1 / self.step_fraction)}"


# The losses a PGD attack may ascend (trainables/survival.py ATTACK_LOSSES implements each):
# "ce", the summed cross-entropy; "margin", the summed Carlini-Wagner margin max_{j!=y} z_j - z_y.
PGD_LOSSES = ("ce", "margin")

_ATTACK_LIST = (
    # The papers' PGD settings: 10 steps of eps/5, 20 steps of eps/10, on the cross-entropy.
    Attack("pgd10", "PGD-10", "pgd", order=1, loss="ce", steps=10, step_fraction=1 / 5),
    Attack("pgd20", "PGD-20", "pgd", order=2, loss="ce", steps=20, step_fraction=1 / 10),
    # The same budgets on the margin, which large logits cannot stall: in fp32 the cross-entropy's
    # gradient is exactly 0 once a point's logit margin passes about 90-100 (sign(0) = 0, the point
    # never moves), while the margin's gradient is +-1 on two logits at any scale. The CW margin, not
    # Croce & Hein's DLR: DLR divides by z_1 - z_3 and so needs 3 or more classes; the margin works with 2.
    Attack("pgd10_margin", "PGD-10 (margin)", "pgd", order=3, loss="margin", steps=10, step_fraction=1 / 5),
    Attack("pgd20_margin", "PGD-20 (margin)", "pgd", order=4, loss="margin", steps=20, step_fraction=1 / 10),
    # APGD-CE, APGD-T (DLR), FAB-T, Square (the standard version); APGD-CE, FAB, Square below 4 classes.
    Attack("autoattack", "AutoAttack", "autoattack", order=5),
)
# name -> Attack, in table order; iterating gives the names.
ATTACKS: dict[str, Attack] = {attack.name: attack for attack in sorted(_ATTACK_LIST, key=lambda a: a.order)}
PGD_ATTACKS = tuple(name for name, attack in ATTACKS.items() if attack.family == "pgd")
# The weakest attack (PGD-10 on the cross-entropy): AutoAttack must not leave more points correct
# than it (an integrity check; trainables/evaluation/integrity.py has the other orderings).
REFERENCE_ATTACK = PGD_ATTACKS[0]

NATURAL = "natural"
NATURAL_LABEL = "Natural"
# Per evaluated point: correct under natural evaluation and under every attack that ran on it
# (AutoAttack only on its prefix of the points), from the attacks' per-point outcomes, never
# re-attacked. Not an attack: `evaluation.attacks` cannot name it, and it has no time column.
WORST = "worst"
WORST_LABEL = "Worst case"
# Every accuracy a row reports, in table order: natural, the attacks, their per-point worst case.
ACCURACY_NAMES = (NATURAL, *ATTACKS, WORST)
# Timed parts of the evaluation stage (time_<part>_s), besides the stages themselves.
# `validation`: the val_* metrics on the validation split (trainables/evaluation/validation.py).
EVALUATION_PARTS = (NATURAL, *ATTACKS, "integrity", "validation")

# Where a spec's `seeds` land in a trial config: every stage that draws random numbers while
# training. evaluation.seed stays fixed so every trial is attacked with the same test-time randomness.
SEED_FIELDS = ("data.seed", "preprocessor.seed", "head.seed")
# The level of every interval a row or a report gives (accuracies and paired differences; trainables/statistics.py).
CONFIDENCE = 0.95
# The attack-strength sweep (an integrity check) attacks the first this many evaluated points.
SWEEP_POINTS = 64


def _accuracy_name(name: str) -> str:
    if name not in ACCURACY_NAMES:
        raise ValueError(f"unknown accuracy {name!r}: one of {list(ACCURACY_NAMES)}")
    return name


def accuracy_column(name: str) -> str:
    """`acc_<name>` for `natural` or an attack name."""
    return f"acc_{_accuracy_name(name)}"


def interval_columns(name: str) -> tuple[str, str]:
    """(`acc_<name>_lo`, `acc_<name>_hi`): the bounds of its Wilson score interval at CONFIDENCE."""
    column = accuracy_column(name)
    return f"{column}_lo", f"{column}_hi"


def count_column(name: str) -> str:
    """`n_<name>`: how many evaluated points the accuracy is over."""
    return f"n_{_accuracy_name(name)}"


def metric_columns(name: str) -> tuple[str, str, str, str]:
    """Every column of one accuracy: value, lower and upper bound, count."""
    return (accuracy_column(name), *interval_columns(name), count_column(name))


def accuracy_label(name: str) -> str:
    """The title of an accuracy in tables: "Natural", "PGD-10", ..., "Worst case"."""
    labels = {NATURAL: NATURAL_LABEL, WORST: WORST_LABEL}
    return labels.get(_accuracy_name(name)) or ATTACKS[name].label


def step_size_column(attack: str) -> str:
    """`<attack>_step_size`: the step a PGD attack took (a fraction of eps unless configured)."""
    if attack not in PGD_ATTACKS:
        raise ValueError(f"no step size for {attack!r}: one of {list(PGD_ATTACKS)}")
    return f"{attack}_step_size"


def time_column(name: str) -> str:
    """`time_<name>_s` for a stage or a part of the evaluation (seconds)."""
    if name not in STAGE_NAMES and name not in EVALUATION_PARTS:
        raise ValueError(f"unknown stage {name!r}: one of {list(STAGE_NAMES)} or {list(EVALUATION_PARTS)}")
    return f"time_{name}_s"


# The columns every row has, so a query never misses one (null where no evaluation ran).
HEADLINE_METRICS = tuple(accuracy_column(name) for name in ACCURACY_NAMES)


# The validation split's metrics (selection only; the test set is only reported): each accuracy as
# `val_acc_<name>` with `val_acc_<name>_lo` / `_hi`, beside `val_points` (validation images).
VALIDATION_PREFIX = "val_"


def validation_column(name: str) -> str:
    """`val_acc_<name>`: an accuracy measured on the validation split."""
    return VALIDATION_PREFIX + accuracy_column(name)


def validation_columns(name: str) -> tuple[str, str, str]:
    """(`val_acc_<name>`, its lower and upper bound)."""
    return tuple(VALIDATION_PREFIX + column for column in (accuracy_column(name), *interval_columns(name)))


def validation_twin(column: str) -> str | None:
    """The validation column measuring what test column `column` measures (acc_pgd20 -> val_acc_pgd20)."""
    names = {accuracy_column(name): name for name in ACCURACY_NAMES}
    return validation_column(names[column]) if column in names else None


# What a sweep may select on (objectives, Pareto, "best"): every accuracy, on the validation split.
VALIDATION_METRICS = tuple(validation_column(name) for name in ACCURACY_NAMES)
