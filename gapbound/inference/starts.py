"""Warm starts for the compiled active set (:mod:`.compiled`): their compact form and their tidying before the race.

A warm start (an SAE's codes, a FISTA iterate, the codes of a nearby ``lam``) seeds
the active set's working set. Both functions here are compiled with numba.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["compact_start", "dense_atoms", "start_rows", "tidy_start"]


@njit(cache=True)
def tidy_start(G: np.ndarray, c: np.ndarray, W: np.ndarray, s: np.ndarray, k: int, xx: float, lam: float,
                g: np.ndarray, B: np.ndarray, passes: int) -> tuple[int, float]:
    """Coordinate descent on a start's own atoms, its zeros dropped: (atoms kept, first in ``W``; objective ``P(s)``).

    ``passes`` cyclic passes of exact coordinate minimisation restricted to the start's
    support, on ``B = G[W, W]`` gathered once into the workspace (``O(k^2)`` a pass, no
    ``k N`` correlations): an atom whose best value given the others is zero (a start's
    wrong atoms, typically) leaves before the start's support seeds a working set, where
    each would cost Lawson-Hanson steps and a pass over its Gram row every round. The
    objective never rises, so the race sees a start at least as good.
    """
    for a in range(k):
        for b in range(k):
            B[a, b] = G[W[a], W[b]]
    for a in range(k):  # g = c - G s on the start's atoms
        v = c[W[a]]
        for b in range(k):
            v -= B[a, b] * s[b]
        g[a] = v
    for _ in range(passes):
        for a in range(k):
            new = max(s[a] + (g[a] - lam) / B[a, a], 0.0)
            d = new - s[a]
            if d != 0.0:
                s[a] = new
                for b in range(k):
                    g[b] -= d * B[a, b]
    kk, sc, sg, l1 = 0, 0.0, 0.0, 0.0
    for a in range(k):
        if s[a] > 0.0:
            sc += s[a] * c[W[a]]
            sg += s[a] * g[a]
            l1 += s[a]
            W[kk], s[kk] = W[a], s[a]
            kk += 1
    # s'Gs = s.(c - g): P = 0.5 (||x||^2 - 2 s.c + s'Gs) + lam sum(s)
    return kk, 0.5 * max(xx - sc - sg, 0.0) + lam * l1


@njit(cache=True)
def _counts(init: np.ndarray, limit: int) -> tuple[np.ndarray, bool, bool]:  # pragma: no cover
    """Positive entries per row of a dense start, whether every entry is finite, and whether its wide rows restart.

    A row with more than ``limit`` (the rank) positive codes restarts from zero when such
    rows are most of the batch. One branch-free pass (it vectorises: 4x a branching one).
    """
    n, N = init.shape
    nnz = np.zeros(n, np.int64)
    bad = 0
    for i in range(n):
        cnt = 0
        for j in range(N):
            v = init[i, j]
            bad += not (abs(v) < np.inf)
            cnt += v > 0
        nnz[i] = cnt
    n_wide = 0
    for i in range(n):
        n_wide += nnz[i] > limit
    return nnz, bad == 0, 2 * n_wide >= n


@njit(cache=True)
def start_rows(init: np.ndarray, limit: int) -> tuple[np.ndarray, bool]:  # pragma: no cover
    """Which rows of a dense start (``n x N``) seed their sample, and whether every entry is finite.

    What the kernel needs to read a dense start in place (:func:`.compiled._solve_chunk`):
    a row seeds when it has a positive code and is not a wide row that restarts (as
    :func:`compact_start`). Where the second output is False the first is not meaningful.
    """
    nnz, finite, restart = _counts(init, limit)
    use = np.zeros(init.shape[0], np.bool_)
    for i in range(init.shape[0]):
        use[i] = nnz[i] > 0 and not (restart and nnz[i] > limit)
    return use, finite


@njit(cache=True)
def compact_start(init: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray, bool]:  # pragma: no cover
    """A dense warm start (``n x N``) as the kernel's (positions, float64 values), as :func:`.active_set.compact`.

    Rows with more than ``limit`` (the rank) positive codes restart from zero when they are
    most of the batch, else keep their ``limit`` largest codes. The third output says
    whether every entry is finite (checked in the same pass: a separate ``np.isfinite``
    over ``init`` cost a few percent of a small batch's solve); where it is False the
    positions are not meaningful.
    """
    n, N = init.shape
    nnz, finite, restart = _counts(init, limit)
    if not finite:
        return np.zeros((n, 1), np.int64), np.zeros((n, 1)), False
    w = 1
    for i in range(n):
        if not (restart and nnz[i] > limit):
            w = max(w, min(nnz[i], limit))
    idx, vals = np.zeros((n, w), np.int64), np.zeros((n, w))
    for i in range(n):
        if nnz[i] > limit:
            if restart:
                continue
            order = np.argsort(-init[i])[:limit]
            for a in range(limit):
                idx[i, a], vals[i, a] = order[a], init[i, order[a]]
            continue
        a = 0
        for j in range(N):
            if init[i, j] > 0:
                idx[i, a], vals[i, a] = j, init[i, j]
                a += 1
    return idx, vals, True


@njit(cache=True, inline="always")
def dense_atoms(dense: np.ndarray, i: int, every: bool, r: np.ndarray, thr: float, inW: np.ndarray, W: np.ndarray,
                s: np.ndarray, cap: int) -> int:  # pragma: no cover
    """Row ``i`` of a dense start as positions and values in ``W``, ``s``: its positive codes (``every``), or
    those whose atom has ``r_j > thr`` or is in the working set; at most ``cap``; returns how many.

    How the kernel reads a start in place (:func:`.compiled._solve_chunk`), only where it races.
    """
    k = 0
    for j in range(dense.shape[1]):
        v = dense[i, j]
        if v > 0.0 and (every or r[j] > thr or inW[j]) and k < cap:
            W[k], s[k] = j, v
            k += 1
    return k
