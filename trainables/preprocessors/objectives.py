"""One training step per trained pre-processor kind: the losses of CRoPD, Vanilla, ARAE, Encoder-Only
(AdvCL's is in advcl.py). The registry (trainables/schema/preprocessor.py) names each. Each returns
a dict of named scalar tensors; "loss" is the one optimised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..attacks import LossOf, fgsm, pgd
from ..losses import adversarial_nt_xent, reconstruction_mse
from .masked_autoencoder import EncoderOnlyClassifier, MaskedAutoencoder


def vanilla_step(model: MaskedAutoencoder, x: torch.Tensor, labels: torch.Tensor, cfg: dict) -> dict[str, torch.Tensor]:
    """Reconstruction only: CRoPD with lambda = 0, without paying for the attack."""
    loss = reconstruction_mse(model(x), x)
    return {"loss": loss, "loss_reconstruction": loss}


def cropd_step(model: MaskedAutoencoder, x: torch.Tensor, labels: torch.Tensor, cfg: dict) -> dict[str, torch.Tensor]:
    """MSE(f_de(f_en(x)), x) + lambda * l_con(f_en(x_adv), f_en(x)), x_adv by FGSM on l_con.

    The attack maximises the same contrastive loss the step minimises (the sup in Algorithm 1),
    against a fixed clean embedding. With lambda = 0 it is Vanilla and the attack is skipped.
    The clean pass that the loss needs also gives the attack its reference (detached): the same
    values a separate no-grad pass would give (the trained weights are bit-identical), one encoder
    pass fewer: about 5% of a step at the quickstart's size on one core.
    """
    if cfg["lambda"] == 0:
        return vanilla_step(model, x, labels, cfg)
    tau = cfg["temperature"]
    reconstruction, z_clean = model.reconstruct_and_embed(x)
    z_reference = z_clean.detach()
    x_adv = fgsm(
        lambda xa: adversarial_nt_xent(z_reference, model.embed(xa), tau),
        x,
        eps=cfg["eps"],
        random_start=cfg["fgsm_random_start"],
    )
    recon = reconstruction_mse(reconstruction, x)
    contrastive = adversarial_nt_xent(z_clean, model.embed(x_adv), tau)
    return {"loss": recon + cfg["lambda"] * contrastive, "loss_reconstruction": recon, "loss_contrastive": contrastive}


def arae_step(model: MaskedAutoencoder, x: torch.Tensor, labels: torch.Tensor, cfg: dict) -> dict[str, torch.Tensor]:
    """ARAE: MSE(dec(enc(x_adv)), x) + gamma * MSE(z(x), z(x_adv)); both latents get gradient.

    x_adv maximises the latent distance ||z(x+delta) - z(x)||^2 (rohban-lab's ARAE code) with the
    attack `arae_attack` names: fgsm (the default, the paper's App. A) or pgd (rohban-lab's).
    """
    with torch.no_grad():
        z_reference = model.embed(x)
    x_adv = arae_attack(lambda xa: F.mse_loss(model.embed(xa), z_reference), x, cfg)
    reconstruction_adv, z_adv = model.reconstruct_and_embed(x_adv)
    recon = reconstruction_mse(reconstruction_adv, x)
    latent = F.mse_loss(model.embed(x), z_adv)
    return {"loss": recon + cfg["gamma"] * latent, "loss_reconstruction": recon, "loss_latent": latent}


def arae_attack(loss_of: LossOf, x: torch.Tensor, cfg: dict) -> torch.Tensor:
    """ARAE's training example: PGD from a uniform random start with step 2.5 * eps / steps.

    pgd: `attack_steps` steps (step `attack_step_size` when given), rohban-lab's code as published.
    fgsm (App. A: "we use the Fast Gradient Sign Method (FGSM) ... with l_inf-norm with a max
    perturbation of 8/255 and 4/255"): the same recipe with one step, which is x + eps * sign(g)
    clipped to [0, 1]: a step of 2.5 eps from a start within eps of x lands on the ball's face
    whatever the start. The gradient g is read at the random start, not at x, because at x the
    latent distance is at its minimum (zero, with a deterministic encoder) and its gradient is
    exactly zero: FGSM from x would return x itself, an ARAE with no attack at all.
    """
    eps = cfg["eps"]
    steps = 1 if cfg["arae_attack"] == "fgsm" else cfg["attack_steps"]
    step_size = 2.5 * eps / steps if eps > 0 else 1.0  # eps 0: no attack, but pgd wants a step > 0
    if cfg["arae_attack"] == "pgd" and cfg["attack_step_size"]:
        step_size = cfg["attack_step_size"]
    return pgd(loss_of, x, eps=eps, steps=steps, step_size=step_size, random_start=True)


def encoder_only_step(
    model: EncoderOnlyClassifier, x: torch.Tensor, labels: torch.Tensor, cfg: dict
) -> dict[str, torch.Tensor]:
    """Supervised PGD adversarial training of encoder + linear layer (paper Table 8 baseline).

    Step size defaults to 0.007, the paper's robust-head PGD step.
    """
    step_size = cfg["attack_step_size"] or 0.007
    x_adv = pgd(
        lambda xa: F.cross_entropy(model(xa), labels),
        x,
        eps=cfg["eps"],
        steps=cfg["attack_steps"],
        step_size=step_size,
        random_start=True,
    )
    logits = model(x_adv)
    loss = F.cross_entropy(logits, labels)
    accuracy = (logits.argmax(1) == labels).float().mean()
    return {"loss": loss, "loss_adversarial_ce": loss, "train_acc_adversarial": accuracy}
