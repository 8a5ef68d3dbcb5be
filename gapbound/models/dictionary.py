"""The trainable linear decoder ``x_hat = D s`` with unit-norm atoms."""

from __future__ import annotations

import torch
from torch import nn

from ..utils.validation import check_dictionary, check_int

__all__ = ["Dictionary"]


class Dictionary(nn.Module):
    """Linear decoder ``x_hat = D s`` with unit-norm columns.

    Parameters
    ----------
    M, N : int
        Output dimension and number of atoms.
    weight : torch.Tensor, optional
        Initial ``M x N`` dictionary (e.g. the true ``D`` in the known-D
        setting); Gaussian with unit-norm columns when omitted.
    trainable : bool
        Whether ``D`` is learned. Trainable dictionaries are renormalised with
        :meth:`normalise_` after every optimiser step, so the L1 penalty cannot
        be evaded by shrinking codes and growing atoms.
    """

    def __init__(self, M: int, N: int, weight: torch.Tensor | None = None, trainable: bool = True):
        super().__init__()
        check_int("M", M, minimum=1)
        check_int("N", N, minimum=1)
        if weight is None:
            weight = torch.randn(M, N)
        else:
            weight = check_dictionary(weight, name="weight", rows=M, cols=N).detach().clone().float()
        self.weight = nn.Parameter(weight, requires_grad=trainable)
        self.normalise_()

    @property
    def M(self) -> int:
        return self.weight.shape[0]

    @property
    def N(self) -> int:
        return self.weight.shape[1]

    @torch.no_grad()
    def normalise_(self) -> None:
        """Rescale every column to unit Euclidean norm, in place."""
        self.weight.div_(self.weight.norm(dim=0, keepdim=True).clamp_min(1e-12))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.ndim != 2 or codes.shape[1] != self.N:
            raise ValueError(f"codes must have shape (n, {self.N}), got {tuple(codes.shape)}")
        return codes @ self.weight.T
