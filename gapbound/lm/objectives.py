"""TopK training with the AuxK dead-latent loss (Gao et al. 2024), for any encoder with pre-activations.

The field trains language-model SAEs at a *sparsity target* rather than with
one L1 weight: a TopK encoder keeps each token's ``k`` largest pre-activations,
so L0 is ``k`` by construction, and dead latents are revived by an auxiliary
loss instead of resampling. :class:`TopKAutoencoder` applies this to any
encoder exposing ``preactivation(x)`` (the SAE's ``W x + b``; the MLP's
``W2 relu(W1 x + b1) + b2``), so the SAE and the MLP encoder are trained by the
same recipe and compared at the same L0.

AuxK: a latent is *dead* once it has not fired for ``dead_steps`` training
steps. Each step, the ``aux_k`` largest pre-activations among dead latents
reconstruct the main reconstruction's residual ``e = x - x_hat`` through
their decoder columns, and ``aux_coef * ||e - e_hat||^2 / ||e||^2`` is added
to the loss (Gao et al.: ``aux_k = 512``, ``aux_coef = 1/32``). The gradient
reaches exactly the dead latents' encoder rows and decoder columns.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models import Dictionary, topk_relu
from ..utils.validation import check_float, check_int

__all__ = ["TopKAutoencoder"]


class TopKAutoencoder(nn.Module):
    """TopK encoder + unit-norm dictionary, trained on MSE plus the AuxK loss.

    Parameters
    ----------
    encoder : nn.Module
        Has ``preactivation(x)`` (``n x N``).
    dictionary : Dictionary
        The learned unit-norm decoder (``M x N``).
    k : int
        Active latents per sample (the L0 target).
    aux_k : int
        Dead latents allowed to reconstruct the residual per sample.
    aux_coef : float
        Weight of the AuxK loss (0 disables it).
    dead_steps : int
        Steps without firing after which a latent counts as dead.

    Attributes
    ----------
    since_fired : torch.Tensor
        Buffer: training steps since each latent last fired (checkpointed).
    """

    def __init__(self, encoder: nn.Module, dictionary: Dictionary, k: int, aux_k: int = 512,
                 aux_coef: float = 1 / 32, dead_steps: int = 200):
        super().__init__()
        self.encoder = encoder
        self.dictionary = dictionary
        self.k = check_int("k", k, minimum=1, maximum=dictionary.N)
        self.aux_k = check_int("aux_k", aux_k, minimum=1)
        self.aux_coef = check_float("aux_coef", aux_coef, minimum=0.0)
        self.dead_steps = check_int("dead_steps", dead_steps, minimum=1)
        self.register_buffer("since_fired", torch.zeros(dictionary.N, dtype=torch.long))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The ``k`` largest (non-negative) pre-activations of every sample; the rest zero."""
        return topk_relu(self.encoder.preactivation(x), self.k)

    def loss(self, batch: Any, l1: float) -> tuple[torch.Tensor, torch.Tensor]:
        """MSE (mean over batch and dimensions) + ``aux_coef`` x AuxK; ``l1`` is unused (TopK sets the sparsity)."""
        x = batch[0]
        z = self.encoder.preactivation(x)
        codes = topk_relu(z, self.k)
        recon = self.dictionary(codes)
        loss = F.mse_loss(recon, x)
        if self.training:
            with torch.no_grad():
                fired = (codes > 0).any(0)
                self.since_fired.add_(1).masked_fill_(fired, 0)
            dead = self.since_fired > self.dead_steps
            n_dead = int(dead.sum())
            if n_dead and self.aux_coef > 0:
                residual = (x - recon).detach()
                aux_codes = topk_relu(z.masked_fill(~dead, float("-inf")), min(self.aux_k, n_dead))
                aux = ((self.dictionary(aux_codes) - residual) ** 2).sum(1) / (residual**2).sum(1).clamp_min(1e-12)
                loss = loss + self.aux_coef * aux.mean()
        return loss, codes

    def after_step(self) -> None:
        self.dictionary.normalise_()

    def resample(self, dead: torch.Tensor, batch: Any, generator: torch.Generator) -> list:
        """No resampling: AuxK revives dead latents (train with ``resample_every=0``)."""
        return []
