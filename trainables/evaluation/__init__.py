"""White-box robustness of a whole images->logits pipeline: natural accuracy and every attack of the registry.

Each accuracy comes with a 95% Wilson score interval; integrity checks are recorded as flags, never
hidden. The attacks (PGD-10 and PGD-20 on the cross-entropy and on the margin, AutoAttack), their
labels, losses, steps and step sizes, the per-point worst case over them, and the columns a trial's
row gets are declared torch-free in trainables/schema/results.py.

    run.py          evaluate(): the attacks in table order, by family; their per-point worst case; the row's metrics
    batches.py      the evaluated points in batches; PGD survival per point (shared by run and integrity)
    autoattack.py   the pyautoattack adapter (ensemble choice, captured warnings, settrace kept, verified)
    integrity.py    orderings and gaps between attacks, determinism, per-point input gradients, the
                    attack-strength sweep with its unbounded point
    intervals.py    Wilson intervals and paired attack comparisons (trainables/statistics.py)
"""

from .autoattack import autoattack_logging
from .batches import Batches, evaluation_order, natural_predictions, robust_correct_settings
from .integrity import SWEEP_SHARED_BATCHES, sweeps
from .run import FAMILY_RUNNERS, PGD_SETTINGS, evaluate, per_example_outcomes, pgd_setting, worst_case

__all__ = [
    "Batches",
    "FAMILY_RUNNERS",
    "PGD_SETTINGS",
    "SWEEP_SHARED_BATCHES",
    "autoattack_logging",
    "evaluate",
    "evaluation_order",
    "natural_predictions",
    "per_example_outcomes",
    "pgd_setting",
    "robust_correct_settings",
    "sweeps",
    "worst_case",
]
