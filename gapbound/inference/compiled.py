"""Compiled per-sample active-set solver for the non-negative LASSO (CPU).

The same method as the batched torch active set in :mod:`gapbound.inference.active_set`,
written sample by sample and compiled with numba: on a CPU
the batched version spends most of its time in the per-operation overhead of
hundreds of small tensor operations and of batched LAPACK calls on 20-50-wide
matrices, which a loop over samples does not pay.

For each sample, with the Gram matrix ``G = D^T D``, ``c = D^T x`` and the
correlations of the residual ``r = D^T (x - D s) = c - G s``:

1. the working set is the sample's support plus its atoms most violating the
   KKT condition ``r_j <= lam`` (``n_first`` of them from an empty support,
   then ``n_add``, doubling up to ``max_add`` while the objective falls and one
   at a time where it stalled, the rule that makes Lawson-Hanson finite); there
   is no cap on the support below the rank: ``cap`` is ``M + max_add`` (or ``N``);
2. ``min 0.5 s'Gs - (c - lam)'s, s >= 0`` is solved exactly on the working set
   by Lawson-Hanson steps, each an exact Cholesky solve. The first solve starts
   from zero: a warm start (or a FISTA iterate) seeds the working set with its
   support but not its values, so its wrong atoms leave together in one step
   of length zero instead of one Lawson-Hanson step each (a good start costs
   the same: the first solve on its support is already exact). A start races a
   cold start: the first round runs from zero codes; a start holding that
   round's worst KKT violator, cut to its atoms that round's correlations
   make candidates and tidied by coordinate descent on those, takes over if
   its objective is lower than that round's (a poor start costs
   ``O(k)``, a good one saves the rounds the cold start would spend finding
   its support);
3. ``r`` is recomputed from ``c`` and the duality gap certifies the codes
   (the formula of :func:`gapbound.inference.problem.gap_terms`, with its rounding slack
   where only coded atoms violate KKT); a sample stops when its
   gap is at most ``tol``, when no atom violates the KKT conditions, or after
   ``max_outer`` rounds.

The solve on a working set (:mod:`.nnls_kernel`) keeps its Cholesky factor
across Lawson-Hanson steps and rounds (rows of atoms that stay are reused,
atoms that leave are removed by Givens updates). The kernel returns the FLOPs it spent (multiply-adds of the
correlation updates and the factorisations, counted as 2 each) so that
:func:`gapbound.utils.flops.count_flops` can count them (its counting context maps
the operator to the kernel's own count; nothing is registered globally).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator

import numba
import numpy as np
import torch
from numba import njit, prange

from ..utils.flops import counting
from .nnls_kernel import lawson_hanson
from .starts import compact_start, dense_atoms, tidy_start

__all__ = ["active_set", "run_numpy", "compact_start"]  # compact_start: re-exported (it lived here)

_TINY = 2.2250738585072014e-308  # smallest normal float64, as in problem.gap_terms
_EPS = 2.220446049250313e-16  # float64 machine epsilon, as in problem.rounding_slack
_START_PASSES = 4  # coordinate-descent passes over a warm start's own atoms before it races (see tidy_start)
_START_KEEP = 0.1  # a start's atoms race where in the cold working set or r_j > lam + _START_KEEP (max r - lam)


@njit(cache=True, inline="always")
def _correlations(G: np.ndarray, c: np.ndarray, W: np.ndarray, s: np.ndarray, k: int, r: np.ndarray) -> int:
    """``r = c - sum_a s_a G[W_a]`` over the nonzero ``s_a``; returns the FLOPs."""
    N = c.shape[0]
    for t in range(N):
        r[t] = c[t]
    flops = 0
    a = 0
    # Four rows per pass over r: a quarter of the loads and stores of r.
    while a < k:
        b0 = a
        while b0 < k and s[b0] == 0.0:
            b0 += 1
        b1 = b0 + 1
        while b1 < k and s[b1] == 0.0:
            b1 += 1
        b2 = b1 + 1
        while b2 < k and s[b2] == 0.0:
            b2 += 1
        b3 = b2 + 1
        while b3 < k and s[b3] == 0.0:
            b3 += 1
        # Rows by 2-D index, not as views (a view costs an atomic reference-count update).
        if b3 < k:
            j0, j1, j2, j3 = W[b0], W[b1], W[b2], W[b3]
            v0, v1, v2, v3 = s[b0], s[b1], s[b2], s[b3]
            for t in range(N):
                r[t] -= v0 * G[j0, t] + v1 * G[j1, t] + v2 * G[j2, t] + v3 * G[j3, t]
            flops += 8 * N
            a = b3 + 1
        else:
            for b in (b0, b1, b2):
                if b < k:
                    j, v = W[b], s[b]
                    for t in range(N):
                        r[t] -= v * G[j, t]
                    flops += 2 * N
            a = k
    return flops


@njit(cache=True, inline="always")
def _scan(r: np.ndarray, lam: float, inW: np.ndarray, m: int, cand_i: np.ndarray, cand_v: np.ndarray) -> tuple[int, float, int]:
    """The (up to) ``m`` atoms outside the working set with the largest ``r_j > lam``, the largest ``r_j`` and its atom."""
    nc = 0
    thr = lam
    rmax = -math.inf
    jmax = 0
    for t in range(r.shape[0]):
        v = r[t]
        if v > rmax:
            rmax, jmax = v, t
        if v > thr and not inW[t] and m > 0:
            p = nc if nc < m else m - 1
            nc = min(nc + 1, m)
            while p > 0 and cand_v[p - 1] < v:
                cand_v[p], cand_i[p] = cand_v[p - 1], cand_i[p - 1]
                p -= 1
            cand_v[p], cand_i[p] = v, t
            if nc == m:
                thr = cand_v[m - 1]
    return nc, rmax, jmax


@njit(cache=True, inline="always")
def _primal(xx: float, c: np.ndarray, r: np.ndarray, W: np.ndarray, s: np.ndarray, k: int, lam: float) -> tuple[float, float, float]:
    """Objective ``P(s)``, ``||x - D s||^2`` and ``x.(x - D s)`` from ``||x||^2``, ``c`` and ``r``."""
    sc, sr, l1 = 0.0, 0.0, 0.0
    for a in range(k):
        sc += s[a] * c[W[a]]
        sr += s[a] * r[W[a]]
        l1 += s[a]
    rr = max(xx - sc - sr, 0.0)
    return 0.5 * rr + lam * l1, rr, xx - sc


@njit(cache=True, inline="always")
def _slack(G: np.ndarray, have: np.ndarray, DT: np.ndarray, W: np.ndarray, s: np.ndarray, k: int, j: int,
           xx: float) -> float:
    """:func:`gapbound.inference.problem.rounding_slack` of atom ``j``'s correlation (``O(M + k)`` where Gram rows are formed)."""
    dj = 0.0
    for t in range(DT.shape[1]):
        dj += DT[j, t] * DT[j, t]
    wl1 = 0.0
    for a in range(k):
        if s[a] > 0.0:
            l, n2 = W[a], 0.0
            if have[l]:
                n2 = G[l, l]
            else:
                for t in range(DT.shape[1]):
                    n2 += DT[l, t] * DT[l, t]
            wl1 += math.sqrt(n2) * s[a]
    return 2.0 * (DT.shape[1] + DT.shape[0]) * _EPS * math.sqrt(dj) * (math.sqrt(xx) + wl1)


