"""The evaluated points and PGD on them: which points, in what batches, and per point whether it survives.

Shared by the attacks (run.py) and the integrity checks' strength sweep (integrity.py), so neither
imports the other.
"""

from __future__ import annotations

from typing import Iterator

import torch

from .. import stage_progress
from ..schema.evaluation import SECTION
from ..seeding import derive_seed
from ..survival import PGDSetting, pgd_survives, reseed_random_modules, survives_settings


def evaluation_order(labels: torch.Tensor, n: int | None, seed: int) -> torch.Tensor:
    """The first `n` (None: all) test points of a seeded order whose every prefix is stratified by class.

    AutoAttack runs on a prefix of the evaluated points, and test sets may be stored class by
    class, so any prefix must hold each class in proportion to its size: each class in a seeded
    random order, the k-th of a class of size s placed at (k + 1/2) / s of the way through (ties in
    class order). A prefix holds each class within one point of its share when there are two classes
    or they are balanced; many unbalanced ones may put a large class a point or two off (at most
    1/2 + C/2 times its share). Deterministic given the labels and `seed`.
    """
    labels = torch.as_tensor(labels).flatten().cpu()
    generator = torch.Generator().manual_seed(derive_seed(seed, SECTION, "subset"))
    shuffled = torch.randperm(len(labels), generator=generator)
    grouped = shuffled[torch.argsort(labels[shuffled], stable=True)]  # by class, random within each
    _, sizes = torch.unique(labels, return_counts=True)  # classes sorted, as `grouped` is
    starts = torch.cumsum(sizes, 0) - sizes
    rank = torch.arange(len(labels)) - starts.repeat_interleave(sizes)
    place = (rank.double() + 0.5) / sizes.repeat_interleave(sizes).double()
    return grouped[torch.argsort(place, stable=True)][:n]


class Batches:
    """The evaluated points, fetched by position in batches; never copies the whole test set."""

    def __init__(self, images, labels, order, batch_size, device):
        self.images, self.labels, self.order = images, torch.as_tensor(labels), order
        self.batch_size, self.device = batch_size, device

    def __len__(self) -> int:
        return len(self.order)

    def get(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.order[positions]
        x = self.images[index].detach().to(self.device)
        return x, self.labels[index].to(self.device, torch.long)

    def chunks(self, positions: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        for batch_number, start in enumerate(range(0, len(positions), self.batch_size)):
            yield batch_number, positions[start : start + self.batch_size]


class SubsetBatches(Batches):
    """The first `n` evaluated points, with the same batching."""

    def __init__(self, batches: Batches, n: int):
        super().__init__(batches.images, batches.labels, batches.order[:n], batches.batch_size, batches.device)


def natural_predictions(model, batches: Batches, num_classes: int, *, seed: int = 0) -> torch.Tensor:
    """The predicted class of every evaluated point, unattacked. A model random at test time gives
    one draw per point, its random modules reseeded per batch from `seed`."""
    predicted = torch.zeros(len(batches), dtype=torch.int64)
    for batch_number, positions in batches.chunks(torch.arange(len(batches))):
        x, _ = batches.get(positions)
        reseed_random_modules(model, seed, "natural", batch_number)
        with torch.no_grad():
            logits = model(x)
        if logits.dim() != 2 or logits.shape[1] != num_classes:
            raise ValueError(f"the model gives logits of shape {tuple(logits.shape)}, expected (B, {num_classes})")
        predicted[positions] = logits.argmax(dim=1).cpu()
    return predicted


def given_predictions(logits: torch.Tensor, batches: Batches, num_classes: int) -> torch.Tensor:
    """The predicted class of every evaluated point, from the caller's clean logits of the whole test set."""
    if tuple(logits.shape) != (len(batches.images), num_classes):
        raise ValueError(
            f"natural_logits of shape {tuple(logits.shape)}, expected ({len(batches.images)}, {num_classes})"
        )
    return logits[batches.order.to(logits.device)].argmax(dim=1).cpu()


def robust_correct(
    model,
    batches: Batches,
    natural: torch.Tensor,
    *,
    eps,
    steps,
    step_size,
    random_start,
    seed_parts: tuple,
    label: str,
    loss: str = "ce",
    eot_samples: int = 1,
) -> torch.Tensor:
    """Per evaluated point: classified correctly before and after PGD on `loss` (survival.ATTACK_LOSSES).

    A naturally misclassified point counts as not robust without an attack, which is exactly the
    worst case an attack on it could reach; so skipping it loses no strength. `eot_samples`: EOT
    passes per gradient (survival.pgd_survives); a random model's draws are reseeded per batch.
    """
    robust = torch.zeros(len(batches), dtype=torch.bool)
    attacked = natural.nonzero().flatten()
    total = -(-len(attacked) // batches.batch_size)
    for batch_number, positions in batches.chunks(attacked):
        stage_progress.report("evaluation", f"{label}: batch {batch_number + 1}/{total}", force=batch_number == 0)
        x, y = batches.get(positions)
        # Seeded per batch, so a result never depends on how many batches ran before it.
        torch.manual_seed(derive_seed(*seed_parts, eps, steps, batch_number))
        reseed_random_modules(model, *seed_parts, eps, steps, batch_number)
        robust[positions] = pgd_survives(
            model,
            x,
            y,
            eps=eps,
            steps=steps,
            step_size=step_size,
            random_start=random_start,
            loss=loss,
            eot_samples=eot_samples,
        ).cpu()
    return robust


def robust_correct_settings(
    model,
    batches: Batches,
    natural: torch.Tensor,
    settings: list[PGDSetting],
    *,
    random_start: bool,
    seed_parts: tuple,
    shared_batches: bool,
    eot_samples: int = 1,
) -> dict[tuple[float, int], torch.Tensor]:
    """robust_correct for each setting, keyed by (eps, steps): one run per setting, or all settings
    in shared batches (trainables/survival.py); the same random starts, so the same outcome (for a
    deterministic model: a random one draws per batch, and the batches differ)."""
    if not shared_batches:
        return {
            (s.eps, s.steps): robust_correct(
                model,
                batches,
                natural,
                eps=s.eps,
                steps=s.steps,
                step_size=s.step_size,
                random_start=random_start,
                seed_parts=seed_parts,
                label=f"strength sweep, eps {s.eps:.4g}, {s.steps} steps",
                eot_samples=eot_samples,
            )
            for s in settings
        }
    stage_progress.report("evaluation", f"strength sweep, {len(settings)} settings in shared batches", force=True)
    chunks = (
        (number, positions, *batches.get(positions))
        for number, positions in batches.chunks(natural.nonzero().flatten())
    )
    pieces = survives_settings(
        model,
        chunks,
        settings,
        random_start=random_start,
        seed_of=lambda s, number: derive_seed(*seed_parts, s.eps, s.steps, number),
        batch_size=batches.batch_size,
        eot_samples=eot_samples,
        draw_seed=derive_seed(*seed_parts, "shared-batches"),
    )
    outcome = {}
    for setting, parts in zip(settings, pieces):
        robust = torch.zeros(len(batches), dtype=torch.bool)
        for positions, survives in parts:
            robust[positions] = survives.cpu()
        outcome[(setting.eps, setting.steps)] = robust
    return outcome
