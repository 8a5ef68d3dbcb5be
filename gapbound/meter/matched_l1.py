"""The matched-L1 problem ``min 0.5 ||x - D s||^2  s.t.  s >= 0, ||s||_1 <= tau`` through exact LASSO solves.

Its solution is the LASSO solution at the per-sample ``lam`` where ``||s(lam)||_1 = tau``
(``lam`` is the constraint's multiplier; ``||s(lam)||_1`` is piecewise linear and
non-increasing), so a safeguarded secant search (Illinois regula falsi) over ``lam``,
each step one batched exact LASSO solve (:func:`gapbound.inference.fista`, whose
active-set finish is exact), replaces hundreds of projected-gradient passes over
``D``. A per-sample ``lam`` is a scalar one on rescaled data:
``argmin 0.5||x - Ds||^2 + lam ||s||_1 = lam * argmin 0.5||x/lam - Ds||^2 + ||s||_1``.
Samples the search leaves above the tolerance finish with projected FISTA
(:func:`gapbound.inference.fista_l1_ball`); every result carries its Frank-Wolfe gap.
"""

from __future__ import annotations

import torch

from ..inference import fista, fista_l1_ball

__all__ = ["solve_matched_l1", "frank_wolfe_gap"]


def frank_wolfe_gap(D: torch.Tensor, X: torch.Tensor, S: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Per-sample Frank-Wolfe gap of feasible ``S``: ``g.s - tau min(0, min_j g_j)``, ``g = D^T (D s - x)``.

    It bounds ``0.5||x - D s||^2`` minus the optimum of the L1-ball problem from above.
    """
    G = (S @ D.T - X) @ D
    return ((G * S).sum(1) - tau * G.min(1).values.clamp_max(0.0)).clamp_min(0.0)


def _lasso_l1(D: torch.Tensor, X: torch.Tensor, lam: torch.Tensor, init: torch.Tensor, max_iter: int) -> torch.Tensor:
    """Exact LASSO codes at per-sample ``lam`` via the scalar-``lam`` solver on ``X / lam``."""
    Xs = X / lam[:, None]
    tol = 1e-12 * float((0.5 * (Xs**2).sum(1)).median().clamp_min(1e-300))
    return lam[:, None] * fista(D, Xs, 1.0, init=init / lam[:, None], tol=tol, max_iter=max_iter).codes.to(X.dtype)


def solve_matched_l1(
    D: torch.Tensor, X: torch.Tensor, tau: torch.Tensor, init: torch.Tensor, tol: float, max_iter: int = 5000,
    max_steps: int = 40,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Solve the matched-L1 problem per sample; returns ``(codes, objective, frank_wolfe_gap)``.

    Parameters
    ----------
    D, X : torch.Tensor
        ``M x N`` dictionary and ``n x M`` (bias-free) data, same dtype.
    tau : torch.Tensor
        Per-sample L1 budgets (``n``).
    init : torch.Tensor
        A feasible start (the SAE's codes).
    tol : float
        Target Frank-Wolfe gap (absolute).
    """
    n = X.shape[0]
    S = init.clone()
    lam_max = (X @ D).amax(1).clamp_min(0.0)  # at lam >= lam_max the codes are 0
    active = (tau > 0) & (lam_max > 0) & (frank_wolfe_gap(D, X, S, tau) > tol)
    # bracket: f(lam) = ||s(lam)||_1 - tau is >= 0 at lo and <= 0 at hi
    hi, f_hi = lam_max.clone(), -tau.clone()
    lo, f_lo = torch.zeros_like(tau), torch.full_like(tau, float("nan"))
    G = (X - S @ D.T) @ D
    guess = torch.where(S > 0, G, torch.nan).nanmedian(1).values.nan_to_num(0.0).clamp(min=1e-3 * lam_max, max=lam_max)
    lam, side = guess, torch.zeros(n, dtype=torch.long, device=X.device)
    for _ in range(max_steps):
        rows = active.nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        codes = _lasso_l1(D, X[rows], lam[rows], S[rows], max_iter)
        f = codes.sum(1) - tau[rows]
        feasible = codes * (tau[rows] / codes.sum(1).clamp_min(1e-300)).clamp_max(1.0)[:, None]
        S[rows] = feasible
        done = f.abs() <= 1e-10 * tau[rows]
        up = f > 0  # too little shrinkage: lam* is above
        lo[rows] = torch.where(up, lam[rows], lo[rows])
        f_lo[rows] = torch.where(up, f, f_lo[rows])
        hi[rows] = torch.where(~up, lam[rows], hi[rows])
        f_hi[rows] = torch.where(~up, f, f_hi[rows])
        # Illinois: halve the stale end's value when the same side moves twice
        new_side = torch.where(up, 1, -1)
        stale = new_side == side[rows]
        f_hi[rows] = torch.where(stale & up, f_hi[rows] / 2, f_hi[rows])
        f_lo[rows] = torch.where(stale & ~up, f_lo[rows] / 2, f_lo[rows])
        side[rows] = new_side
        l, h, fl, fh = lo[rows], hi[rows], f_lo[rows], f_hi[rows]
        secant = h - fh * (h - l) / (fh - fl)
        no_lo = torch.isnan(fl)  # no point with f >= 0 yet: shrink lam geometrically towards 0
        nxt = torch.where(no_lo, h / 4, torch.where(torch.isfinite(secant) & (secant > l) & (secant < h), secant, (l + h) / 2))
        lam[rows] = nxt
        active[rows] = ~done & (h - l > 1e-14 * lam_max[rows]) & (nxt > 1e-12 * lam_max[rows])
    gap = frank_wolfe_gap(D, X, S, tau)
    rest = (gap > tol).nonzero().squeeze(1)
    if rest.numel():  # what the search left (e.g. the constraint inactive at lam -> 0): projected FISTA
        res = fista_l1_ball(D, X[rest], tau[rest], init=S[rest], tol=tol, max_iter=max_iter)
        better = res.objective.to(X.dtype) <= 0.5 * ((X[rest] - S[rest] @ D.T) ** 2).sum(1)
        S[rest] = torch.where(better[:, None], res.codes.to(X.dtype), S[rest])
        gap = frank_wolfe_gap(D, X, S, tau)
    return S, 0.5 * ((X - S @ D.T) ** 2).sum(1), gap