@njit(cache=True, inline="always")
def _gap(primal: float, rr: float, xr: float, rmax: float, lam: float, slack: float) -> float:
    """Duality gap with the residual scaled into ``D^T theta <= lam``, up to ``slack`` (as problem.gap_terms)."""
    scale = 1.0 if rmax <= lam + slack else lam / max(rmax, _TINY)  # (a NaN slack scales)
    return max(primal - (scale * xr - 0.5 * scale * scale * rr), 0.0)


@njit(cache=True, inline="always")
def _keep(W: np.ndarray, s: np.ndarray, k: int, r: np.ndarray, lam: float, violators: bool, inW: np.ndarray,
          tmp: np.ndarray) -> tuple[int, int]:
    """Reorder the working set: coded atoms first (in order), then (if ``violators``) uncoded KKT violators; drop the rest.

    Returns (new size, number of coded atoms).
    """
    kk, nv = 0, 0
    for a in range(k):
        j = W[a]
        if s[a] > 0.0:
            W[kk], s[kk] = j, s[a]
            kk += 1
        elif violators and r[j] > lam:
            tmp[nv] = j
            nv += 1
        else:
            inW[j] = False
    n_coded = kk
    for b in range(nv):
        W[kk], s[kk] = tmp[b], 0.0
        kk += 1
    return kk, n_coded


