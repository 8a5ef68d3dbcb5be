"""Sparse coding: codes are free per-sample variables, learned jointly with the dictionary.

Training minimises the same objective as the autoencoders (see
:mod:`gapbound.training`) over the dictionary *and* one non-negative code per
training sample (projected after every Adam step), which is the paper's
gradient-based sparse coding. New samples are encoded by per-sample
optimisation with the dictionary fixed (:func:`gapbound.inference.solve`).
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .encoders import Dictionary
from .inference import InferenceResult, solve
from .validation import check_float, check_int

__all__ = ["SparseCoding", "encode"]


class SparseCoding(nn.Module):
    """Dictionary plus one free code per training sample.

    Parameters
    ----------
    dictionary : Dictionary
        The (learned or fixed) unit-norm dictionary.
    n_samples : int
        Training-set size (one code row per sample; batches carry row indices).
    init_scale : float
        Codes start uniform in ``[0, init_scale)``.
    seed : int
        Seed of the code initialisation.
    """

    def __init__(self, dictionary: Dictionary, n_samples: int, init_scale: float = 0.01, seed: int = 0):
        super().__init__()
        self.dictionary = dictionary
        n = check_int("n_samples", n_samples, minimum=1)
        check_float("init_scale", init_scale, minimum=0.0)
        g = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
        self.codes = nn.Parameter(torch.rand(n, dictionary.N, generator=g) * init_scale)

    def loss(self, batch, l1: float) -> tuple[torch.Tensor, torch.Tensor]:
        x, _, idx = batch
        if idx is None:
            raise ValueError("sparse coding needs the dataset row indices of every batch")
        codes = self.codes[idx]
        return F.mse_loss(self.dictionary(codes), x) + l1 * codes.abs().sum(1).mean(), codes

    @torch.no_grad()
    def after_step(self) -> None:
        self.codes.clamp_(min=0.0)
        if self.dictionary.weight.requires_grad:
            self.dictionary.normalise_()

    @torch.no_grad()
    def resample(self, dead: torch.Tensor, batch, generator: torch.Generator) -> list[tuple[nn.Parameter, int]]:
        """Re-point unused atoms at the worst-reconstructed inputs of the batch."""
        x, _, idx = batch
        residual = x - self.dictionary(self.codes[idx])
        w = (residual**2).sum(1).double().cpu() ** 2
        dead_idx = dead.nonzero().flatten()
        pick = torch.multinomial(w if float(w.sum()) > 0 else torch.ones_like(w), len(dead_idx), replacement=True, generator=generator)
        r = residual[pick.to(x.device)]
        touched: list[tuple[nn.Parameter, int]] = []
        if self.dictionary.weight.requires_grad:
            self.dictionary.weight[:, dead_idx] = (r / r.norm(dim=1, keepdim=True).clamp_min(1e-12)).T
            touched.append((self.dictionary.weight, 1))
        return touched

    def encode(self, x: torch.Tensor, lam: float | None = None, **solver_kwargs) -> torch.Tensor:
        """Codes of new samples by per-sample inference under the current dictionary."""
        return encode(self.dictionary.weight.detach(), x, lam=1e-3 if lam is None else lam, **solver_kwargs).codes


def encode(D: torch.Tensor, X: torch.Tensor, lam: float = 1e-3, method: str = "fista", **solver_kwargs) -> InferenceResult:
    """Encode ``X`` under dictionary ``D`` by per-sample optimisation from zero (thin wrapper over :func:`solve`)."""
    return solve(D, X, lam, method=method, **solver_kwargs)
