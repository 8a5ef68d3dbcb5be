"""``SparseCoder``: exact, certified non-negative sparse coding under one dictionary, its set-up kept across calls."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from numba import njit

from ..utils.flops import counting
from ..utils.validation import check_float
from .active_set import widths
from .compiled import _solve_chunk, _threads, run_numpy
from .starts import compact_start, start_rows
from .problem import Atoms, InferenceResult, Problem, check_backend
from .proximal import check_common, proximal_gradient

_LEAN_ROUNDS = 256  # rounds of the compiled active set, as in fista's first exact solve

__all__ = ["SparseCoder"]


@njit(cache=True)
def _kernel_lean(G, have, DT, X, DtX, init, limit, lam, tol, cap, max_add, max_outer, n_add, n_first, S, P, gap,
                 flops):  # pragma: no cover
    """The compiled kernel (as :func:`.compiled._kernel_serial`) on a whole numpy batch in one call, ``||x||^2`` formed here.

    A warm start ``init`` (float64 ``n x N``, or no rows for none) is read in place (see
    :func:`.compiled._solve_chunk`; rows wider than ``limit`` as :func:`.starts.compact_start`).
    Returns whether every sample is finite and certified within ``tol`` (False as soon as an
    ``||x||^2`` or an entry of ``init`` is not finite: NaN or inf, or overflow; nothing is solved then).
    """
    n, M = X.shape
    xx = np.empty(n)
    for i in range(n):
        v = 0.0
        for j in range(M):
            v += X[i, j] * X[i, j]
        if not math.isfinite(v):
            return False
        xx[i] = v
    use = np.zeros(0, np.bool_)
    if init.shape[0]:
        use, finite = start_rows(init, limit)
        if not finite:
            return False
    _solve_chunk(G, have, DT, DtX, xx, np.arange(n), np.zeros((1, 0), np.int64), np.zeros((1, 0)), init, use, lam, tol,
                 cap, max_add, max_outer, n_add, n_first, 0, n, S, P, gap, flops)
    for i in range(n):
        if not gap[i] <= tol:
            return False
    return True


def run_lean(
    G: np.ndarray, have: np.ndarray, DT: np.ndarray, X: np.ndarray, DtX: np.ndarray, init: np.ndarray | None, limit: int,
    lam: float, tol: float, cap: int, max_add: int, max_outer: int, n_add: int, n_first: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """The kernel on a float64 batch ``X`` (``n x M``, contiguous) with ``DtX = X D``, every sample, as few Python steps as can be.

    What :class:`gapbound.inference.SparseCoder`'s lean path costs beyond ``X D``: at
    N = 32 the Python around the kernel was a third of a 32-sample call. ``init``: a float64
    C-contiguous warm start (``n x N``) or None, rows with more than ``limit`` positive codes
    as :func:`.starts.compact_start`. Returns (codes, objective, gap, whether every ``x`` and
    every entry of ``init`` is finite and every gap within ``tol``); with ``False`` the caller
    takes the general path (which names bad input).
    """
    n, N = X.shape[0], G.shape[0]
    S = np.zeros((n, N))
    P, gap = np.empty(n), np.empty(n)
    if _threads(n) == 1:
        ok = _kernel_lean(G, have, DT, X, DtX, np.zeros((0, 0)) if init is None else init, limit, lam, tol, cap, max_add,
                          max_outer, n_add, n_first, S, P, gap, np.empty(n, np.int64))
        return S, P, gap, bool(ok)
    xx = np.einsum("ij,ij->i", X, X)
    if not np.isfinite(xx).all():
        return S, P, gap, False
    idx, vals = np.zeros((1, 0), np.int64), np.zeros((1, 0))
    if init is not None:  # the parallel kernel takes compact starts (the compaction is small against a batch this size)
        idx, vals, finite = compact_start(init, limit)
        if not finite:
            return S, P, gap, False
    S, P, gap, _ = run_numpy(G, have, DT, DtX, xx, np.arange(n), idx, vals, lam, tol, cap, max_add, max_outer, n_add,
                             n_first)
    return S, P, gap, bool((gap <= tol).all())


class SparseCoder:
    """Codes ``argmin_s 0.5 ||x - D s||^2 + lam sum(s), s >= 0`` for batches of ``x``, exact and certified.

    The dictionary is validated once; what every solve under it needs (its
    float64 copy, the Gram matrix ``D^T D``, the Lipschitz constant, FISTA's
    step matrix) is formed on first use and kept, so repeated calls with
    single samples or small batches pay only for their own samples. The solver
    is :func:`gapbound.inference.fista` with the active-set finish (an exact
    solver; FISTA iterations only finish what the active set leaves). Finite
    float32/float64 numpy batches (and warm starts) under a float64 dictionary
    on the compiled backend take a lean path: the compiled active set called
    directly on numpy arrays, without the torch set-up of a general call
    (which costs as much as a small batch's solve); a batch it does not
    certify goes through the general path.

    Parameters
    ----------
    D : array-like
        ``M x N`` dictionary (numpy or torch, real, finite, no zero column); codes live on its device.
    lam : float
        L1 weight ``>= 0``.
    backend : {"auto", "numba", "torch"}
        Active-set implementation (see :func:`gapbound.inference.fista`).
    dtype : torch.dtype, optional
        Working precision of FISTA's iterates (default ``D``'s); certificates are float64.
    tol : float
        Per-sample duality-gap tolerance (absolute).
    max_iter, check_every : int
        FISTA iterations cap and certificate interval for the samples the active set does not finish.

    Examples
    --------
    >>> import numpy as np
    >>> D = np.linalg.qr(np.random.default_rng(0).normal(size=(8, 8)))[0][:, :6]
    >>> coder = SparseCoder(D, lam=0.1, tol=1e-9)
    >>> codes = coder.transform(np.ones((4, 8)))
    >>> codes.shape, bool((codes >= 0).all())
    ((4, 6), True)
    """

    def __init__(self, D: Any, lam: float, backend: str = "auto", dtype: torch.dtype | None = None, tol: float = 1e-6,
                 max_iter: int = 1000, check_every: int = 20):
        self.atoms = Atoms(D, dtype)
        self.lam = check_float("lam", lam, minimum=0.0)
        self.backend = self.atoms.resolve_backend(check_backend(backend))
        check_common(max_iter, tol, check_every)
        self.tol, self.max_iter, self.check_every = float(tol), int(max_iter), int(check_every)
        self._lean: tuple | None = None  # the lean path's numpy views of the kept set-up, made on first use

    @property
    def n_atoms(self) -> int:
        """``N``, the number of atoms (code width)."""
        return self.atoms.N

    @property
    def n_features(self) -> int:
        """``M``, the observation dimension."""
        return self.atoms.M

    def solve(self, X: Any, init: Any = None) -> InferenceResult:
        """Codes of ``X`` (``n x M``) with their per-sample certificates.

        Parameters
        ----------
        X : array-like
            Observations.
        init : array-like, optional
            ``n x N`` warm start (e.g. an SAE's codes). Its support seeds the active set; a start no better
            than zero codes is ignored. Where the solver stops short of ``tol`` a sample keeps the start if
            that is better.
        """
        if self._lean_applies(X, init):
            return self._solve_lean(X, init)
        return self._solve_general(X, init)

    def _solve_general(self, X: Any, init: Any) -> InferenceResult:
        prob = Problem(self.atoms, X, self.lam, init, self.backend)
        return proximal_gradient(prob, self.max_iter, self.tol, self.check_every, momentum=True, polish=True)

    def _lean_applies(self, X: Any, init: Any) -> bool:
        """Whether ``X`` (and ``init``) can skip the general set-up (anything else, bad input included, goes the general way)."""
        def ok(A: Any, width: int) -> bool:
            return isinstance(A, np.ndarray) and A.ndim == 2 and A.shape[1] == width and A.dtype in (np.float32, np.float64)

        # X's finiteness is checked on ||x||^2 in _solve_lean (n numbers instead of n M), init's in run_lean.
        return (self.backend == "numba" and self.atoms.dtype == torch.float64 and not counting() and ok(X, self.atoms.M)
                and X.shape[0] > 0 and (init is None or (ok(init, self.atoms.N) and init.shape[0] == X.shape[0])))

    def _solve_lean(self, X: np.ndarray, init: np.ndarray | None) -> InferenceResult:
        """The compiled active set on numpy arrays; a batch it does not certify (or a non-finite ``X``) goes the general way."""
        if self._lean is None:
            G, have, DT = self.atoms.gram_rows()
            self._lean = (G.numpy(), have.numpy(), DT.numpy(), self.atoms.D64.numpy(), *widths(self.atoms))
        G, have, DT, D64, cap, max_add, n_first = self._lean
        n = X.shape[0]
        if n * 256 >= self.atoms.N and not self.atoms.gram_complete:  # as Problem.gram_pays: one BLAS product beats rows piecemeal
            self.atoms.G64  # noqa: B018
        X64 = np.ascontiguousarray(X, dtype=np.float64)
        init64 = None if init is None else np.ascontiguousarray(init, dtype=np.float64)  # one kernel signature
        S, P, gap, ok = run_lean(G, have, DT, X64, X64 @ D64, init64, min(cap, self.atoms.M), self.lam, self.tol, cap,
                                 max_add, _LEAN_ROUNDS, 4, n_first)
        if not ok:  # rare: the general path (FISTA finishes what the active set leaves; bad input gets its error)
            return self._solve_general(X, S if init is None else init)
        return InferenceResult(torch.from_numpy(S), torch.from_numpy(gap), torch.from_numpy(P), 0, True)

    def transform(self, X: Any, init: Any = None) -> Any:
        """Codes of ``X`` (``n x N``): a numpy array for numpy input, else a tensor on the dictionary's device."""
        codes = self.solve(X, init).codes
        return codes.cpu().numpy() if isinstance(X, np.ndarray) else codes

    def __repr__(self) -> str:
        return (f"SparseCoder(M={self.atoms.M}, N={self.atoms.N}, lam={self.lam:g}, backend={self.backend!r}, "
                f"dtype={self.atoms.dtype}, tol={self.tol:g})")