@njit(cache=True)
def _ensure_rows(G: np.ndarray, have: np.ndarray, DT: np.ndarray, W: np.ndarray, a0: int, k: int) -> int:
    """Fill the Gram rows ``G[W[a0:k]]`` not yet formed (one BLAS product ``D_J^T D``); returns the FLOPs.

    Only the serial kernel ever fills rows (the parallel one gets a complete Gram matrix), so no
    two threads write the same row.
    """
    cnt = 0
    for a in range(a0, k):
        if not have[W[a]]:
            cnt += 1
    if cnt == 0:
        return 0
    J = np.empty(cnt, np.int64)
    c = 0
    for a in range(a0, k):
        if not have[W[a]]:
            J[c] = W[a]
            c += 1
    B = np.empty((cnt, DT.shape[1]))
    for c in range(cnt):
        B[c] = DT[J[c]]
    R = np.dot(B, DT.T)
    for c in range(cnt):
        G[J[c]] = R[c]
        have[J[c]] = True
    return 2 * cnt * DT.shape[0] * DT.shape[1]


@njit(cache=True)
def _solve_chunk(G, have, DT, DtX, xx, rows, idx, vals, dense, use, lam, tol, cap, max_add, max_outer, n_add, n_first, lo,
                 hi, S, P, gap, flops):  # pragma: no cover
    """Samples ``lo..hi-1``: one workspace for the widest working set (``cap``), allocated once.

    A warm start comes either compact (``idx``, ``vals``: positions and values per sample) or
    dense (``dense``, ``n x N`` aligned with the chunk's samples, with ``use`` saying which rows
    seed; ``dense`` with no rows: compact). A dense start is read in place only where it races
    (its held test is one lookup): a start that never races costs nothing per sample, where a
    compaction pass over ``n x N`` and reading ``k`` atoms per sample cost ~5 % of a 0.2 ms solve.

    The workspace is never reallocated: a compiled loop over arrays that may be reassigned
    updates their reference counts (atomics) on every pass, which at N = 32 was a third of
    the kernel's time. Untouched pages of the ``cap x cap`` factor are never mapped.
    """
    N = G.shape[0]
    r = np.empty(N)
    inW = np.zeros(N, np.bool_)
    size = cap
    W, s, q, F = np.empty(size, np.int64), np.zeros(size), np.empty(size), np.empty(size, np.int64)
    L, y, z = np.empty((size, size)), np.empty(size), np.empty(size)
    B = np.empty((size, size))  # a warm start's Gram block (pages mapped only where a start is that wide)
    cand_i, cand_v = np.empty(size, np.int64), np.empty(size)
    W_start, s_start = np.empty(size, np.int64), np.empty(size)  # a warm start, kept for the race
    # With every Gram row formed, _ensure_rows is not called at all: each call of a compiled
    # function updates its array arguments' reference counts (atomics), a cost tiny problems feel.
    complete = True
    for t in range(N):
        complete = complete and have[t]
    in_place = dense.shape[0] > 0
    for i in range(lo, hi):
        c, xi = DtX[rows[i]], xx[rows[i]]
        k, k_start = 0, 0  # k_start > 0: the sample has a start (in place: its atoms are read when it races)
        if in_place:
            k_start = 1 if use[i] else 0
            if k_start and max_outer == 0:
                k_start = dense_atoms(dense, i, True, r, 0.0, inW, W_start, s_start, cap)
        else:
            for a in range(idx.shape[1]):
                if vals[i, a] > 0.0 and k_start < cap:
                    W_start[k_start], s_start[k_start] = idx[i, a], vals[i, a]
                    k_start += 1
        if max_outer == 0:  # no round to race: the start's own codes are evaluated
            for a in range(k_start):
                W[a], s[a] = W_start[a], s_start[a]
                inW[W[a]] = True
            k, k_start = k_start, 0
        fl = 0
        # A start races a cold start's first round (a few atoms): the loop starts cold, and after
        # that round the start is considered only if it holds the round's worst KKT violator (an
        # atom the cold path would add next; a poor start rarely holds it: O(k) compact, O(1) in
        # place, no Gram row read). It keeps its atoms in the cold working set or violating KKT by
        # _START_KEEP of the largest violation (O(k) compact, O(N) in place), coordinate descent on their k x k Gram block drops those it sets
        # to zero (tidy_start), and it takes over if its objective is below the cold round's.
        # Every wrong atom a start brings would cost Lawson-Hanson steps and a pass over its Gram
        # row every round, and reading a wide start's Gram block costs as much as a round (which
        # made junk-laden starts 1.2-1.4x a cold start): hence the O(k) filters before it. The
        # price: true atoms the filter drops come back as violators over the next rounds (an
        # optimum with ~120 atoms: 0.7x a cold solve instead of 0.2x). Correlations only if it wins.
        fl += _correlations(G, c, W, s, k, r)
        adds = max(n_add, n_first)
        valid = 0  # leading rows of L still those of working-set positions 0..valid-1
        Pi, gi = math.inf, math.inf
        exact = False  # whether the codes solve the problem restricted to their support
        outer = 0
        while outer <= max_outer:
            P_new, rr, xr = _primal(xi, c, r, W, s, k, lam)
            stalled = outer > 1 and P_new >= Pi - 1e-15 * abs(P_new)
            if outer == 1:
                adds = n_add
            elif outer > 1:  # grow geometrically while the objective falls
                adds = 1 if stalled else min(max(2 * adds, n_add), max_add)
            Pi = P_new
            # Where it stalled, only the single worst violator joins the coded atoms: Lawson-Hanson's
            # rule, under which the next solve must lower the objective (several new atoms at zero
            # can all leave again at once).
            k, n_coded = _keep(W, s, k, r, lam, not stalled, inW, F)
            valid = min(valid, n_coded)
            m = min(adds, cap - k, max(1, DT.shape[1] - k))  # past the rank, atoms turn dependent: a null step each
            nc, rmax, jmax = _scan(r, lam, inW, m, cand_i, cand_v)
            gi = _gap(Pi, rr, xr, rmax, lam, 0.0)
            if gi > tol and rmax > lam and nc == 0:  # the violators are coded atoms: maybe rounding (O(M + k))
                gi = _gap(Pi, rr, xr, rmax, lam, _slack(G, have, DT, W, s, k, jmax, xi))
            # Exact on the coded atoms and no violator left: KKT-optimal (up to rounding).
            if gi <= tol or outer == max_outer or (exact and nc == 0 and k == n_coded):
                break
            # Only a start holding the cold round's worst KKT violator races (a poor start rarely does).
            held = False
            if outer == 1 and nc > 0 and k_start > 0:
                if in_place:
                    held = dense[i, cand_i[0]] > 0.0
                else:
                    for a in range(k_start):
                        held = held or W_start[a] == cand_i[0]
            if held:  # the race (see above)
                kk = 0
                thr = lam + _START_KEEP * (rmax - lam)
                if in_place:
                    kk = dense_atoms(dense, i, False, r, thr, inW, W_start, s_start, cap)
                else:
                    for a in range(k_start):
                        if r[W_start[a]] > thr or inW[W_start[a]]:
                            W_start[kk], s_start[kk] = W_start[a], s_start[a]
                            kk += 1
                if not complete:
                    fl += _ensure_rows(G, have, DT, W_start, 0, kk)
                fl += 2 * kk * kk * (1 + _START_PASSES)
                k_start, P_start = tidy_start(G, c, W_start, s_start, kk, xi, lam, q, B, _START_PASSES)
                if k_start > 0 and P_start < Pi:  # the start won: on from it (values dropped in its first solve)
                    for a in range(k):
                        inW[W[a]] = False
                    k, outer, adds, valid, exact = k_start, 0, n_add, 0, False
                    W[:k], s[:k] = W_start[:k], s_start[:k]
                    for a in range(k):
                        inW[W[a]] = True
                    fl += _correlations(G, c, W, s, k, r)
                    k_start = 0
                    continue
                k_start = 0
            for a in range(nc):
                W[k], s[k] = cand_i[a], 0.0
                inW[W[k]] = True
                k += 1
            if not complete:
                fl += _ensure_rows(G, have, DT, W, k - nc, k)
            for a in range(k):
                q[a] = c[W[a]] - lam
                if outer == 0:  # a start seeds the working set; its values are dropped (see the module docstring)
                    s[a] = 0.0
            valid, f, exact = lawson_hanson(G, W, q, s, k, F, L, y, z, valid, cand_i)  # cand_i: free here
            fl += f + _correlations(G, c, W, s, k, r)
            outer += 1
        for a in range(k):
            inW[W[a]] = False  # the workspace serves the chunk's next sample
            if s[a] > 0.0:
                S[i, W[a]] = s[a]
        P[i], gap[i], flops[i] = Pi, gi, fl


