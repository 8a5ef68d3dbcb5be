"""Sparse coding: codes are free per-sample variables, learned jointly with the dictionary.

Training minimises the same objective as the autoencoders (see
:mod:`gapbound.training.loop`) over the dictionary *and* one non-negative code per
training sample, by alternating minimisation (Olshausen & Field 1997): at
every step the batch's codes take ``inner_iter`` FISTA iterations on the
training objective, warm-started from where they were left, and then the
dictionary takes one Adam step with the codes held fixed.

Why not one joint gradient step on codes and dictionary: with ``M < N`` any
full-rank dictionary reconstructs the data exactly, so the only signal about
the true dictionary is the L1 term, which at the paper's weight is tiny. The
dictionary gradient carries that signal only when the codes are near their
per-sample optimum (envelope theorem), which joint Adam steps on the codes
never reach in practice (measured: unknown-setting MCC below the SAE's).

The training loss ``mse + l1 * mean ||s||_1`` (MSE averaged over the ``M``
input dimensions) equals ``(2 / M) * [0.5 ||x - D s||^2 + lam ||s||_1]`` with
``lam = M * l1 / 2``: the inner solver uses that ``lam``. New samples are
encoded by per-sample optimisation with the dictionary fixed
(:func:`gapbound.inference.solve`).
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .encoders import Dictionary
from ..inference import InferenceResult, solve
from ..training.loop import high_loss_inputs
from ..utils.validation import check_int

__all__ = ["SparseCoding", "encode"]


class SparseCoding(nn.Module):
    """Dictionary plus one free non-negative code per training sample.

    Parameters
    ----------
    dictionary : Dictionary
        The (learned or fixed) unit-norm dictionary.
    n_samples : int
        Training-set size (one code row per sample; batches carry row indices).
    inner_iter : int
        FISTA iterations on a batch's codes per training step.
    """

    def __init__(self, dictionary: Dictionary, n_samples: int, inner_iter: int = 20):
        super().__init__()
        self.dictionary = dictionary
        n = check_int("n_samples", n_samples, minimum=1)
        self.inner_iter = check_int("inner_iter", inner_iter, minimum=1)
        # A buffer, not a parameter: codes move by per-sample inference, and are checkpointed with the model.
        self.register_buffer("codes", torch.zeros(n, dictionary.N))

    def loss(self, batch, l1: float) -> tuple[torch.Tensor, torch.Tensor]:
        x, _, idx = batch
        if idx is None:
            raise ValueError("sparse coding needs the dataset row indices of every batch")
        lam = self.dictionary.M * l1 / 2
        with torch.no_grad():
            codes = solve(self.dictionary.weight.detach(), x, lam, method="fista", init=self.codes[idx],
                          max_iter=self.inner_iter, tol=0.0).codes
            self.codes[idx] = codes
        return F.mse_loss(self.dictionary(codes), x) + l1 * codes.sum(1).mean(), codes

    @torch.no_grad()
    def after_step(self) -> None:
        if self.dictionary.weight.requires_grad:
            self.dictionary.normalise_()

    @torch.no_grad()
    def resample(self, dead: torch.Tensor, batch, generator: torch.Generator) -> list[tuple[nn.Parameter, int]]:
        """Re-point unused atoms at the residuals of the batch's worst-reconstructed inputs."""
        x, _, idx = batch
        residual = x - self.dictionary(self.codes[idx])
        dead_idx = dead.nonzero().flatten()
        touched: list[tuple[nn.Parameter, int]] = []
        if self.dictionary.weight.requires_grad:
            directions = high_loss_inputs(residual, (residual**2).sum(1), len(dead_idx), generator)
            self.dictionary.weight[:, dead_idx] = directions.T
            touched.append((self.dictionary.weight, 1))
        return touched

    def encode(self, x: torch.Tensor, lam: float | None = None, **solver_kwargs) -> torch.Tensor:
        """Codes of new samples by per-sample inference under the current dictionary."""
        return encode(self.dictionary.weight.detach(), x, lam=1e-3 if lam is None else lam, **solver_kwargs).codes


def encode(D: torch.Tensor, X: torch.Tensor, lam: float = 1e-3, method: str = "fista", **solver_kwargs) -> InferenceResult:
    """Encode ``X`` under dictionary ``D`` by per-sample optimisation from zero (thin wrapper over :func:`solve`)."""
    return solve(D, X, lam, method=method, **solver_kwargs)
