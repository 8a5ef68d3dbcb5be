"""Encoders and the dictionary (decoder).

- :class:`SAE`: the amortised linear-nonlinear encoder ``g(W x + b)`` with
  ``g`` one of ReLU, TopK or JumpReLU. Every variant is *linear-gated*: each
  output coordinate is either its pre-activation or 0, the encoder class the
  amortisation-gap bound of :mod:`gapbound.theory` covers.
- :class:`MLPEncoder`: ``relu(W2 relu(W1 x + b1) + b2)``, one hidden layer.
- :class:`Dictionary`: the linear decoder ``x_hat = D s`` with unit-norm columns.

Rows of every tensor are samples; the dictionary is stored ``M x N`` as in the
paper (``x = D s``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..utils.validation import check_dictionary, check_float, check_int

__all__ = ["SAE", "MLPEncoder", "Dictionary", "Activation", "make_encoder", "jump_relu"]

Activation = Literal["relu", "topk", "jumprelu"]


class _JumpReLU(torch.autograd.Function):
    """``z * 1[z > theta]`` with the straight-through threshold gradient of Rajamanoharan et al. (2024).

    The step function has zero gradient almost everywhere, so the threshold is
    trained through a rectangle-kernel pseudo-derivative of bandwidth ``eps``.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return z * (z > theta)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        z, theta = ctx.saved_tensors
        eps = ctx.eps
        grad_z = grad * (z > theta)
        window = ((z - theta).abs() < eps / 2).to(grad.dtype)
        grad_theta = (-(theta / eps) * window * grad).sum_to_size(theta.shape)
        return grad_z, grad_theta, None


def jump_relu(z: torch.Tensor, theta: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """JumpReLU ``z * 1[z > theta]`` with a straight-through estimate of ``d/d theta``."""
    return _JumpReLU.apply(z, theta, eps)


class SAE(nn.Module):
    """Sparse-autoencoder encoder ``g(W x + b)``.

    Parameters
    ----------
    M : int
        Input dimension.
    N : int
        Number of latents.
    activation : {"relu", "topk", "jumprelu"}
        ``relu``: ``max(z, 0)``. ``topk``: keep the ``k`` largest pre-activations
        (then ReLU), zero the rest. ``jumprelu``: ``z * 1[z > theta]`` with a
        learnable per-latent threshold ``theta >= 0``.
    k : int, optional
        Active latents for ``topk``.
    threshold : float
        Initial JumpReLU threshold.
    bandwidth : float
        Width of the rectangle kernel of the JumpReLU threshold's straight-through
        gradient (relative to pre-activations of order 1).

    Attributes
    ----------
    linear : torch.nn.Linear
        The pre-activation map: ``weight`` is ``W`` (``N x M``), ``bias`` is ``b``.
    """

    def __init__(
        self, M: int, N: int, activation: Activation = "relu", k: int | None = None, threshold: float = 1e-3,
        bandwidth: float = 0.05,
    ):
        super().__init__()
        self.M = check_int("M", M, minimum=1)
        self.N = check_int("N", N, minimum=1)
        if activation not in ("relu", "topk", "jumprelu"):
            raise ValueError(f"activation must be 'relu', 'topk' or 'jumprelu', got {activation!r}")
        self.activation = activation
        if activation == "topk":
            if k is None:
                raise ValueError("k must be given for activation='topk'")
            self.k = check_int("k", k, minimum=1, maximum=N)
        else:
            self.k = None
        self.linear = nn.Linear(M, N)
        if activation == "jumprelu":
            check_float("threshold", threshold, minimum=0.0)
            self.log_threshold = nn.Parameter(torch.full((N,), float(threshold)).clamp_min(1e-8).log())
            self.bandwidth = check_float("bandwidth", bandwidth, minimum=0.0, strict_minimum=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What :attr:`linear` reads: the input itself."""
        return x

    def preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """``W x + b`` for a batch ``x`` (``n x M``)."""
        if x.ndim != 2 or x.shape[1] != self.M:
            raise ValueError(f"x must have shape (n, {self.M}), got {tuple(x.shape)}")
        return self.linear(x)

    def gate(self, z: torch.Tensor) -> torch.Tensor:
        """Apply the nonlinearity to pre-activations ``z``."""
        if self.activation == "relu":
            return torch.relu(z)
        if self.activation == "topk":
            top = z.topk(self.k, dim=1)
            return torch.zeros_like(z).scatter(1, top.indices, torch.relu(top.values))
        return jump_relu(z, self.log_threshold.exp(), self.bandwidth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.preactivation(x))


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


def make_encoder(kind: str, M: int, N: int, hidden: int | None = None, **kwargs) -> nn.Module:
    """Build an encoder by name: ``"sae"`` (kwargs go to :class:`SAE`) or ``"mlp"`` (needs ``hidden``)."""
    if kind == "sae":
        return SAE(M, N, **kwargs)
    if kind == "mlp":
        if hidden is None:
            raise ValueError("hidden must be given for an MLP encoder")
        return MLPEncoder(M, N, hidden)
    raise ValueError(f"encoder kind must be 'sae' or 'mlp', got {kind!r}")