@njit(cache=True, parallel=True)
def _kernel_parallel(G, have, DT, DtX, xx, rows, idx, vals, lam, tol, cap, max_add, max_outer, n_add, n_first, n_chunks, S,
                     P, gap, flops):  # pragma: no cover
    """Samples in ``n_chunks`` contiguous chunks over numba's threads (the Gram matrix must be complete)."""
    n = rows.shape[0]
    for ch in prange(n_chunks):
        _solve_chunk(G, have, DT, DtX, xx, rows, idx, vals, np.zeros((0, 0)), np.zeros(0, np.bool_), lam, tol, cap,
                     max_add, max_outer, n_add, n_first, ch * n // n_chunks, (ch + 1) * n // n_chunks, S, P, gap, flops)


@njit(cache=True)
def _kernel_serial(G, have, DT, DtX, xx, rows, idx, vals, lam, tol, cap, max_add, max_outer, n_add, n_first, n_chunks, S,
                   P, gap, flops):  # pragma: no cover
    """All samples on the calling thread (fills missing Gram rows as it goes)."""
    _solve_chunk(G, have, DT, DtX, xx, rows, idx, vals, np.zeros((0, 0)), np.zeros(0, np.bool_), lam, tol, cap, max_add,
                 max_outer, n_add, n_first, 0, rows.shape[0], S, P, gap, flops)


# The parallel launch costs a millisecond or more (much more when the machine is busy and a
# worker thread is descheduled), so one thread or a small batch runs serially. (Two separate
# functions: numba's cache keys a function by its source, so one body compiled twice would share it.)
_PARALLEL_MIN_SAMPLES = 64


@contextlib.contextmanager
def _numba_threads(threads: int) -> Iterator[None]:
    """numba's thread count set to ``threads`` for the duration, then restored, torch's setting kept.

    numba's OpenMP layer and torch share the OpenMP thread setting: restoring numba's count
    alone would silently change ``torch.get_num_threads()``, so torch's is put back too.
    """
    saved, torch_threads = numba.get_num_threads(), torch.get_num_threads()
    numba.set_num_threads(threads)
    try:
        yield
    finally:
        numba.set_num_threads(saved)
        torch.set_num_threads(torch_threads)


def _threads(n: int) -> int:
    """numba threads for ``n`` samples: torch's setting (the benchmarks give every solver the same), 1 where serial pays."""
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    return threads if threads > 1 and n >= _PARALLEL_MIN_SAMPLES else 1


def run_numpy(
    G: np.ndarray, have: np.ndarray, DT: np.ndarray, DtX: np.ndarray, xx: np.ndarray, rows: np.ndarray, idx: np.ndarray,
    vals: np.ndarray, lam: float, tol: float, cap: int, max_add: int, max_outer: int, n_add: int, n_first: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The kernel on contiguous numpy arrays (as :func:`active_set`'s, ``G`` and ``have`` filled in place).

    Returns (codes, objective, gap, FLOPs per sample). This is the whole cost of a call
    that reaches it directly (:class:`gapbound.inference.SparseCoder`'s lean path).
    """
    n, N = rows.shape[0], G.shape[0]
    S = np.zeros((n, N))
    P, gap = np.empty(n), np.empty(n)
    flops = np.zeros(n, np.int64)
    if n:
        threads = _threads(n)
        parallel = threads > 1
        if parallel and not have.all():  # threads must not fill rows: complete the Gram matrix first
            missing = np.flatnonzero(~have)
            G[missing] = DT[missing] @ DT.T
            have[missing] = True
            flops[0] += 2 * missing.size * DT.shape[0] * DT.shape[1]
        args = (G, have, DT, DtX, xx, rows, idx, vals, lam, tol, cap, max_add, max_outer, n_add, n_first,
                min(n, 4 * threads) if parallel else 1, S, P, gap, flops)
        if parallel:
            with _numba_threads(threads):
                _kernel_parallel(*args)
        else:
            _kernel_serial(*args)
    return S, P, gap, flops


def _run(
    G: torch.Tensor, have: torch.Tensor, DT: torch.Tensor, DtX: torch.Tensor, xx: torch.Tensor, rows: torch.Tensor,
    idx: torch.Tensor, vals: torch.Tensor, lam: float, tol: float, cap: int, max_add: int, max_outer: int, n_add: int,
    n_first: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`run_numpy` on torch tensors: (codes, objective, gap, FLOPs per sample)."""
    out = run_numpy(G.numpy(), have.numpy(), DT.numpy(), DtX.numpy(), xx.numpy(), rows.numpy(), idx.numpy(),
                    vals.numpy(), lam, tol, cap, max_add, max_outer, n_add, n_first)
    return tuple(torch.from_numpy(a) for a in out)  # type: ignore[return-value]


@torch.library.custom_op("gapbound::active_set", mutates_args=("G", "have"))
def _active_set_op(
    G: torch.Tensor, have: torch.Tensor, DT: torch.Tensor, DtX: torch.Tensor, xx: torch.Tensor, rows: torch.Tensor,
    idx: torch.Tensor, vals: torch.Tensor, lam: float, tol: float, cap: int, max_add: int, max_outer: int, n_add: int,
    n_first: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_run` as a torch operator, so that gapbound's FLOP counter sees it.

    Its fourth output holds the FLOPs each sample spent (Gram rows it formed included);
    :func:`gapbound.utils.flops.count_flops` maps the operator to their sum (a formula that
    exists only inside that counting context). Outside it the kernel is called directly:
    the operator's dispatch costs about 0.2 ms a call, as much as a small batch's solve.
    """
    return _run(G, have, DT, DtX, xx, rows, idx, vals, lam, tol, cap, max_add, max_outer, n_add, n_first)


def active_set(
    G: torch.Tensor, have: torch.Tensor, DT: torch.Tensor, DtX: torch.Tensor, xx: torch.Tensor, rows: torch.Tensor,
    idx: torch.Tensor, vals: torch.Tensor, lam: float, tol: float, cap: int, max_add: int, max_outer: int, n_add: int,
    n_first: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample active-set refinement of compact codes (see the module docstring).

    Parameters
    ----------
    G, have : torch.Tensor
        ``N x N`` float64 Gram matrix ``D^T D`` (CPU, contiguous) of which only the rows
        flagged in the bool vector ``have`` are formed; the kernel forms the rows it needs
        (as one product per round) and flags them, in place, so a caller that keeps both
        (:class:`gapbound.inference.SparseCoder`) never forms a row twice.
    DT : torch.Tensor
        ``N x M`` float64 ``D^T`` (contiguous), from which missing rows are formed.
    DtX, xx : torch.Tensor
        float64 ``X D`` (``n_all x N``) and ``||x||^2`` (``n_all``) of all samples.
    rows : torch.Tensor
        The ``n`` samples (int64 indices into ``DtX``) to solve.
    idx, vals : torch.Tensor
        Their starting codes as positions and float64 values (``n x w``, zero
        padded, no position twice; at most ``cap`` nonzeros are kept).
    lam, tol : float
        L1 weight and per-sample duality-gap tolerance.
    cap : int
        Largest working set (coded atoms plus candidates); the rank ``M`` plus
        ``max_add`` lets supports grow to any width an optimum can have.
    max_add : int
        Most atoms added in one round.
    max_outer, n_add, n_first : int
        Rounds, atoms added per round at first, atoms added to an empty support.

    Returns
    -------
    (torch.Tensor, torch.Tensor, torch.Tensor)
        Dense float64 codes (``n x N``), objective and duality gap per sample.
    """
    def prep(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return t.detach().to(dtype).contiguous()

    for name, t, dtype in (("G", G, torch.float64), ("have", have, torch.bool)):
        if t.dtype != dtype or not t.is_contiguous() or t.device.type != "cpu":
            raise ValueError(f"{name} must be a contiguous CPU {dtype} tensor (it is filled in place)")
    S, P, gap, _ = (_active_set_op if counting() else _run)(
        G, have, prep(DT, torch.float64), prep(DtX, torch.float64), prep(xx, torch.float64), prep(rows, torch.int64),
        prep(idx, torch.int64), prep(vals, torch.float64), float(lam), float(tol), int(cap), int(max_add),
        int(max_outer), int(n_add), int(n_first),
    )
    return S, P, gap
