"""Activation functions shared by the SAE architectures: ReLU, TopK, JumpReLU (with a trainable threshold)."""

from __future__ import annotations

from typing import Literal

import torch

__all__ = ["Activation", "jump_relu", "topk_relu"]

Activation = Literal["relu", "topk", "jumprelu", "gated"]


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
    """JumpReLU ``z * 1[z > theta]`` with a straight-through estimate of ``d/d theta``.

    ``theta`` must be ``>= 0`` for the output to be non-negative; SAELens's and
    dictionary_learning's ``relu(z) * 1[z > theta]`` equals this with ``max(theta, 0)``.
    """
    return _JumpReLU.apply(z, theta, eps)


def topk_relu(z: torch.Tensor, k: int) -> torch.Tensor:
    """Keep each row's ``k`` largest entries, ReLU them, zero the rest (SAELens's ``TopK``)."""
    top = z.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(z).scatter(-1, top.indices, torch.relu(top.values))
