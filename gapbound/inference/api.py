"""Entry points: the solver registry, :func:`solve` and :func:`warm_start` (SAE+ITO)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..utils.validation import check_data, check_dictionary
from .lca import adam_exp, lca
from .problem import InferenceResult, real_array
from .proximal import fista, ista
from .reference import cvxpy_encode, sklearn_encode

__all__ = ["SOLVERS", "register_solver", "solve", "warm_start"]

Solver = Callable[..., InferenceResult]


def _sklearn_cd(D: Any, X: Any, lam: float, **kw: Any) -> InferenceResult:
    return sklearn_encode(D, X, lam, algorithm="lasso_cd", **kw)


def _sklearn_lars(D: Any, X: Any, lam: float, **kw: Any) -> InferenceResult:
    return sklearn_encode(D, X, lam, algorithm="lasso_lars", **kw)


SOLVERS: dict[str, Solver] = {
    "fista": fista,
    "ista": ista,
    "lca": lca,
    "adam_exp": adam_exp,
    "sklearn_cd": _sklearn_cd,
    "sklearn_lars": _sklearn_lars,
    "cvxpy": cvxpy_encode,
}


def register_solver(name: str) -> Callable[[Solver], Solver]:
    """Decorator adding a solver ``f(D, X, lam, init=..., max_iter=..., tol=..., **kw)`` to :func:`solve`."""

    def deco(fn: Solver) -> Solver:
        SOLVERS[name] = fn
        return fn

    return deco


def solve(D: Any, X: Any, lam: float, method: str = "fista", **kwargs: Any) -> InferenceResult:
    """Infer non-negative sparse codes for ``X`` under the fixed dictionary ``D``.

    Parameters
    ----------
    D : array-like
        ``M x N`` dictionary (numpy or torch, real floating point).
    X : array-like
        ``n x M`` observations.
    lam : float
        L1 weight.
    method : str
        A registered solver name (see ``SOLVERS``).
    **kwargs
        Passed to the solver (``init``, ``max_iter``, ``tol``, ``polish``,
        ``backend``, ...). ``fista`` with its default ``polish=True`` is an exact
        solver whose ``max_iter`` is not a compute budget; pass ``polish=False``
        for one (see :func:`gapbound.inference.fista`).

    Returns
    -------
    InferenceResult
        Codes with their per-sample float64 certificates.
    """
    if method not in SOLVERS:
        raise ValueError(f"method must be one of {sorted(SOLVERS)}, got {method!r}")
    return SOLVERS[method](D, X, lam, **kwargs)


def warm_start(encoder: Callable[[torch.Tensor], torch.Tensor], D: Any, X: Any, lam: float, method: str = "fista", **kwargs: Any) -> InferenceResult:
    """Inference-time optimisation from an encoder's codes (SAE+ITO).

    Parameters
    ----------
    encoder : callable
        Any encoder (an ``nn.Module`` or function) mapping ``n x M`` inputs to ``n x N`` codes.
    D, X, lam
        As in :func:`solve`.
    method : str
        Solver name.
    **kwargs
        Passed to the solver.
    """
    if not callable(encoder):
        raise TypeError(f"encoder must be callable (an nn.Module or function), got {type(encoder).__name__}")
    Dt = check_dictionary(real_array("D", D))
    Xt = check_data(real_array("X", X), Dt, dtype=Dt.dtype, device=Dt.device)
    with torch.no_grad():
        codes = encoder(Xt)
    return solve(Dt, Xt, lam, method=method, init=codes, **kwargs)
