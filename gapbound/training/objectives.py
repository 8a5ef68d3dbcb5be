"""Training objectives and the loss conventions every method shares.

- :class:`Supervised` (known Z): ``mean_{batch,latents} (f(x) - s)^2`` (through the gate's surrogate).
- :class:`Autoencoder` (known D / unknown): ``mean_{batch,dims} (x - D f(x))^2
  + l1 * mean_batch ||f(x)||_1``; the dictionary is frozen (known D) or learned
  with unit-norm columns (unknown).
- :class:`~gapbound.models.coding.SparseCoding` (in :mod:`gapbound.models`):
  the same reconstruction + L1 objective with codes inferred per sample.

**L1 normalisation.** The reconstruction term is the mean squared error over
the batch *and* the ``M`` input dimensions (``torch.nn.functional.mse_loss``);
the penalty is ``l1`` times the batch mean of each code's L1 norm (a sum over
the ``N`` latents). With unit-norm dictionary columns the penalty cannot be
evaded by rescaling. Per sample, ``mse + l1 ||s||_1`` equals
``(2 / M) [0.5 ||x - D s||^2 + lam ||s||_1]`` with ``lam = l1_to_lam(l1, M) = M l1 / 2``:
per-sample solvers (:func:`gapbound.inference.solve`) take that ``lam``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .batches import Batch
from .resample import Touched, resample_dead

if TYPE_CHECKING:  # annotations only: training must not import the models package at run time
    from ..models import Dictionary

__all__ = ["Trainable", "Supervised", "Autoencoder", "l1_to_lam", "lam_to_l1", "l1_penalty"]


def l1_to_lam(l1: float, M: int) -> float:
    """Per-sample LASSO weight with the same minimiser as ``mse + l1 * ||s||_1`` (MSE over ``M`` dims).

    Parameters
    ----------
    l1 : float
        Training-loss L1 weight (module docstring's normalisation).
    M : int
        Input dimension.

    Returns
    -------
    float
        ``M * l1 / 2``, the ``lam`` of ``0.5 ||x - D s||^2 + lam ||s||_1``.
    """
    return float(l1) * M / 2


def lam_to_l1(lam: float, M: int) -> float:
    """Inverse of :func:`l1_to_lam`: ``2 * lam / M``."""
    return 2 * float(lam) / M


def l1_penalty(codes: torch.Tensor) -> torch.Tensor:
    """Batch mean of each code's L1 norm (the penalty ``l1`` multiplies)."""
    return codes.abs().sum(-1).mean(-1)


class Trainable(Protocol):
    """What :func:`~gapbound.training.train` needs from a model."""

    def loss(self, batch: Batch, l1: float) -> tuple[torch.Tensor, torch.Tensor]: ...
    def after_step(self) -> None: ...
    def resample(self, dead: torch.Tensor, batch: Batch, generator: torch.Generator) -> Touched: ...
    def parameters(self) -> Any: ...


def supervised_loss(z: torch.Tensor, codes: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Known-Z loss from pre-activations ``z``, gated ``codes`` and targets ``s`` (see :class:`Supervised`)."""
    return torch.where(s > 0, (z - s) ** 2, codes**2).mean((-2, -1))


class Supervised(nn.Module):
    """Known-Z objective: regress the true codes, ``mean (f(x) - s)^2``, through the gate's surrogate.

    For an encoder ``f(x) = g(z)`` the loss of an entry with ``s > 0`` is taken on
    the pre-activation, ``(z - s)^2``, and of an entry with ``s = 0`` on the
    output, ``g(z)^2``. Wherever the active entries pass the gate this *is*
    ``(f(x) - s)^2`` (and for ReLU it is a convex upper bound of it in the
    output layer), but an active entry the gate has closed still gets a
    gradient. With the exact loss such a latent has no gradient on any sample
    and dies for good: at N = 1000 with 98 % of targets at zero, most of an MLP's
    output units died within 300 Adam steps (measured: 819 of 1000, MCC 0.16;
    with the surrogate none died and MCC was 0.82).
    """

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def loss(self, batch: Batch, l1: float) -> tuple[torch.Tensor, torch.Tensor]:
        x, s, _ = batch
        if s is None:
            raise ValueError("the supervised (known Z) objective needs true codes in every batch")
        z = self.encoder.preactivation(x)
        codes = self.encoder.gate(z)
        return supervised_loss(z, codes, s), codes

    def after_step(self) -> None:
        pass

    def resample(self, dead: torch.Tensor, batch: Batch, generator: torch.Generator) -> Touched:
        x, s, _ = batch
        with torch.no_grad():
            per_sample = ((self.encoder(x) - s) ** 2).sum(1)
        return resample_dead(dead, x, per_sample, generator, encoder=self.encoder)


class Autoencoder(nn.Module):
    """Reconstruction + L1 objective with an encoder and a (frozen or learned) unit-norm dictionary."""

    def __init__(self, encoder: nn.Module, dictionary: "Dictionary"):
        super().__init__()
        self.encoder = encoder
        self.dictionary = dictionary

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def loss(self, batch: Batch, l1: float) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch[0]
        codes = self.encoder(x)
        return F.mse_loss(self.dictionary(codes), x) + l1 * l1_penalty(codes), codes

    def after_step(self) -> None:
        if self.dictionary.weight.requires_grad:
            self.dictionary.normalise_()

    def resample(self, dead: torch.Tensor, batch: Batch, generator: torch.Generator) -> Touched:
        x = batch[0]
        with torch.no_grad():
            per_sample = ((self.dictionary(self.encoder(x)) - x) ** 2).sum(1)
        return resample_dead(dead, x, per_sample, generator, encoder=self.encoder, dictionary=self.dictionary)
