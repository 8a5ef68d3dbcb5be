"""FLOPs measured with ``torch.utils.flop_counter.FlopCounterMode`` (never hand-written formulas).

PyTorch counts the matrix products (``mm``, ``addmm``, ``bmm``, convolutions,
attention) that dominate these models: a product of ``(n x k)`` by ``(k x m)``
is ``2 n k m`` FLOPs. Element-wise work (activations, the optimiser's update)
is not counted, which is the usual convention in the compute-optimal
literature and the one the paper's MCC-vs-FLOPs plots follow.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_flops", "forward_flops", "train_step_flops"]


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, Any]:
    """Run ``fn(*args, **kwargs)`` under a FLOP counter.

    Returns
    -------
    (int, Any)
        Total FLOPs counted and ``fn``'s return value.
    """
    with FlopCounterMode(display=False) as counter:
        out = fn(*args, **kwargs)
    return int(counter.get_total_flops()), out


def forward_flops(module: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass of ``module`` on batch ``x`` (no autograd graph)."""
    with torch.no_grad():
        return count_flops(module, x)[0]


def train_step_flops(loss_fn: Callable[[], torch.Tensor], params: list[torch.Tensor]) -> int:
    """FLOPs of one training step: the forward pass in ``loss_fn`` plus its backward pass.

    Gradients are computed with ``torch.autograd.grad`` so no ``.grad`` is left
    behind on ``params``.
    """

    def step() -> None:
        loss = loss_fn()
        torch.autograd.grad(loss, [p for p in params if p.requires_grad], allow_unused=True)

    return count_flops(step)[0]
