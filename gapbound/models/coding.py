"""Sparse coding: a dictionary whose codes are inferred per sample (one model for synthetic SC and LM LCA).

The codes are not produced by an encoder: every training step infers each
sample's code by per-sample optimisation under the current dictionary
(:func:`gapbound.inference.solve`), and the dictionary then takes one Adam
step with the codes held fixed (alternating minimisation, Olshausen & Field
1997). Two uses share this one class:

- **synthetic sparse coding** (``n_samples`` given): codes are free variables of
  the training set, kept in a buffer and warm-started from where they were
  left (``inner_iter`` FISTA iterations per step);
- **language-model LCA** (``n_samples=None``): codes of streamed activations are
  inferred from zero each step with the locally competitive algorithm
  (``method="lca"``), optionally with an L0 target that adapts ``lam``.

Why not one joint gradient step on codes and dictionary: with ``M < N`` any
full-rank dictionary reconstructs the data exactly, so the only signal about
the true dictionary is the L1 term, which at the paper's weight is tiny. The
dictionary gradient carries that signal only when the codes are near their
per-sample optimum (envelope theorem), which joint Adam steps on the codes
never reach in practice (measured: unknown-setting MCC below the SAE's).

The training loss ``mse + l1 * mean ||s||_1`` (MSE averaged over the ``M``
input dimensions) equals ``(2 / M) * [0.5 ||x - D s||^2 + lam ||s||_1]`` with
``lam = gapbound.training.l1_to_lam(l1, M) = M * l1 / 2``: the inner solver uses that ``lam``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .dictionary import Dictionary
from ..inference import SOLVERS, solve
from ..training import l1_to_lam, lam_to_l1, resample_dead
from ..utils.validation import check_float, check_int

__all__ = ["SparseCoding"]


class SparseCoding(nn.Module):
    """A learned unit-norm dictionary with per-sample code inference.

    Parameters
    ----------
    dictionary : Dictionary
        The (learned or fixed) unit-norm dictionary.
    n_samples : int, optional
        Training-set size: keep one code row per sample and warm-start from it
        (batches then carry row indices). ``None``: infer from zero every step
        (streamed data).
    inner_iter : int
        Solver iterations per training step and per :meth:`encode` call.
    method : str
        Registered solver (``"fista"``; ``"lca"`` for the locally competitive algorithm).
    target_l0 : float, optional
        Mean number of active latents to aim for: after every training step
        ``lam`` is multiplied by ``(L0 / target_l0) ** gain`` (a sparsity target
        instead of a fixed L1 weight; the ``l1`` the training loop passes is then
        only the starting point). ``None``: ``lam = l1_to_lam(l1, M)`` each step.
    gain : float
        Exponent of the ``lam`` update (small: the batch L0 is noisy).

    Attributes
    ----------
    lam : torch.Tensor
        Scalar buffer: the LASSO weight of the last training step, used by
        :meth:`encode` (checkpointed with the model). NaN before training unless
        set with :meth:`set_lam`.
    """

    def __init__(self, dictionary: Dictionary, n_samples: int | None = None, inner_iter: int = 20,
                 method: str = "fista", target_l0: float | None = None, gain: float = 0.05):
        super().__init__()
        if method not in SOLVERS:
            raise ValueError(f"method must be a registered solver {sorted(SOLVERS)}, got {method!r}")
        self.dictionary = dictionary
        self.inner_iter = check_int("inner_iter", inner_iter, minimum=1)
        self.method = method
        self.target_l0 = None if target_l0 is None else check_float("target_l0", target_l0, minimum=0.0, strict_minimum=True)
        self.gain = check_float("gain", gain, minimum=0.0)
        self.register_buffer("lam", torch.tensor(float("nan"), dtype=torch.float64))
        # A buffer, not a parameter: codes move by per-sample inference, and are checkpointed with the model.
        self.codes: torch.Tensor | None
        if n_samples is None:
            self.codes = None
        else:
            self.register_buffer("codes", torch.zeros(check_int("n_samples", n_samples, minimum=1), dictionary.N))

    def set_lam(self, lam: float) -> "SparseCoding":
        """Fix the LASSO weight (e.g. before encoding with a dictionary trained elsewhere)."""
        self.lam.fill_(check_float("lam", lam, minimum=0.0))
        return self

    def _infer(self, x: torch.Tensor, lam: float, init: torch.Tensor | None = None) -> torch.Tensor:
        return solve(self.dictionary.weight.detach(), x, lam, method=self.method, init=init,
                     max_iter=self.inner_iter, tol=0.0).codes

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes of new samples: ``inner_iter`` solver iterations from zero at the current ``lam``."""
        lam = float(self.lam)
        if math.isnan(lam):
            raise ValueError("SparseCoding has no lam yet: train it or call set_lam(lam) before encode")
        return self._infer(x, lam)

    def loss(self, batch: Any, l1: float) -> tuple[torch.Tensor, torch.Tensor]:
        x, _, idx = batch
        if self.codes is not None and idx is None:
            raise ValueError("sparse coding with per-sample codes needs the dataset row indices of every batch")
        if self.target_l0 is None or math.isnan(float(self.lam)):
            self.lam.fill_(l1_to_lam(l1, self.dictionary.M))
        lam = float(self.lam)
        with torch.no_grad():
            codes = self._infer(x, lam, None if self.codes is None else self.codes[idx])
            if self.codes is not None:
                self.codes[idx] = codes
            if self.target_l0 is not None and self.training:
                l0 = float((codes > 0).sum(1).float().mean())
                self.lam.mul_((max(l0, 0.5) / self.target_l0) ** self.gain)
        l1_now = l1 if self.target_l0 is None else lam_to_l1(lam, self.dictionary.M)
        return F.mse_loss(self.dictionary(codes), x) + l1_now * codes.sum(1).mean(), codes

    @torch.no_grad()
    def after_step(self) -> None:
        if self.dictionary.weight.requires_grad:
            self.dictionary.normalise_()

    @torch.no_grad()
    def resample(self, dead: torch.Tensor, batch: Any, generator: torch.Generator) -> list[tuple[nn.Parameter, int]]:
        """Re-point unused atoms at the residuals of the batch's worst-reconstructed inputs (Bricken et al. 2023)."""
        x, _, idx = batch
        codes = self.codes[idx] if self.codes is not None else self._infer(x, float(self.lam))
        residual = x - self.dictionary(codes)
        return resample_dead(dead, residual, (residual**2).sum(1), generator, dictionary=self.dictionary)
