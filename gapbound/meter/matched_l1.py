"""The matched-L1 problem ``min 0.5 ||x - D s||^2  s.t.  s >= 0, ||s||_1 <= tau`` per sample.

Its solution is the LASSO solution at the per-sample ``lam`` where ``||s(lam)||_1 = tau``
(``lam`` is the constraint's multiplier). :func:`gapbound.inference.working_set.l1_ball_working_set`
finds it on per-sample working sets (a secant search over ``lam`` of exact restricted
LASSO solves, warm-started along ``lam``); this module gives it the dense interface
and the exact Frank-Wolfe gap to check it with.
"""

from __future__ import annotations

import torch

from ..inference.working_set import l1_ball_working_set

__all__ = ["solve_matched_l1", "frank_wolfe_gap"]


def frank_wolfe_gap(D: torch.Tensor, X: torch.Tensor, S: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Per-sample Frank-Wolfe gap of feasible ``S``: ``g.s - tau min(0, min_j g_j)``, ``g = D^T (D s - x)``.

    It bounds ``0.5||x - D s||^2`` minus the optimum of the L1-ball problem from above.
    """
    G = (S @ D.T - X) @ D
    return ((G * S).sum(1) - tau * G.min(1).values.clamp_max(0.0)).clamp_min(0.0)


def solve_matched_l1(
    D: torch.Tensor, X: torch.Tensor, tau: torch.Tensor, init: torch.Tensor, tol: float, max_iter: int = 5000,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Solve the matched-L1 problem per sample; returns dense float64 ``(codes, objective, frank_wolfe_gap)``.

    Parameters
    ----------
    D, X : torch.Tensor
        ``M x N`` dictionary and ``n x M`` (bias-free) data.
    tau : torch.Tensor
        Per-sample L1 budgets (``n``).
    init : torch.Tensor
        A start (e.g. the SAE's codes; scaled into the budget if needed).
    tol : float
        Target Frank-Wolfe gap (absolute).
    max_iter : int
        Cap on the working-set rounds.
    """
    res = l1_ball_working_set(D, X, tau, init=init, tol=tol, max_rounds=max_iter)
    return res.dense(), res.objective, res.duality_gap
