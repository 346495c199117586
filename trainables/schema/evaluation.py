"""What a trial's `evaluation:` section may say: attacks, budget, counts, checks.

Checked with the rest of the trial before any work; eps and the counts are completed against the
dataset and its test set when the trial runs (resolve_evaluation_config), once.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import ConfigError
from .fields import Field, Resolved, boolean, did_you_mean, integer, is_int, number, optional, resolve
from .results import ATTACKS as ATTACK_REGISTRY
from .results import PGD_ATTACKS

SECTION = "evaluation"
# AutoAttack's points unless a trial says otherwise (see the `autoattack_examples` field below).
AUTOATTACK_DEFAULT_EXAMPLES = 400
# The attack names, in table order (the registry in results.py says what each one is).
ATTACKS = tuple(ATTACK_REGISTRY)


class ResolvedEvaluation(Resolved):
    """An evaluation section completed against its test set: eps and every count a number."""


def check_attack_budget(eps: float, steps: int = 1, step_size: float | None = None, *, field: str = "attack") -> None:
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps < 0:
        raise ConfigError(f"{field}.eps", "a number >= 0", eps)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConfigError(f"{field}.steps", "an integer >= 1", steps)
    if step_size is not None and (
        not isinstance(step_size, (int, float)) or isinstance(step_size, bool) or step_size <= 0
    ):
        raise ConfigError(f"{field}.step_size", "a number > 0", step_size)


def _is_name_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(name, str) for name in value)


_DEFAULT_STEPS = ", ".join(f"{ATTACK_REGISTRY[name].step_rule} for {name}" for name in PGD_ATTACKS)

EVALUATION_SCHEMA: dict[str, Field] = {
    "eps": Field(None, "null (the dataset's default budget) or a number >= 0", optional(number(0))),
    "attacks": Field(ATTACKS, f"a list of attack names from {list(ATTACKS)}", _is_name_list),
    "n_examples": Field(None, "null (all test points) or an integer >= 1", optional(integer(1))),
    # 0 runs no AutoAttack although it is listed: a study can attack one seed of each configuration
    # with it (its cost on a CPU) and set 0 for the other seeds, which stay one configuration.
    # The default, 400 points, gives a 95% interval of at most about +-5 points (the widest, at 50%
    # accuracy: Wilson half-width 4.9 points; 385 points reach 5.0); 64 points gave +-12. Unasked
    # for, it shrinks to a smaller test set (resolve_evaluation_config).
    "autoattack_examples": Field(
        AUTOATTACK_DEFAULT_EXAMPLES, "an integer >= 0 (0: no AutoAttack for this trial)", integer(0)
    ),
    "batch_size": Field(128, "an integer >= 1", integer(1)),
    # Unused since issue 32: a row's intervals are Wilson score intervals and the integrity
    # orderings exact McNemar tests, neither resampled. Accepted (and hashed) as before, so the
    # specs and trial configs that set it keep loading and keep their trial hashes.
    "bootstrap_resamples": Field(1000, "an integer >= 10 (unused: intervals are no longer resampled)", integer(10)),
    # What the validation split (data.validation_images) is attacked with for the val_* metrics that
    # sweeps select on: null = every PGD attack of `attacks` (AutoAttack costs too much to run after
    # every trial; name it here to have it). Omitted at its default: the section's hash stays.
    "validation_attacks": Field(
        None,
        f"null (the PGD attacks of `attacks`) or a list of attack names from {list(ATTACKS)}",
        lambda v: v is None or _is_name_list(v),
        omit_when_default=True,
    ),
    # Expectation over Transformation against a model random at test time (foundation.mask_ratio > 0):
    # each gradient of every PGD attack (test and validation, and the integrity checks') is the mean
    # over this many passes, each with fresh random draws, and a point is scored by a pass of its own.
    # AutoAttack's APGD attacks average as many (their eot_iter). 1: no EOT. Omitted at its default:
    # the section's hash stays.
    "eot_samples": Field(
        1,
        "an integer >= 1 (gradient passes averaged per attack step: Expectation over Transformation; 1: none)",
        integer(1),
        omit_when_default=True,
    ),
    "seed": Field(0, "an integer", is_int),
    "integrity": Field(True, "true or false", boolean),
    "random_start": Field(True, "true or false", boolean),
    "verbose": Field(False, "true or false (AutoAttack's progress on the 'auto-attack' logger)", boolean),
    # The papers' PGD steps are eps/5 (PGD-10) and eps/10 (PGD-20); AdvCL's own tables attack with
    # PGD-20 at a step of 2/255: {pgd20: 0.00784}.
    "pgd_step_size": Field(
        None,
        f"null ({_DEFAULT_STEPS}) or a mapping {{{'|'.join(PGD_ATTACKS)}: step size > 0}}",
        lambda v: (
            v is None
            or (
                isinstance(v, dict)
                and v
                and all(k in PGD_ATTACKS and number(0, low_open=True)(step) for k, step in v.items())
            )
        ),
    ),
}


def check_evaluation_config(given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The evaluation section with defaults filled and every field checked; eps and counts left as given."""
    config = resolve(SECTION, given, EVALUATION_SCHEMA)
    config["attacks"] = _checked_attacks(config["attacks"])
    if config.get("validation_attacks") is not None:
        config["validation_attacks"] = _checked_attacks(config["validation_attacks"], "validation_attacks")
    return config


def eot_samples(config: Mapping[str, Any]) -> int:
    """The passes each attack gradient averages (EOT); 1 where the section leaves it out."""
    return int(config.get("eot_samples", EVALUATION_SCHEMA["eot_samples"].default))


def validation_attacks(config: Mapping[str, Any]) -> list[str]:
    """The attacks the validation split is measured with: the configured list, else every PGD attack of `attacks`."""
    given = config.get("validation_attacks")
    if given is not None:
        return list(given)
    return [name for name in config["attacks"] if ATTACK_REGISTRY[name].family == "pgd"]


def resolve_evaluation_config(given: Mapping[str, Any] | None, *, num_test: int, default_eps: float) -> dict[str, Any]:
    """The checked evaluation section with eps, n_examples and autoattack_examples resolved to numbers."""
    if isinstance(given, ResolvedEvaluation):
        return given
    config = check_evaluation_config(given)
    if config["eps"] is None:
        check_attack_budget(default_eps, field=SECTION)
        config["eps"] = float(default_eps)
    if not is_int(num_test) or num_test < 1:
        raise ValueError(f"evaluation needs at least one test point, got {num_test!r}")
    # Refused, not clipped: a table must never silently report fewer points than asked for.
    if config["n_examples"] is None:
        config["n_examples"] = num_test
    elif config["n_examples"] > num_test:
        raise ConfigError(f"{SECTION}.n_examples", f"at most the {num_test} test points", config["n_examples"])
    n = config["n_examples"]
    if "autoattack_examples" in dict(given or {}):
        if config["autoattack_examples"] > n:
            raise ConfigError(
                f"{SECTION}.autoattack_examples", f"at most n_examples ({n})", config["autoattack_examples"]
            )
    else:
        # Only the unasked-for default shrinks to a small test set; n_autoattack reports the count.
        config["autoattack_examples"] = min(config["autoattack_examples"], n)
    return ResolvedEvaluation(config)


def _checked_attacks(names: Any, field: str = "attacks") -> list[str]:
    for name in names:
        if name not in ATTACKS:
            raise ConfigError(
                f"{SECTION}.{field}", f"names from {list(ATTACKS)}{did_you_mean(name, list(ATTACKS))}", name
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"{SECTION}.{field}", "each attack named once", list(names))
    return list(names)
