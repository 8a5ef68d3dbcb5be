"""Gap-safe screening for the non-negative LASSO (Fercoq, Gramfort and Salmon, 2015).

For codes ``s >= 0`` with residual ``r = x - D s``, the residual scaled into the dual
feasible set, ``theta = a r`` with ``a = min(1, lam / max_j d_j.r)``, has duality gap
``g = P(s) - (x.theta - 0.5 ||theta||^2)``. The dual objective is 1-strongly concave, so
the dual optimum ``theta*`` (unique; ``theta* = x - D s*`` for every optimum ``s*``) lies
in the ball ``||theta - theta*|| <= sqrt(2 g)`` (``sqrt(2 g) / lam`` in the convention
that scales the dual by ``1 / lam``). An atom with ``s*_j > 0`` has ``d_j.theta* = lam``
(KKT), so an atom with ``d_j.theta + ||d_j|| sqrt(2 g) < lam`` is zero at every optimum.

The compiled active set does not screen: measured on the grid's cells
(``benchmarks/solvers.py --parts screen``), the test discards atoms only once the gap is
already within a round or two of the certificate, which bounds what it could save there
(docs/inference.md, "Safe screening").
"""

from __future__ import annotations

from typing import Any

import torch

from .problem import Problem, gap_from_residual

__all__ = ["gap_safe_screen"]

# Slack for rounding in d_j.theta (float64 products of length M): relative to ||d_j|| ||x||.
_ROUNDING = 1e-12


def gap_safe_screen(D: Any, X: Any, S: Any, lam: float, radius_scale: float = 1.0) -> torch.Tensor:
    """Atoms that are zero at every optimum of ``min 0.5 ||x - D s||^2 + lam sum(s), s >= 0``, by the gap-safe sphere test.

    Parameters
    ----------
    D : array-like
        ``M x N`` dictionary (real, finite, no zero column).
    X : array-like
        ``n x M`` observations.
    S : array-like
        ``n x N`` non-negative codes (any feasible point: an iterate, a warm start, zeros).
    lam : float
        L1 weight ``> 0`` (at ``lam = 0`` nothing can be screened).
    radius_scale : float
        Multiplies the safe radius ``sqrt(2 gap)``; ``1`` is the rule. Values below 1 are
        unsafe and exist to check that a test catches them.

    Returns
    -------
    torch.Tensor
        Bool ``n x N`` (on ``D``'s device): True where the atom is certainly zero at the optimum.
    """
    prob = Problem.build(D, X, lam, init=S)
    D64, X64, S64 = prob.D64, prob.X64, prob.S0.double()
    R = X64 - S64 @ D64.T
    C = R @ D64
    _, gap = gap_from_residual(X64, R, C, S64, prob.lam)
    corr = C.amax(1)
    scale = torch.where(corr > prob.lam, prob.lam / corr.clamp_min(torch.finfo(torch.float64).tiny), torch.ones_like(corr))
    norms = D64.norm(dim=0)
    radius = radius_scale * torch.sqrt(2.0 * gap)
    slack = _ROUNDING * norms[None, :] * X64.norm(dim=1, keepdim=True)
    return scale[:, None] * C + radius[:, None] * norms[None, :] + slack < prob.lam
