"""FLOPs measured with ``torch.utils.flop_counter.FlopCounterMode`` (never hand-written formulas for whole runs).

PyTorch counts the matrix products (``mm``, ``addmm``, ``bmm``, convolutions,
attention) that dominate these models: a product of ``(n x k)`` by ``(k x m)``
is ``2 n k m`` FLOPs. Element-wise work (activations, the optimiser's update)
is not counted, which is the usual convention in the compute-optimal
literature and the one the paper's MCC-vs-FLOPs plots follow.

Inside :func:`count_flops` (and only there: torch's global registry is left
alone, so a plain ``FlopCounterMode()`` elsewhere counts what torch counts) a
few operators torch has no formula for get the textbook counts: Cholesky
factorisations and solves and in-place ``addmm_`` (the active set's small
factorisations and sparse certificates), and gapbound's compiled active set
(``gapbound::active_set``), which reports the FLOPs it spent.
"""

from __future__ import annotations

import contextvars
import math
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_flops", "forward_flops", "train_step_flops", "gapbound_formulas", "counting"]

_COUNTING: contextvars.ContextVar[bool] = contextvars.ContextVar("gapbound_counting_flops", default=False)


def counting() -> bool:
    """Whether the caller runs inside :func:`count_flops` (code with its own FLOP report routes it to the counter only then)."""
    return _COUNTING.get()


def _cholesky_flops(a_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    k = a_shape[-1]
    return math.prod(a_shape[:-2]) * k**3 // 3


def _cholesky_solve_flops(b_shape: Any, l_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    k, nrhs = b_shape[-2], b_shape[-1]
    return math.prod(b_shape[:-2]) * 2 * k * k * nrhs


def _addmm_inplace_flops(inp: Any, mat1: torch.Tensor, mat2: torch.Tensor, *args: Any, out_val: Any = None, **kwargs: Any) -> int:
    # The sparse certificates multiply a sparse code matrix by the Gram matrix in place
    # (``C.addmm_(S, G)``): 2 nnz N FLOPs, which a shape-based formula cannot see; a dense
    # in-place addmm costs what the out-of-place one does.
    if mat1.is_sparse:
        return 2 * int(mat1._nnz()) * mat2.shape[-1]
    return 2 * mat1.shape[0] * mat1.shape[1] * mat2.shape[-1]


def _own_count_flops(*args: Any, out_val: Any = None, **kwargs: Any) -> int:
    # gapbound::active_set returns the FLOPs each sample spent as its fourth output.
    return int(out_val[3].sum())


_addmm_inplace_flops._get_raw = True  # type: ignore[attr-defined]  # raw values, not shapes
_own_count_flops._get_raw = True  # type: ignore[attr-defined]


def gapbound_formulas() -> dict[Any, Callable[..., int]]:
    """The extra FLOP formulas of gapbound's counting context, as a ``FlopCounterMode(custom_mapping=...)``."""
    aten = torch.ops.aten
    mapping: dict[Any, Callable[..., int]] = {
        aten.linalg_cholesky_ex: _cholesky_flops,
        aten.cholesky_solve: _cholesky_solve_flops,
        aten.addmm_: _addmm_inplace_flops,
    }
    if hasattr(torch.ops.gapbound, "active_set"):  # defined once gapbound.inference is imported
        mapping[torch.ops.gapbound.active_set] = _own_count_flops
    return mapping


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, Any]:
    """Run ``fn(*args, **kwargs)`` under a FLOP counter with gapbound's extra formulas.

    Returns
    -------
    (int, Any)
        Total FLOPs counted and ``fn``'s return value.
    """
    token = _COUNTING.set(True)
    try:
        with FlopCounterMode(display=False, custom_mapping=gapbound_formulas()) as counter:
            out = fn(*args, **kwargs)
    finally:
        _COUNTING.reset(token)
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
