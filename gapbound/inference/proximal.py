"""Proximal-gradient solvers: projected ISTA, FISTA with restart and the active-set finish, FISTA on an L1 ball.

- ``fista``: accelerated projected gradient, step ``1/||D||_2^2``, O'Donoghue &
  Candes gradient restart, stopping on the duality-gap tolerance. With
  ``polish=True`` (default) it is an **exact solver**: the active set
  (:mod:`.active_set`) runs first (before any iteration; it usually certifies
  every sample by itself, ``n_iter == 0``) and again at every check on the
  iterates of the samples it did not finish, and its codes are kept per sample
  where they lower the objective. ``max_iter`` then caps only the FISTA
  iterations between those exact solves, not the work. With ``polish=False``
  it is plain restarted FISTA whose cost ``max_iter`` sets exactly (with
  ``tol=0``): pass that for an "N iterations" budget.
- ``ista``: the paper's plain projected gradient update (no momentum, no polish).
- ``fista_l1_ball``: FISTA for ``min 0.5 ||x - D s||^2`` over ``s >= 0``,
  ``sum(s) <= radius`` with a Frank-Wolfe certificate.

The Gram form ``D^T D`` is used for the gradient when it is cheaper
(``N <= 2 M``), the factored form ``D^T (D s - x)`` otherwise.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import numpy as np
import torch

from ..utils.validation import as_tensor, check_float, check_int
from .active_set import compact, run_active_set
from .problem import InferenceResult, Problem

__all__ = ["ista", "fista", "fista_l1_ball", "project_capped_simplex", "proximal_gradient", "check_common"]

_ACTIVE_SET_FIRST_FLOPS = 2e7


def check_common(max_iter: int, tol: float, check_every: int) -> None:
    """Validate the options every iterative solver takes."""
    check_int("max_iter", max_iter, minimum=1)
    check_float("tol", tol, minimum=0.0)
    check_int("check_every", check_every, minimum=1)


def neg_grad(prob: Problem, Y: torch.Tensor, rows: torch.Tensor, cache: dict, step: float | None = None) -> torch.Tensor:
    """``D^T (x - D y)`` for the active rows, Gram or factored form; with ``step``, the gradient step ``y + step D^T (x - D y)``.

    The step is folded into the dictionary's cached ``I - step G`` and the
    rows' ``step D^T x`` so that it costs one product: at small sizes each extra
    tensor operation costs as much as the product itself. ``step`` must be
    ``1 / L`` (the only step the solvers take).
    """
    scale = 1.0 if step is None else step
    if prob.use_gram:
        G = prob.atoms.gram() if step is None else prob.atoms.step_matrix()
        if cache.get("rows") is not rows:
            cache["DtX"], cache["rows"] = (prob.X[rows] @ prob.D).mul_(scale), rows
        return torch.addmm(cache["DtX"], Y, G, alpha=-1.0 if step is None else 1.0)
    if cache.get("rows") is not rows:
        cache["X"], cache["rows"] = prob.X[rows], rows
    R = torch.addmm(cache["X"], Y, prob.D.T, alpha=-1.0)
    return R @ prob.D if step is None else torch.addmm(Y, R, prob.D, alpha=step)


@functools.lru_cache(maxsize=8)
def _momentum_weights(n: int) -> np.ndarray:
    """FISTA's momentum weights ``(t_j - 1) / t_{j+1}``, ``j < n`` (cached: the same for every call)."""
    t = np.ones(n + 1)
    for j in range(n):
        t[j + 1] = 0.5 * (1 + math.sqrt(1 + 4 * t[j] ** 2))
    return (t[:-1] - 1) / t[1:]


