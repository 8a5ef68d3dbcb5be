"""The batched engine's sparse-coding inference on the CPU: a compiled Lawson-Hanson active set, sample by sample.

The same method as :func:`gapbound.training.coding_engine._active_set` (the
torch version, kept for other devices): from each sample's warm start (its
stored code), solve exactly on the support, drop the atoms that reach zero,
add the worst KKT violator, until none is left (certified) or the rounds run
out. The exact solve on a working set is the inference package's compiled
Lawson-Hanson step with its kept Cholesky factor
(:func:`gapbound.inference.nnls_kernel.lawson_hanson`; dependent atoms, e.g.
supports wider than ``M``, leave along a null direction). In training the
warm start's support is nearly right, so most samples need one solve and one
pass over their correlations: a few hundred multiply-adds, where the torch
version pays the per-operation overhead of some twenty batched operations per
round and batched LAPACK calls on 8 x 8 systems (measured in ``docs/scale.md``).

Why not :func:`gapbound.inference.compiled.active_set`: it races every warm
start against a cold start's first round (right for starts of unknown
quality, e.g. an SAE's codes), which here costs about as much as the torch
version: 4.1-4.4x this kernel's time per step's 5 x 256 samples, with the same
codes bit for bit (``python -m benchmarks.train_engine --sc-inference``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..inference.compiled import _correlations
from ..inference.nnls_kernel import lawson_hanson

__all__ = ["warm_active_set"]


@njit(cache=True)
def warm_active_set(D: np.ndarray, X: np.ndarray, init: np.ndarray, lam: float, tol: float, rounds: int,
                    S: np.ndarray, ok: np.ndarray) -> None:  # pragma: no cover (compiled; tests call it)
    """``argmin_{s >= 0} 0.5 ||x - D_b s||^2 + lam sum(s)`` for every sample ``x = X[b, i]``, from ``init[b, i]``.

    Parameters
    ----------
    D : ndarray
        ``B x M x N`` dictionaries (any float dtype; the work is float64).
    X : ndarray
        ``B x n x M`` samples (model ``b``'s under ``D[b]``).
    init : ndarray
        ``B x n x N`` warm starts (their positive entries are the first working sets and feasible points).
    lam, tol : float
        L1 weight; a sample is certified when no atom off its support has ``(D^T (x - D s))_j > lam + tol``
        after an exact solve on the support.
    rounds : int
        Most exact solves per sample (one atom joins per round).
    S : ndarray
        ``B x n x N`` output codes (zero on entry).
    ok : ndarray
        ``B x n`` bool output: certified. An uncertified sample keeps its last feasible point.
    """
    B, M, N = D.shape
    n = X.shape[1]
    G, c, r = np.empty((N, N)), np.empty(N), np.empty(N)
    W, F, gone = np.empty(N, np.int64), np.empty(N, np.int64), np.empty(N, np.int64)
    s, q, y, z = np.zeros(N), np.empty(N), np.empty(N), np.empty(N)
    L = np.empty((N, N))
    inW = np.zeros(N, np.bool_)
    for b in range(B):
        for j in range(N):  # G = D_b^T D_b in float64
            for t in range(j, N):
                v = 0.0
                for m in range(M):
                    v += np.float64(D[b, m, j]) * np.float64(D[b, m, t])
                G[j, t] = v
                G[t, j] = v
        for i in range(n):
            for j in range(N):  # c = D_b^T x
                v = 0.0
                for m in range(M):
                    v += np.float64(D[b, m, j]) * np.float64(X[b, i, m])
                c[j] = v
            k = 0
            for j in range(N):
                v = np.float64(init[b, i, j])
                if v > 0.0:
                    W[k], s[k] = j, v
                    inW[j] = True
                    k += 1
            valid, done = 0, False
            for _ in range(rounds):
                for a in range(k):
                    q[a] = c[W[a]] - lam
                valid, _, exact = lawson_hanson(G, W, q, s, k, F, L, y, z, valid, gone)
                if not exact:
                    break
                _correlations(G, c, W, s, k, r)  # r = c - G s
                kk = 0  # atoms at zero leave; the coded ones keep their order (the factor's first rows stay theirs)
                for a in range(k):
                    if s[a] > 0.0:
                        W[kk], s[kk] = W[a], s[a]
                        kk += 1
                    else:
                        inW[W[a]] = False
                k = kk
                valid = min(valid, k)
                worst, jw = -math.inf, -1
                for j in range(N):
                    if not inW[j] and r[j] > worst:
                        worst, jw = r[j], j
                if jw < 0:  # no atom off the support compared: all on it, or correlations that are not numbers (NaN)
                    done = k == N
                    break
                if worst - lam <= tol:
                    done = True
                    break
                W[k], s[k] = jw, 0.0
                inW[jw] = True
                k += 1
            for a in range(k):
                inW[W[a]] = False  # the workspace serves the next sample
                if s[a] > 0.0:
                    S[b, i, W[a]] = s[a]
            ok[b, i] = done
