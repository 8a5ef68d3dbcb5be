"""The one-hidden-layer MLP encoder and :func:`make_encoder`."""

from __future__ import annotations

import torch
from torch import nn

from ..utils.validation import check_int
from .sae import SAE

__all__ = ["MLPEncoder", "make_encoder"]


class MLPEncoder(nn.Module):
    """One-hidden-layer encoder ``relu(W2 relu(W1 x + b1) + b2)``.

    Parameters
    ----------
    M : int
        Input dimension.
    N : int
        Number of latents.
    hidden : int
        Hidden width ``h`` (the paper uses 32, 256, 1024; 11 x d_model for GPT-2).
    """

    def __init__(self, M: int, N: int, hidden: int):
        super().__init__()
        self.M = check_int("M", M, minimum=1)
        self.N = check_int("N", N, minimum=1)
        self.hidden = check_int("hidden", hidden, minimum=1)
        self.net = nn.Sequential(nn.Linear(M, hidden), nn.ReLU(), nn.Linear(hidden, N))

    @property
    def linear(self) -> nn.Linear:
        """The output layer, whose rows are the latents' pre-activation maps."""
        return self.net[2]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What :attr:`linear` reads: the hidden activations ``relu(W1 x + b1)``."""
        return self.net[1](self.net[0](x))

    def preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """``W2 relu(W1 x + b1) + b2`` for a batch ``x`` (``n x M``)."""
        if x.ndim != 2 or x.shape[1] != self.M:
            raise ValueError(f"x must have shape (n, {self.M}), got {tuple(x.shape)}")
        return self.net(x)

    def gate(self, z: torch.Tensor) -> torch.Tensor:
        """The output ReLU."""
        return torch.relu(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.preactivation(x))


def make_encoder(kind: str, M: int, N: int, hidden: int | None = None, **kwargs) -> nn.Module:
    """Build an encoder by name: ``"sae"`` (kwargs go to :class:`~gapbound.models.SAE`) or ``"mlp"`` (needs ``hidden``)."""
    if kind == "sae":
        return SAE(M, N, **kwargs)
    if kind == "mlp":
        if hidden is None:
            raise ValueError("hidden must be given for an MLP encoder")
        return MLPEncoder(M, N, hidden)
    raise ValueError(f"encoder kind must be 'sae' or 'mlp', got {kind!r}")
