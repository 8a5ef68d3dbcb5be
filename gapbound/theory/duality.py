"""Certified values of the per-row convex problems: a batched Newton solver and a weak-duality certificate.

Each drop set of a row gives a convex problem (kept residuals, hinge
penalties for gate constraints, the inactive entries' envelope). ``_newton``
finds a good point, ``_certify_batch`` turns *any* point into a certified
lower bound on the problem's minimum (``proofs/02_witness_bound.md`` 2.3),
with every float64 operation's rounding error bounded.
"""

from __future__ import annotations

import math

import numpy as np

_UNIT_ROUNDOFF = 2.0**-53


def _gamma(n: int) -> float:
    """Higham's gamma_n = n u / (1 - n u): relative error bound of an n-term float64 dot product."""
    nu = (n + 2) * _UNIT_ROUNDOFF
    return nu / (1.0 - nu)


def _envelope(z: np.ndarray, tau: float, gamma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moreau envelope ``e_{tau,gamma}`` of the convex envelope of ``z^2 1[z > tau]`` (``tau >= 0``).

    The convex envelope ``e_tau`` is 0 up to ``tau``, the tangent line
    ``4 tau (z - tau)`` up to ``2 tau``, then ``z^2``; its kink at ``tau``
    would stall Newton and spoil the dual certificate, so it is smoothed by the
    Moreau envelope with parameter ``gamma`` (``e_gamma <= e_tau``: still a lower
    bound). Returns ``(value, nu, curvature)`` with ``nu = e'(z) / 2``.
    """
    g = max(gamma, 1e-300)
    r1, r2 = tau + 4 * tau * gamma, 2 * tau + 4 * tau * gamma
    # prox point v: z (flat part), tau (kink), z - 4 tau gamma (line), z / (1 + 2 gamma) (parabola)
    v = np.where(z <= tau, z, np.where(z <= r1, tau, np.where(z <= r2, z - 4 * tau * gamma, z / (1 + 2 * gamma))))
    ev = np.where(v <= tau, 0.0, np.where(v <= 2 * tau, 4 * tau * (v - tau), v**2))
    value = ev + np.where(z <= tau, 0.0, (z - v) ** 2 / (2 * g))
    nu = np.where(z <= tau, 0.0, np.where(z <= r1, (z - tau) / (2 * g), np.where(z <= r2, 2 * tau, z / (1 + 2 * gamma))))
    curv = np.where(z <= tau, 0.0, np.where(z <= r1, 1 / (2 * g), np.where(z <= r2, 0.0, 1 / (1 + 2 * gamma))))
    return value, nu, curv


def _newton(Aa: np.ndarray, y: np.ndarray, L: np.ndarray, c: np.ndarray, keep: np.ndarray, Wt: np.ndarray,
            Bi: np.ndarray, tau: float, gamma: float, iters: int = 100) -> np.ndarray:
    """Batched damped Newton for the convex problem of each drop set.

    ``f(u) = ||keep*(Aa u - y)||^2 + sum_j Wt_j relu(L_j.u - c_j)^2 + sum_t e(B_t.u)``
    with ``e`` the inactive entries' smoothed envelope (:func:`_envelope`;
    ``tau = 0, gamma = 0`` gives ``relu(z)^2``, ``tau = inf`` switches them off). ``keep`` is
    ``n_Z x n_active`` (1 kept, 0 dropped), ``Wt`` is ``n_Z x n_L`` (penalties
    standing in for gate constraints). The step uses the generalised Hessian
    (plus a small ridge, so it is a descent direction) and backtracks until
    ``f`` decreases.
    Converged problems leave the batch. The iterate only needs to be good:
    the certificate is valid for any ``u``.
    """
    p = Aa.shape[1]
    if math.isinf(tau):
        Bi = Bi[:0]
    AA = np.einsum("ti,tj->tij", Aa, Aa)
    LL = np.einsum("ti,tj->tij", L, L)
    BB = np.einsum("ti,tj->tij", Bi, Bi)
    ridge = 1e-12 * np.eye(p)
    u_all = np.linalg.solve(np.einsum("zt,tij->zij", keep, AA) + ridge, ((keep * y) @ Aa)[..., None])[..., 0]
    if not Wt.any() and len(Bi) == 0:
        return u_all  # plain least squares: one solve is exact

    def objective(u: np.ndarray, kp: np.ndarray, wt: np.ndarray) -> np.ndarray:
        za, zl = u @ Aa.T, u @ L.T - c
        return ((kp * (za - y) ** 2).sum(1) + (wt * np.maximum(zl, 0.0) ** 2).sum(1)
                + _envelope(u @ Bi.T, tau, gamma)[0].sum(1))

    todo = np.arange(len(keep))
    f_all = objective(u_all, keep, Wt)
    for _ in range(iters):
        if len(todo) == 0:
            break
        u, kp, wt, f = u_all[todo], keep[todo], Wt[todo], f_all[todo]
        za, zl, zb = u @ Aa.T, u @ L.T - c, u @ Bi.T
        hl = wt * np.maximum(zl, 0.0)
        _, eb, cb = _envelope(zb, tau, gamma)
        grad = (kp * (za - y)) @ Aa + hl @ L + eb @ Bi
        H = (np.einsum("zt,tij->zij", kp, AA) + np.einsum("zt,tij->zij", wt * (zl > 0), LL)
             + np.einsum("zt,tij->zij", cb, BB))
        d = -np.linalg.solve(H + 1e-9 * np.eye(p), grad[..., None])[..., 0]
        step = np.ones(len(todo))
        fc = objective(u + d, kp, wt)
        for _ in range(40):
            bad = fc > f - 1e-14 * (1.0 + np.abs(f))
            if not bad.any():
                break
            step[bad] *= 0.5
            fc[bad] = objective(u[bad] + step[bad, None] * d[bad], kp[bad], wt[bad])
        moved = fc < f - 1e-14 * (1.0 + np.abs(f))
        u_all[todo[moved]] = u[moved] + step[moved, None] * d[moved]
        f_all[todo[moved]] = fc[moved]
        # converged: no decrease possible, or a full Newton step that kept the active set
        small = np.abs(d).max(1) <= 1e-13 * (1.0 + np.abs(u).max(1))
        todo = todo[moved & ~small]
    return u_all


def _certify_batch(
    Aa: np.ndarray, y: np.ndarray, L: np.ndarray, c: np.ndarray, keep: np.ndarray, sw: np.ndarray,
    Bi: np.ndarray, tau: float, gamma: float, u: np.ndarray,
) -> np.ndarray:
    """Certified lower bounds on ``drops(Z) + min_u (convex problem of Z)`` for a batch of subsets.

    The hinge terms are ``(sw_j relu(L_j.u - c_j))^2`` with ``sw`` the float
    square roots of the penalty weights (a penalty of any weight is valid, so
    the weight *is* ``sw^2``). Weak duality: for ``lam`` (kept residuals),
    ``mu >= 0`` (hinges), ``nu >= 0`` (inactive envelopes) and every ``u``,
    ``f(u) >= 2 u.g + dual`` with ``g = Aa^T lam + L^T (sw mu) + B^T nu`` and
    ``dual = -2 lam.y - |lam|^2 - |mu|^2 - 2 (sw mu).c - sum [max(2 nu tau, nu^2) + 2 gamma nu^2]``
    (the last term is the smoothed envelope's conjugate ``e*(2 nu)``). ``g`` is ~0 but
    not exactly; ``2 u.g`` is bounded using ``|u| <= U`` for every ``u`` whose
    cost is below ``cap``, ``U = (|y_kept| + sqrt(cap)) / sigma_min(Aa_kept)``.
    Every float64 sum is widened by Higham's ``gamma_n`` bound.
    """
    if math.isinf(tau):
        Bi = Bi[:0]
    drop = 1.0 - keep
    n_terms = Aa.shape[0] + L.shape[0] + Bi.shape[0] + 2
    gam = _gamma(n_terms + 2)
    za = u @ Aa.T
    lam = keep * (za - y)
    mu = sw * np.maximum(u @ L.T - c, 0.0)
    smu = sw * mu
    zb = u @ Bi.T
    nu = _envelope(zb, tau, gamma)[1]
    conj = np.maximum(2 * nu * tau, nu**2) + 2 * gamma * nu**2
    drops = drop @ (y**2)
    terms = np.concatenate([-2 * lam * y, -(lam**2), -(mu**2), -2 * smu * c, -conj], axis=1)
    dual = terms.sum(1)
    dual_err = gam * np.abs(terms).sum(1) + gam * drops
    g = lam @ Aa + smu @ L + nu @ Bi
    g_err = gam * (np.abs(lam) @ np.abs(Aa) + np.abs(smu) @ np.abs(L) + nu @ np.abs(Bi))
    g_norm = np.linalg.norm(np.abs(g) + g_err, axis=1) * (1 + 1e-12)
    # conservative cap on the cost we need to rule out: above it the bound holds trivially
    cap = drops + np.maximum(dual, 0.0) + 1.0
    G = np.einsum("zt,ti,tj->zij", keep, Aa, Aa)
    G_abs_err = gam * np.einsum("zt,ti,tj->zij", keep, np.abs(Aa), np.abs(Aa))
    eig_min = np.linalg.eigvalsh(G)[:, 0]
    # Weyl: eigenvalues move by at most the perturbation's norm; eigvalsh's own
    # backward error is a small multiple of eps * |G|.
    slack = np.linalg.norm(G_abs_err, axis=(1, 2)) + 64 * G.shape[1] * np.finfo(float).eps * np.linalg.norm(G, axis=(1, 2))
    sigma_min_sq = eig_min - slack
    y_norm = np.sqrt((keep * y**2).sum(1)) * (1 + 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        U = np.where(sigma_min_sq > 0, (y_norm + np.sqrt(np.maximum(cap - drops, 0.0))) / np.sqrt(np.maximum(sigma_min_sq, 1e-300)), np.inf)
    certified = drops + dual - dual_err - 2.0 * g_norm * U
    # too few kept entries to bound u (or a singular Gram matrix): the convex part is >= 0, keep the drops
    certified = np.where(np.isfinite(certified), np.maximum(certified, 0.0), 0.0)
    certified = np.maximum(certified, drops * (1 - 4 * gam))
    return np.minimum(certified * (1 - 1e-12) - 1e-300, cap)