Prox = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
Certify = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def _active_set_first(prob: Problem, tol: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The active set from the problem's start: dense float64 (codes, objective, gap), never worse than the start.

    A warm start is kept, per sample, where the active set does not lower its objective. Samples
    whose start is no better than zero codes (``P(s0) >= 0.5 ||x||^2``: a start that is noise
    rather than a guess) start from zero, as a cold start would, so a poor start costs what no
    start costs.
    """
    rows = torch.arange(prob.n, device=prob.device)
    if prob.cold:  # an empty support; its steps only descend from the zero codes
        idx = torch.zeros(prob.n, 1, dtype=torch.long, device=prob.device)
        vals = torch.zeros(prob.n, 1, dtype=torch.float64, device=prob.device)
        return run_active_set(prob, idx, vals, None, rows, tol, max_outer=64)
    P, gap, C = prob.certify(prob.S0, rows)
    start = prob.S0
    poor = P >= 0.5 * prob.xx64
    if poor.any():
        start = start.masked_fill(poor[:, None], 0.0)
        C[poor] = prob.DtX64[poor]
    idx, vals = compact(prob, start, C, rows)
    S_all, Pc, gapc = run_active_set(prob, idx, vals, C, rows, tol, max_outer=64)
    worse = Pc >= P
    if worse.any():
        S_all[worse] = prob.S0[worse].double()
    return S_all, torch.where(worse, P, Pc), torch.where(worse, gap, gapc)


def proximal_gradient(
    prob: Problem, max_iter: int, tol: float, check_every: int, momentum: bool, polish: bool,
    prox: Prox | None = None, certify: Certify | None = None,
) -> InferenceResult:
    """Projected ISTA, or FISTA with gradient restart; certificates and optional polish every ``check_every``.

    ``prox(Z, rows, step)`` maps a gradient step to the feasible set (default:
    the non-negative soft threshold of the LASSO) and ``certify(S, rows)``
    returns per-sample ``(objective, gap, D^T r)`` in float64 (default:
    :meth:`Problem.certify`); the L1-ball variant swaps both.
    """
    lam = prob.lam
    if prox is None:
        prox = lambda Z, rows, step: Z.sub_(step * lam).clamp_(min=0.0)  # noqa: E731
    certify = certify or prob.certify
    rows = torch.arange(prob.n, device=prob.device)  # samples still being optimised
    # Where one dense product costs far more than the Python overhead of an active-set
    # round (large n N M), start with the active set: from a cold or warm start with a
    # small support it often finishes in a few rounds, each costing one KKT product,
    # instead of tens of first-order iterations costing two products each.
    # The compiled active set pays no such overhead and always starts.
    if polish and (prob.backend == "numba" or prob.n * prob.N * min(prob.N, 2 * prob.M) > _ACTIVE_SET_FIRST_FLOPS):
        S_all, P, gap = _active_set_first(prob, tol)
        S_all = S_all.to(prob.dtype)
        done = gap <= tol
        if done.all():  # float64: the certificates are those of S_all; else certify the rounded codes
            return InferenceResult(S_all, gap, P, 0, True) if prob.dtype == torch.float64 else prob.result(S_all, 0, tol)
        rows = rows[~done]
    else:
        S_all = prob.S0.clone()
    step = 1.0 / prob.atoms.lipschitz  # only now: the active set alone often needs no step at all
    S, Y = S_all[rows], S_all[rows]
    # Momentum weights (t_k - 1) / t_{k+1} of the FISTA sequence, indexed by the
    # iterations since each sample's last restart.
    beta = torch.as_tensor(_momentum_weights(max_iter + 1), dtype=prob.dtype, device=prob.device)
    k = torch.zeros(rows.numel(), 1, dtype=torch.long, device=prob.device)
    cache: dict = {}
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        S_new = prox(neg_grad(prob, Y, rows, cache, step), rows, step)
        if momentum:
            diff = S_new - S
            # O'Donoghue & Candes gradient restart: drop momentum where it points uphill.
            restart = torch.linalg.vecdot(Y - S_new, diff)[:, None] > 0
            k = torch.where(restart, 0, k + 1)
            Y = torch.addcmul(S_new, beta[k], diff)
        else:
            Y = S_new
        S = S_new
        if n_iter % check_every and n_iter != max_iter:
            continue
        P, gap, C = certify(S, rows)
        if polish:
            cand, Pc, gapc = run_active_set(prob, *compact(prob, S, C, rows), C, rows, tol, max_outer=32)
            better = Pc < P
            if better.any():
                S = torch.where(better[:, None], cand.to(prob.dtype), S)
                Y = torch.where(better[:, None], S, Y)
                k = torch.where(better[:, None], 0, k)
                gap = torch.where(better, gapc, gap)
        S_all[rows] = S
        done = gap <= tol
        if done.all():
            break
        if done.any():  # freeze converged samples; the rest continue in a smaller batch
            keep = ~done
            rows, S, Y, k = rows[keep], S[keep], Y[keep], k[keep]
    S_all[rows] = S
    P, gap, _ = certify(S_all, torch.arange(prob.n, device=prob.device))
    return InferenceResult(S_all, gap, P, n_iter, bool((gap <= tol).all()))


def ista(
    D: Any, X: Any, lam: float, init: Any = None, max_iter: int = 1000, tol: float = 1e-6, check_every: int = 10,
    dtype: torch.dtype | None = None,
) -> InferenceResult:
    """Projected ISTA, the paper's plain gradient update ``s <- max(0, s - (grad + lam) / L)``.

    Parameters
    ----------
    D : array-like
        ``M x N`` dictionary (numpy or torch, real floating point; the solver runs on its device).
    X : array-like
        ``n x M`` observations.
    lam : float
        L1 weight ``>= 0``.
    init : array-like, optional
        ``n x N`` warm start (e.g. an SAE's codes, negative entries clipped); zeros if omitted.
    max_iter : int
        Iteration cap.
    tol : float
        Stop when every sample's duality gap is ``<= tol`` (absolute, per sample).
    check_every : int
        Iterations between certificate checks.
    dtype : torch.dtype, optional
        Working precision of the iterates (default: ``D``'s dtype); certificates are float64.

    Returns
    -------
    InferenceResult
        ``duality_gap`` is per sample.
    """
    check_common(max_iter, tol, check_every)
    prob = Problem.build(D, X, lam, init, dtype)
    return proximal_gradient(prob, max_iter, tol, check_every, momentum=False, polish=False)


def fista(
    D: Any, X: Any, lam: float, init: Any = None, max_iter: int = 1000, tol: float = 1e-6, check_every: int = 20,
    dtype: torch.dtype | None = None, polish: bool = True, backend: str = "auto",
) -> InferenceResult:
    """FISTA with adaptive (gradient) restart and the active-set finish for the non-negative LASSO.

    Same parameters as :func:`ista`, plus:

    polish : bool
        ``True`` (default): an exact solver. The active set runs before any
        iteration and at every check; ``max_iter`` caps only the FISTA
        iterations in between (``n_iter`` is usually 0), so it is **not** a
        compute budget. ``False``: plain restarted FISTA; with ``tol=0`` it runs
        exactly ``max_iter`` iterations (use this for iteration budgets).
    backend : {"auto", "numba", "torch"}
        Active-set implementation: the compiled per-sample kernel (CPU, at most
        4096 atoms) or the batched torch one (any device); ``"auto"`` picks
        numba where it applies.

    ``duality_gap`` in the result is **per sample** (length ``n``, float64, absolute).

    Examples
    --------
    >>> import numpy as np
    >>> D = np.linalg.qr(np.random.default_rng(0).normal(size=(8, 8)))[0][:, :6]
    >>> res = fista(D, np.ones((4, 8)), lam=0.1, tol=1e-9)
    >>> bool(res.converged), tuple(res.codes.shape)
    (True, (4, 6))
    """
    check_common(max_iter, tol, check_every)
    if polish:  # the exact solver is SparseCoder's (its lean path included); imported here: coder builds on this module
        from .coder import SparseCoder

        return SparseCoder(D, lam, backend, dtype, tol, max_iter, check_every).solve(X, init)
    prob = Problem.build(D, X, lam, init, dtype, backend)
    return proximal_gradient(prob, max_iter, tol, check_every, momentum=True, polish=False)


def project_capped_simplex(Z: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row of ``Z`` onto ``{s >= 0, sum(s) <= radius_i}`` (sort-based, batched)."""
    P = Z.clamp_min(0.0)
    over = P.sum(1) > radius
    if not over.any():
        return P
    Zo, r = Z[over], radius[over]
    u = Zo.sort(1, descending=True).values
    css = u.cumsum(1) - r[:, None]
    j = torch.arange(1, Z.shape[1] + 1, dtype=Z.dtype, device=Z.device)
    rho = ((u - css / j) > 0).sum(1, keepdim=True).clamp_min(1)  # number of coordinates left positive
    theta = css.gather(1, rho - 1) / rho.to(Z.dtype)
    P[over] = (Zo - theta).clamp_min(0.0)
    return P


def fista_l1_ball(
    D: Any, X: Any, radius: Any, init: Any = None, max_iter: int = 1000, tol: float = 1e-6, check_every: int = 10,
    dtype: torch.dtype | None = None,
) -> InferenceResult:
    """Best reconstruction under an L1 budget: ``min 0.5 ||x - D s||^2`` s.t. ``s >= 0``, ``sum(s) <= radius_i``.

    FISTA with projection onto the capped simplex. The certificate is the
    Frank-Wolfe gap ``grad.(s - v)``, ``v`` the best vertex of the feasible
    set (``0`` or ``radius_i e_j``), an upper bound on suboptimality for
    this convex problem over a compact set. Used by :mod:`gapbound.meter` to
    compare an SAE's reconstruction with the best one at the same L1.

    Parameters
    ----------
    radius : array-like
        Length-``n`` non-negative L1 budgets, one per sample.
    D, X, init, max_iter, tol, check_every, dtype
        As in :func:`fista` (``init`` is projected onto the feasible set).

    Returns
    -------
    InferenceResult
        ``objective`` is ``0.5 ||x - D s||^2`` and ``duality_gap`` the per-sample Frank-Wolfe gap.
    """
    check_common(max_iter, tol, check_every)
    prob = Problem.build(D, X, 0.0, init, dtype)
    r = as_tensor("radius", radius, dtype=torch.float64, device=prob.device).detach().reshape(-1)
    if r.shape[0] != prob.n or not torch.isfinite(r).all() or bool((r < 0).any()):
        raise ValueError(f"radius must hold {prob.n} finite non-negative L1 budgets, got shape {tuple(r.shape)}")
    r_work = r.to(prob.dtype)
    prob.S0 = project_capped_simplex(prob.S0, r_work)

    def certify(S: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        S = S.double()
        R = prob.X64[rows] - S @ prob.D64.T
        C = R @ prob.D64  # minus the gradient
        fw = -(C * S).sum(1) + (r[rows] * C.amax(1)).clamp_min(0.0)
        return 0.5 * (R * R).sum(1), fw.clamp_min(0.0), C

    return proximal_gradient(
        prob, max_iter, tol, check_every, momentum=True, polish=False,
        prox=lambda Z, rows, step: project_capped_simplex(Z, r_work[rows]), certify=certify,
    )
