"""Compiled restricted solves for :mod:`.working_set`: per-sample Gram and Cholesky factor kept across rounds and ``lam``.

Each sample's working set lives in *slots*: its atoms, their Gram matrix ``G`` (slots x slots,
rows added as atoms join, never recomputed), ``b = D_W^T x`` and the codes. The non-negative
LASSO restricted to the slots at the sample's ``lam`` is solved by
:func:`.nnls_kernel.lawson_hanson` (Lawson-Hanson steps on a Cholesky factor of the free atoms'
Gram, kept across steps, outer rounds and values of ``lam``: an atom that joins costs one
bordered row, ``O(k^2)``, one that leaves a Givens update, ``O(k^2)``), after which every slot at
zero whose gradient points inside joins again, until none does: the restricted KKT conditions.

The matched-L1 problem ``min 0.5||x - D_W s||^2, s >= 0, sum(s) <= tau`` is that LASSO at the
``lam`` where ``sum(s(lam)) = tau``. ``sum(s(lam))`` is continuous, piecewise linear and
non-increasing; on a fixed free set ``F`` it is ``sum(G_F^{-1}(b_F - lam 1))``, so a Newton step
(its slope ``-1' G_F^{-1} 1`` from the kept factor, ``O(k^2)``) is exact once the free set has
settled. The steps stay inside a bracket ``[lo, hi]`` (bisection otherwise), so the search ends;
a solve that gave up (:func:`_lasso` not exact) never moves the bracket or ends the search.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .nnls_kernel import lawson_hanson

__all__ = ["solve_slots", "compact_slots"]

_KKT_ROUNDS = 200  # re-solves per lam after slots at zero rejoin (each lowers the objective; a guard, not a budget)
_LAM_STEPS = 100  # Newton / bisection steps in lam per matched-L1 solve
_VIOLATION = 1e-13  # relative gradient above which a slot at zero rejoins


@njit(cache=True)
def _lasso(G, b, sv, ns, fo, nv, L, y, lam, W, s, q, F, z, gone, g, mark, cold):  # pragma: no cover
    """The LASSO at ``lam`` restricted to the slots ``0..ns-1``, from ``sv``; returns (factor rows, exact).

    ``fo[:nv]`` are the slots of the factor's rows (``L``, ``y``) in order, kept from the previous
    solve; ``cold`` drops the start's values (a start's wrong atoms then leave together in one
    step of length zero instead of one Lawson-Hanson step each).
    """
    scale = 1e-300
    for j in range(ns):
        scale = max(scale, abs(b[j] - lam))
    P_prev = math.inf
    exact = False
    single = False  # after a solve that did not lower the objective, one violator joins at a time
    for _ in range(_KKT_ROUNDS):
        # gradient g = (b - lam) - G s over all slots (G symmetric: the rows of the coded slots)
        for j in range(ns):
            g[j] = b[j] - lam
        for a in range(ns):
            va = sv[a]
            if va != 0.0:
                for j in range(ns):
                    g[j] -= va * G[a, j]
        P = 0.0  # 0.5 s'Gs - (b - lam)'s = -0.5 s'((b - lam) + g)
        for j in range(ns):
            P -= 0.5 * sv[j] * (b[j] - lam + g[j])
        k = 0
        for i in range(nv):  # the factor's slots first, in its order: its rows are reused
            W[k], s[k] = fo[i], sv[fo[i]]
            mark[fo[i]] = True
            k += 1
        for j in range(ns):
            if not mark[j] and sv[j] > 0.0:
                W[k], s[k] = j, sv[j]
                mark[j] = True
                k += 1
        n_coded = k
        worst, wv = -1, _VIOLATION * scale
        for j in range(ns):
            if not mark[j] and g[j] > _VIOLATION * scale:
                if single:
                    if g[j] > wv:
                        worst, wv = j, g[j]
                else:
                    W[k], s[k] = j, 0.0
                    k += 1
        if single and worst >= 0:
            W[k], s[k] = worst, 0.0
            k += 1
        for a in range(k):
            mark[W[a]] = False
        if exact and k == n_coded:  # exact on its free set and no slot at zero violates: KKT
            return nv, True
        if exact and P >= P_prev - 1e-15 * abs(P):
            single = True
        P_prev = P
        if cold:
            for a in range(k):
                s[a] = 0.0
            cold = False
        for a in range(k):
            q[a] = b[W[a]] - lam
        for i in range(nv):  # y = L^{-1} q on the kept rows (q moved with lam)
            v = q[i]
            for p in range(i):
                v -= L[i, p] * y[p]
            y[i] = v / L[i, i]
        m, _, exact = lawson_hanson(G, W, q, s, k, F, L, y, z, nv, gone)
        for a in range(k):
            sv[W[a]] = s[a]
        for i in range(m):
            fo[i] = W[F[i]]
        nv = m
        if not exact:  # gave up (step cap, or no descent along a null direction): the certificate says so
            return 0, False
    return nv, exact


@njit(cache=True)
def _slope(L, nv, t):  # pragma: no cover
    """``1' G_F^{-1} 1 = ||L^{-1} 1||^2`` from the factor's ``nv`` rows."""
    out = 0.0
    for i in range(nv):
        v = 1.0
        for p in range(i):
            v -= L[i, p] * t[p]
        t[i] = v / L[i, i]
        out += t[i] * t[i]
    return out


@njit(cache=True)
def _l1(G, b, sv, ns, fo, nv, L, y, lam, tau, W, s, q, F, z, gone, g, mark, cold):  # pragma: no cover
    """Matched-L1 problem on the slots (see the module docstring); returns (factor rows, multiplier ``lam``)."""
    hi = 0.0  # s(lam) = 0 for lam >= max_j b_j
    for j in range(ns):
        hi = max(hi, b[j])
    if tau <= 0.0 or hi <= 0.0:
        for j in range(ns):
            sv[j] = 0.0
        return 0, 0.0
    lo, lo_seen = 0.0, False  # lo: a lam with sum(s) > tau (or 0, not yet tried)
    lam = min(max(lam, 0.0), hi)
    for step in range(_LAM_STEPS):
        nv, exact = _lasso(G, b, sv, ns, fo, nv, L, y, lam, W, s, q, F, z, gone, g, mark, cold)
        cold = False
        if not exact:
            # The solve gave up (step cap, or a singular fit such as an exact one at lam = 0): its
            # sum(s) says nothing about s(lam), so the bracket keeps its ends and the next lam is
            # another point inside it (the midpoint, or halfway to it where lam was the midpoint).
            if lam <= lo:
                lo_seen = True  # lam = lo = 0 gave up: search (0, hi)
            mid = 0.5 * (lo + hi)
            lam = mid if lam != mid else 0.5 * (lo + mid)
            if hi - lo <= 1e-15 * hi:
                break
            continue
        total = 0.0
        for j in range(ns):
            total += sv[j]
        f = total - tau
        if abs(f) <= 1e-13 * tau or (lam == 0.0 and f <= 0.0):
            break
        if f > 0.0:
            lo, lo_seen = lam, True
        else:
            hi = lam
        if hi - lo <= 1e-15 * hi:
            break
        nxt = math.nan
        if nv > 0:
            slope = _slope(L, nv, z)
            if slope > 0.0:
                nxt = lam + f / slope
        if step % 8 == 7 or not (lo < nxt < hi):  # outside the bracket (or stalling): bisect, trying 0 first
            nxt = 0.0 if (not lo_seen and not lo < nxt) else 0.5 * (lo + hi)
        lam = nxt
    total = 0.0
    for j in range(ns):
        total += sv[j]
    if total > tau:  # feasible: the last solve may overshoot by rounding
        for j in range(ns):
            sv[j] *= tau / total
    return nv, lam


@njit(cache=True, parallel=True)
def solve_slots(G, b, sv, ns, fo, nv, L, y, lam, tau, cold, rows):  # pragma: no cover
    """Restricted solves of the samples ``rows`` of a block, in parallel over numba's threads.

    Parameters (per sample ``i`` of the block; ``c`` the slot capacity):
    ``G`` ``(B, c, c)`` slot Grams, ``b`` ``(B, c)`` ``D_W^T x``, ``sv`` ``(B, c)`` codes (in/out),
    ``ns`` ``(B,)`` slots in use, ``fo`` ``(B, c)`` and ``nv`` ``(B,)`` the factor's slots and rows
    (in/out), ``L`` ``(B, c, c)`` and ``y`` ``(B, c)`` the factors (in/out), ``lam`` ``(B,)`` (in/out
    for the matched-L1 problem), ``tau`` ``(B,)`` budgets (negative: the LASSO at ``lam``),
    ``cold`` ``(B,)`` whether to drop the start's values.
    """
    c = G.shape[1]
    for t in prange(rows.shape[0]):
        i = rows[t]
        W, F, gone = np.empty(c, np.int64), np.empty(c, np.int64), np.empty(c, np.int64)
        s, q, z, g = np.empty(c), np.empty(c), np.empty(c), np.empty(c)
        mark = np.zeros(c, np.bool_)
        if tau[i] < 0.0:
            nv[i], _ = _lasso(G[i], b[i], sv[i], ns[i], fo[i], nv[i], L[i], y[i], lam[i], W, s, q, F, z, gone, g,
                              mark, cold[i])
        else:
            nv[i], lam[i] = _l1(G[i], b[i], sv[i], ns[i], fo[i], nv[i], L[i], y[i], lam[i], tau[i], W, s, q, F, z,
                                gone, g, mark, cold[i])


@njit(cache=True)
def compact_slots(G, D, b, sv, atoms, ns, fo, nv, i):  # pragma: no cover
    """Drop sample ``i``'s slots at zero (its factor's slots are all coded), in place; returns the new slot count.

    ``D`` ``(B, c, M)`` holds the slots' atoms, ``atoms`` ``(B, c)`` their positions in the dictionary.
    Moves only go to lower slots, in order, so nothing is overwritten before it is read.
    """
    n = ns[i]
    new = np.full(n, -1, np.int64)
    kk = 0
    for j in range(n):
        if sv[i, j] > 0.0:
            new[j] = kk
            kk += 1
    for j in range(n):
        a = new[j]
        if a < 0:
            continue
        for p in range(n):
            if new[p] >= 0:
                G[i, a, new[p]] = G[i, j, p]
        D[i, a] = D[i, j]
        b[i, a], sv[i, a], atoms[i, a] = b[i, j], sv[i, j], atoms[i, j]
    for j in range(kk, n):  # the freed slots hold no codes (residuals are formed over every slot)
        sv[i, j] = 0.0
    for r in range(nv[i]):
        fo[i, r] = new[fo[i, r]]
        if fo[i, r] < 0:  # not expected (the factor's slots are coded): the next solve refactors
            nv[i] = 0
            break
    return kk
