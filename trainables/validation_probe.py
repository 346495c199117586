"""A cheap robust signal while a pre-processor trains, for schedulers that stop bad trials early.

Every `preprocessor.validation.every` epochs the pre-processor as it is now is measured where the
trial will use it, in front of the frozen foundation: a linear probe head is fitted on the
foundation's features of (at most `fit_images`) training images through the pre-processor, then
natural and PGD-`steps` accuracy of pre-processor -> foundation -> probe are measured on a fixed
held-out split of the training set (at most `points` images). The held-out images are never
trained on by the pre-processor, and the test set is never touched.

Nothing is random: the split is seeded, the probe is fitted by full-batch L-BFGS from zero
weights, and PGD starts at the clean image (no random start) with Madry et al.'s step size
2.5 eps / steps (eps: validation.eps, else the dataset's). So the same weights give the same
numbers on any run of the trial. What it costs is recorded per measurement (val_time_s).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import pgd
from .data import ImageDataset, iterate_batches
from .seeding import seed_everything
from .survival import reseed_random_modules

FEATURE_BATCH = 128
PROBE_ITERATIONS = 100  # L-BFGS iterations on the features: well under a second for 512 x 256
PROBE_WEIGHT_DECAY = 1e-4


def held_out_split(train: ImageDataset, fraction: float, seed: int) -> tuple[ImageDataset, ImageDataset]:
    """(training part, held-out part): `fraction` of each class held out (at least 1, never all)."""
    generator = torch.Generator().manual_seed(int(seed) + 7919)  # not the data_fraction draw's stream
    kept, held = [], []
    for label in torch.unique(train.labels).tolist():
        members = torch.nonzero(train.labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        count = min(max(1, round(fraction * len(members))), len(members) - 1)
        held.append(members[:count])
        kept.append(members[count:])
    return (
        train.subset(torch.sort(torch.cat(kept)).values),
        train.subset(torch.sort(torch.cat(held)).values),
    )


def _spread(data: ImageDataset, count: int) -> ImageDataset:
    """At most `count` images, evenly spaced (the data is in class-sorted index order, so classes stay mixed)."""
    if len(data) <= count:
        return data
    return data.subset(torch.linspace(0, len(data) - 1, count).round().long())


@dataclass
class ValidationProbe:
    """Measures a pre-processor in training every `every` epochs; see the module docstring."""

    foundation: nn.Module
    fit_part: ImageDataset
    held_out: ImageDataset
    every: int
    steps: int
    eps: float
    device: str

    @classmethod
    def from_config(
        cls, cfg: dict, fit_part: ImageDataset, held_out: ImageDataset, foundation: nn.Module, eps: float, device: str
    ) -> "ValidationProbe":
        return cls(
            foundation,
            _spread(fit_part, cfg["fit_images"]),
            _spread(held_out, cfg["points"]),
            cfg["every"],
            cfg["steps"],
            eps,
            device,
        )

    def due(self, epoch: int, last_epoch: int) -> bool:
        return epoch % self.every == 0 or epoch == last_epoch

    def measure(self, preprocessor: nn.Module, epoch: int) -> dict[str, float]:
        """val_acc_natural, val_acc_pgd<steps>, val_time_s of `preprocessor` as it is now.

        Leaves the pre-processor's mode, its gradients and torch's RNG state as they were, and
        the training seeds every epoch afresh (Python's and numpy's generators too, which the
        measurement re-seeds): the training that goes on afterwards is the same with or without it.
        """
        started = time.perf_counter()
        was_training = preprocessor.training
        rng = torch.get_rng_state()
        preprocessor.eval()
        self.foundation.eval()
        try:
            seed_everything(0, "validation-probe", epoch)  # the foundation or pre-processor may draw masks
            # A randomly masking foundation draws from its own generator, which seed_everything
            # does not reach: reseed it too, so a resumed run draws the same masks.
            reseed_random_modules(self.foundation, 0, "validation-probe", epoch)
            with torch.no_grad():
                features = torch.cat(
                    [
                        self.foundation(preprocessor(self.fit_part.float_images(index).to(self.device))).float()
                        for index in iterate_batches(len(self.fit_part), FEATURE_BATCH, shuffle=False)
                    ]
                )
            head = fit_probe_head(features, self.fit_part.labels.to(self.device), self.fit_part.num_classes)

            def logits(x: torch.Tensor) -> torch.Tensor:
                return head(self.foundation(preprocessor(x)).float())

            natural = robust = 0
            for index in iterate_batches(len(self.held_out), FEATURE_BATCH, shuffle=False):
                x = self.held_out.float_images(index).to(self.device)
                y = self.held_out.labels[index].to(self.device)
                with torch.no_grad():
                    natural += int((logits(x).argmax(1) == y).sum())
                x_adv = pgd(
                    lambda z: F.cross_entropy(logits(z), y, reduction="sum"),
                    x,
                    eps=self.eps,
                    steps=self.steps,
                    step_size=2.5 * self.eps / self.steps if self.eps > 0 else 1.0,
                    random_start=False,
                )
                with torch.no_grad():
                    robust += int((logits(x_adv).argmax(1) == y).sum())
        finally:
            preprocessor.train(was_training)
            torch.set_rng_state(rng)
        count = len(self.held_out)
        return {
            "val_acc_natural": natural / count,
            f"val_acc_pgd{self.steps}": robust / count,
            "val_points": float(count),
            "val_time_s": time.perf_counter() - started,
        }


def fit_probe_head(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> nn.Linear:
    """Multinomial logistic regression on standardised features, full-batch L-BFGS from zero weights."""
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    linear = nn.Linear(features.shape[1], num_classes).to(features.device)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    scaled = (features - mean) / std
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=PROBE_ITERATIONS, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(scaled), labels) + PROBE_WEIGHT_DECAY * linear.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    # Fold the standardisation into the layer: the probe takes raw features.
    with torch.no_grad():
        weight = linear.weight / std
        bias = linear.bias - weight @ mean
        probe = nn.Linear(features.shape[1], num_classes).to(features.device)
        probe.weight.copy_(weight)
        probe.bias.copy_(bias)
    return probe.requires_grad_(False)
