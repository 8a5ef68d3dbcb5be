"""Compiled Lawson-Hanson solve on one working set, with a Cholesky factor kept and updated (CPU, numba).

Minimises ``0.5 s'Gs - q's`` over ``s >= 0`` on the atoms of a working set,
for :mod:`.compiled`'s per-sample active set. The factor of the free atoms'
Gram matrix is built row by row (the bordered form: row ``i`` depends only on
rows ``< i``), so rows of atoms that stay free from one step or round to the
next are reused, new atoms cost one row each, and atoms that leave are removed
by Givens rotations (:func:`_delete_row`, ``O(k^2)``) instead of refactoring
the rows behind them (``O(k^3)``): what makes wide supports (hundreds of
atoms, up to the rank) cheap. Every function returns the FLOPs it spent.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["lawson_hanson"]

_MAX_INNER = 64  # Lawson-Hanson steps per round beyond one per working-set atom
_PIVOT = 1e-13  # relative pivot below which an atom counts as dependent on the free atoms before it
# Reassociation lets the dot products of the factorisation vectorise (a few ulps of difference).
_FAST = {"reassoc", "contract"}


@njit(cache=True, fastmath=_FAST)
def _factor_rows(G: np.ndarray, W: np.ndarray, F: np.ndarray, m: int, start: int, q: np.ndarray, L: np.ndarray,
                 y: np.ndarray) -> tuple[int, int]:
    """Rows ``start..m-1`` of the Cholesky factor ``L`` of ``G[W_F, W_F]`` and of ``y = L^{-1} q_F``.

    Stops at the first row whose pivot is below ``_PIVOT`` times its diagonal
    entry: that atom is (numerically) a combination of the free atoms before
    it, and ``L[i, :i]`` holds ``L^{-1} G[W_F[:i], W_F[i]]``. Returns (that row,
    or ``m`` if none; FLOPs).
    """
    flops = 0
    for i in range(start, m):
        wi = W[F[i]]  # G's row by 2-D index, not a view (a view costs an atomic reference-count update)
        for j in range(i):
            v = G[wi, W[F[j]]]
            for p in range(j):
                v -= L[i, p] * L[j, p]
            L[i, j] = v / L[j, j]
        d = G[wi, wi]
        v = q[F[i]]
        for p in range(i):
            d -= L[i, p] * L[i, p]
            v -= L[i, p] * y[p]
        flops += i * (i + 3)
        if not d > _PIVOT * G[wi, wi]:
            return i, flops
        L[i, i] = math.sqrt(d)
        y[i] = v / L[i, i]
    return m, flops


@njit(cache=True, inline="always")
def _back_solve(L: np.ndarray, b: np.ndarray, m: int, z: np.ndarray) -> int:
    """``z = L[:m, :m]^{-T} b``; returns the FLOPs.

    Column-oriented: each solved ``z_i`` is removed from the rest with row ``i`` of ``L``
    (contiguous, so the update vectorises; the dot-product form reads ``L`` by columns).
    """
    for i in range(m):
        z[i] = b[i]
    for i in range(m - 1, -1, -1):
        z[i] /= L[i, i]
        zi = z[i]
        for p in range(i):
            z[p] -= L[i, p] * zi
    return m * m


@njit(cache=True, inline="always")
def _step(s: np.ndarray, F: np.ndarray, m: int, w: np.ndarray, t_max: float, gone: np.ndarray) -> tuple[int, int, int]:
    """``s[F] += t w`` for the largest ``t <= t_max`` keeping ``s >= 0``; the atoms reaching zero leave ``F``.

    Returns (new size of ``F``, first position that left, or ``m``; how many left, their
    positions in ``gone[:count]``, ascending).
    """
    t = t_max
    for i in range(m):
        if w[i] < 0.0:
            t = min(t, s[F[i]] / -w[i])
    mm, first, ng = 0, m, 0
    for i in range(m):
        a = F[i]
        if w[i] < 0.0 and s[a] / -w[i] <= t:
            s[a] = 0.0
            first = min(first, i)
            gone[ng] = i
            ng += 1
        else:
            s[a] = max(s[a] + t * w[i], 0.0)
            F[mm] = a
            mm += 1
    return mm, first, ng


@njit(cache=True, fastmath=_FAST)
def _delete_row(L: np.ndarray, y: np.ndarray, m: int, p: int, x: np.ndarray) -> int:
    """Remove row and column ``p`` from the ``m x m`` Cholesky factor ``L`` and entry ``p`` from ``y = L^{-1} q``.

    The rows after ``p`` move up; their block ``T`` then satisfies ``T' T'^T = T T^T + l l^T``
    (``l`` the removed column below ``p``), a rank-one update done with Givens rotations in
    ``O((m - p)^2)``, applied to ``y`` too (instead of refactoring the rows after ``p``: cubic).
    Returns the FLOPs.
    """
    ye = y[p]
    for i in range(p + 1, m):
        x[i - p - 1] = L[i, p]
        for j in range(p):
            L[i - 1, j] = L[i, j]
        for j in range(p + 1, i + 1):
            L[i - 1, j - 1] = L[i, j]
        y[i - 1] = y[i]
    r = m - p - 1
    for k in range(r):
        a, b = L[p + k, p + k], x[k]
        rho = math.sqrt(a * a + b * b)
        c, sn = a / rho, b / rho
        L[p + k, p + k] = rho
        for i in range(k + 1, r):
            t, u = L[p + i, p + k], x[i]
            L[p + i, p + k] = c * t + sn * u
            x[i] = c * u - sn * t
        t = y[p + k]
        y[p + k] = c * t + sn * ye
        ye = c * ye - sn * t
    return 6 * r * r


@njit(cache=True)
def lawson_hanson(G: np.ndarray, W: np.ndarray, q: np.ndarray, s: np.ndarray, k: int, F: np.ndarray, L: np.ndarray,
                   y: np.ndarray, z: np.ndarray, valid: int, gone: np.ndarray) -> tuple[int, int, bool]:
    """Minimise ``0.5 s'Gs - q's`` over ``s >= 0`` on working-set positions ``0..k-1``, from the feasible ``s``.

    All positions start free, in order; the first ``valid`` rows of the factor
    (``L``, ``y``) are still those of the same atoms and are reused.
    Coordinates that the exact solve on the free set makes non-positive are
    handled as in Lawson-Hanson NNLS: step towards it until the first reaches
    zero, which leaves the free set (all at once from zero: a step of length
    zero), and solve again, the factor reduced by Givens updates
    (:func:`_delete_row`) rather than refactored. An atom that is a
    combination ``D_F u`` of the free atoms before it (duplicate atoms, or
    more free atoms than dimensions) gives the null
    direction ``v = (u, -1)`` of ``D``, along which only the linear term
    changes: the step goes along ``v`` or ``-v``, whichever does not increase
    the objective, until an atom leaves. Every step lowers the objective or
    keeps it. Returns (rows of the factor valid for the final free set, which
    are its atoms in order; FLOPs; whether it ended exact on that set rather
    than stopping early).
    """
    flops = 0
    m = k
    for a in range(k):
        F[a] = a
    for _ in range(_MAX_INNER + k):
        if m == 0:
            return 0, flops, True
        bad, f = _factor_rows(G, W, F, m, valid, q, L, y)
        flops += f
        if bad < m:  # dependent atom F[bad]: z[:bad] = u, then the direction along +-(u, -1)
            flops += _back_solve(L, L[bad], bad, z)
            qv = -q[F[bad]]
            for i in range(bad):
                qv += q[F[i]] * z[i]
            sign = 1.0 if qv >= 0.0 else -1.0
            neg = sign > 0.0
            for i in range(bad):
                z[i] *= sign
                neg = neg or z[i] < 0.0
            if not neg:  # no atom can leave along a descent direction (not expected for lam > 0)
                return 0, flops, False
            z[bad] = -sign
            m_new, _, ng = _step(s, F, bad + 1, z, math.inf, gone)
            for i in range(bad + 1, m):  # the atoms after F[bad] keep their place behind
                F[m_new + i - bad - 1] = F[i]
            valid = bad  # the factor's rows of the atoms before F[bad], reduced by updates
            for g in range(ng - 1, -1, -1):
                if gone[g] < bad:
                    flops += _delete_row(L, y, valid, gone[g], z)
                    valid -= 1
            m -= bad + 1 - m_new
            continue
        flops += _back_solve(L, y, m, z)
        stepping = False
        for i in range(m):
            stepping = stepping or z[i] <= 0.0
        if not stepping:
            for i in range(m):
                s[F[i]] = z[i]
            return m, flops, True
        for i in range(m):  # towards z: w = z - s
            z[i] -= s[F[i]]
        m_new, first, ng = _step(s, F, m, z, 1.0, gone)
        # The factor of the smaller free set: by updates (last first) or, where many atoms left at
        # once (a poor start's support), by refactoring the rows from the first that left.
        cost = 0
        for g in range(ng):
            cost += 3 * (m - gone[g]) ** 2
        if 3 * cost > m_new**3 - first**3:
            m, valid = m_new, first
            continue
        for g in range(ng - 1, -1, -1):
            flops += _delete_row(L, y, m, gone[g], z)
            m -= 1
        valid = m
    return 0, flops, False
