"""Reference solvers: scikit-learn's ``sparse_encode`` and cvxpy, certified like every other solver.

``sklearn_cd`` / ``sklearn_lars``: ``sparse_encode`` with ``positive=True``.
Its ``alpha`` is exactly ``lam``: ``sparse_encode`` divides ``alpha`` by
``n_features`` (= M) before calling ``Lasso``/``LassoLars``, whose loss is
``(1 / (2 M)) ||x - D s||^2 + alpha' ||s||_1``, i.e. ``P(s) / M``.
``cvxpy``: the same problem handed to cvxpy / Clarabel (small problems).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..utils.validation import check_float, check_int
from .problem import InferenceResult, Problem

__all__ = ["sklearn_encode", "cvxpy_encode"]


def sklearn_encode(
    D: Any, X: Any, lam: float, init: Any = None, max_iter: int = 1000, tol: float = 1e-6, algorithm: str = "lasso_cd",
    n_jobs: int | None = None,
) -> InferenceResult:
    """scikit-learn's ``sparse_encode`` with ``positive=True`` (reference solver; float64, CPU).

    ``alpha = lam`` exactly (see the module docstring). ``init`` is passed to
    ``lasso_cd`` as its warm start; ``lasso_lars`` ignores it. ``tol`` only
    decides ``converged``; scikit-learn's own stopping rule applies.
    """
    from sklearn.decomposition import sparse_encode

    if algorithm not in ("lasso_cd", "lasso_lars"):
        raise ValueError(f"algorithm must be 'lasso_cd' or 'lasso_lars', got {algorithm!r}")
    check_int("max_iter", max_iter, minimum=1)
    check_float("tol", tol, minimum=0.0)
    prob = Problem.build(D, X, lam, init, torch.float64)
    S = sparse_encode(
        prob.X64.cpu().numpy(), prob.D64.T.cpu().numpy(), algorithm=algorithm, alpha=prob.lam, positive=True,
        max_iter=max_iter, n_jobs=n_jobs, init=None if init is None else prob.S0.cpu().numpy(),
    )
    return prob.result(torch.from_numpy(np.ascontiguousarray(S)).to(prob.device).clamp_min(0.0), 0, tol)


def cvxpy_encode(D: Any, X: Any, lam: float, init: Any = None, tol: float = 1e-6, solver: str = "CLARABEL") -> InferenceResult:
    """The non-negative LASSO of all samples as one cvxpy problem (reference solver; small problems).

    The problem is separable over samples, so one solve gives every sample's optimum.
    """
    import cvxpy as cp

    check_float("tol", tol, minimum=0.0)
    prob = Problem.build(D, X, lam, init, torch.float64)
    Dn, Xn = prob.D64.cpu().numpy(), prob.X64.cpu().numpy()
    S = cp.Variable((prob.n, prob.N), nonneg=True)
    cp.Problem(cp.Minimize(0.5 * cp.sum_squares(Xn - S @ Dn.T) + prob.lam * cp.sum(S))).solve(solver=solver)
    if S.value is None:
        raise RuntimeError(f"cvxpy ({solver}) returned no solution")
    return prob.result(torch.from_numpy(np.maximum(S.value, 0.0)).to(prob.device), 0, tol)
