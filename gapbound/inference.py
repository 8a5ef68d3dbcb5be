"""Per-sample sparse inference: the single solver entry point.

Every solver minimises the non-negative LASSO, sample by sample, batched::

    P(s) = 0.5 * ||x - D s||^2 + lam * sum(s),   s >= 0

with the dictionary ``D`` (``M x N``) fixed. Starting from an encoder's codes
this is inference-time optimisation (SAE+ITO); starting from zero it is the
sparse-coding encoder.

Certificates: for any ``theta`` with ``D^T theta <= lam`` (component-wise), the
dual value ``x.theta - 0.5 ||theta||^2`` is a lower bound on ``min P``. We take
``theta`` as the residual ``x - D s`` scaled into the dual-feasible set, so
``duality_gap = P(s) - dual(theta) >= P(s) - min P`` bounds each sample's
suboptimality.

New solvers register with :func:`register_solver` and are reached through
:func:`solve`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from .validation import as_tensor, check_data, check_dictionary, check_float, check_int

__all__ = [
    "InferenceResult",
    "register_solver",
    "solve",
    "objective",
    "duality_gap",
    "lipschitz",
    "ista",
    "fista",
    "SOLVERS",
]


@dataclass
class InferenceResult:
    """Codes and their certificate.

    Attributes
    ----------
    codes : torch.Tensor
        ``n x N`` non-negative codes.
    duality_gap : torch.Tensor
        Per-sample duality gap (length ``n``), an upper bound on each sample's suboptimality.
    objective : torch.Tensor
        Per-sample primal objective ``P(s)``.
    n_iter : int
        Iterations run.
    converged : bool
        Whether every sample's gap fell below ``tol``.
    """

    codes: torch.Tensor
    duality_gap: torch.Tensor
    objective: torch.Tensor
    n_iter: int
    converged: bool


SOLVERS: dict[str, Callable[..., InferenceResult]] = {}


def register_solver(name: str) -> Callable[[Callable[..., InferenceResult]], Callable[..., InferenceResult]]:
    """Decorator adding a solver ``f(D, X, lam, init=..., max_iter=..., tol=..., **kw)`` to :func:`solve`."""

    def deco(fn: Callable[..., InferenceResult]) -> Callable[..., InferenceResult]:
        SOLVERS[name] = fn
        return fn

    return deco


def objective(D: torch.Tensor, X: torch.Tensor, S: torch.Tensor, lam: float) -> torch.Tensor:
    """Per-sample non-negative LASSO objective ``0.5 ||x - D s||^2 + lam * sum(s)``."""
    R = X - S @ D.T
    return 0.5 * (R * R).sum(1) + lam * S.sum(1)


def duality_gap(D: torch.Tensor, X: torch.Tensor, S: torch.Tensor, lam: float) -> torch.Tensor:
    """Per-sample duality gap of non-negative codes ``S`` (see module docstring)."""
    R = X - S @ D.T
    corr = (R @ D).amax(1)  # max_j d_j . r ; feasibility needs <= lam
    scale = torch.where(corr > lam, lam / corr.clamp_min(torch.finfo(R.dtype).tiny), torch.ones_like(corr))
    theta = R * scale[:, None]
    dual = (X * theta).sum(1) - 0.5 * (theta * theta).sum(1)
    return (objective(D, X, S, lam) - dual).clamp_min(0.0)


def lipschitz(D: torch.Tensor) -> float:
    """Lipschitz constant ``||D||_2^2`` of the smooth part's gradient ``D^T (D s - x)``."""
    return float(torch.linalg.matrix_norm(D.double(), ord=2) ** 2)


def _prepare(D: Any, X: Any, lam: float, init: Any) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
    D = check_dictionary(D)
    X = check_data(X, D, dtype=D.dtype, device=D.device)
    lam = check_float("lam", lam, minimum=0.0)
    if init is None:
        S0 = torch.zeros(X.shape[0], D.shape[1], dtype=D.dtype, device=D.device)
    else:
        S0 = as_tensor("init", init, dtype=D.dtype, device=D.device).detach()
        if S0.shape != (X.shape[0], D.shape[1]):
            raise ValueError(f"init must have shape {(X.shape[0], D.shape[1])}, got {tuple(S0.shape)}")
        if not torch.isfinite(S0).all():
            raise ValueError("init contains NaN or infinite values")
        S0 = S0.clamp_min(0.0)
    return D, X, lam, S0


def _proximal_gradient(
    D: torch.Tensor, X: torch.Tensor, lam: float, S: torch.Tensor, max_iter: int, tol: float, check_every: int, momentum: bool
) -> InferenceResult:
    """Projected proximal gradient (ISTA) or its accelerated form with adaptive restart (FISTA)."""
    step = 1.0 / lipschitz(D)
    G = D.T @ D
    DtX = X @ D  # n x N, x^T D
    Y, t = S.clone(), torch.ones(S.shape[0], 1, dtype=S.dtype, device=S.device)
    n_iter, converged = 0, False
    for n_iter in range(1, max_iter + 1):
        grad = Y @ G - DtX
        S_new = (Y - step * (grad + lam)).clamp_min(0.0)
        if momentum:
            # O'Donoghue & Candes gradient restart: drop momentum where it points uphill.
            restart = ((Y - S_new) * (S_new - S)).sum(1, keepdim=True) > 0
            t = torch.where(restart, torch.ones_like(t), t)
            t_new = 0.5 * (1 + torch.sqrt(1 + 4 * t * t))
            Y = S_new + ((t - 1) / t_new) * (S_new - S)
            t = t_new
        else:
            Y = S_new
        S = S_new
        if n_iter % check_every == 0 and tol > 0 and bool((duality_gap(D, X, S, lam) <= tol).all()):
            converged = True
            break
    gap = duality_gap(D, X, S, lam)
    return InferenceResult(S, gap, objective(D, X, S, lam), n_iter, converged or bool((gap <= tol).all()))


@register_solver("ista")
def ista(D: Any, X: Any, lam: float, init: Any = None, max_iter: int = 1000, tol: float = 1e-6, check_every: int = 10) -> InferenceResult:
    """Projected ISTA (proximal gradient with step ``1/L``) for the non-negative LASSO.

    Parameters
    ----------
    D : array-like
        ``M x N`` dictionary.
    X : array-like
        ``n x M`` observations.
    lam : float
        L1 weight ``>= 0``.
    init : array-like, optional
        ``n x N`` warm start (e.g. an SAE's codes); zeros if omitted.
    max_iter : int
        Iteration cap.
    tol : float
        Stop when every sample's duality gap is ``<= tol`` (absolute).
    check_every : int
        Iterations between gap checks.
    """
    D, X, lam, S0 = _prepare(D, X, lam, init)
    check_int("max_iter", max_iter, minimum=1)
    check_float("tol", tol, minimum=0.0)
    return _proximal_gradient(D, X, lam, S0, max_iter, tol, check_int("check_every", check_every, minimum=1), momentum=False)


@register_solver("fista")
def fista(D: Any, X: Any, lam: float, init: Any = None, max_iter: int = 1000, tol: float = 1e-6, check_every: int = 10) -> InferenceResult:
    """FISTA with adaptive (gradient) restart for the non-negative LASSO.

    Same parameters as :func:`ista`; ``duality_gap`` in the result is per sample.
    """
    D, X, lam, S0 = _prepare(D, X, lam, init)
    check_int("max_iter", max_iter, minimum=1)
    check_float("tol", tol, minimum=0.0)
    return _proximal_gradient(D, X, lam, S0, max_iter, tol, check_int("check_every", check_every, minimum=1), momentum=True)


def solve(D: Any, X: Any, lam: float, method: str = "fista", **kwargs: Any) -> InferenceResult:
    """Infer non-negative sparse codes for ``X`` under the fixed dictionary ``D``.

    Parameters
    ----------
    D : array-like
        ``M x N`` dictionary (numpy or torch).
    X : array-like
        ``n x M`` observations.
    lam : float
        L1 weight.
    method : str
        A registered solver name (see ``SOLVERS``).
    **kwargs
        Passed to the solver (``init``, ``max_iter``, ``tol``, ...).
    """
    if method not in SOLVERS:
        raise ValueError(f"method must be one of {sorted(SOLVERS)}, got {method!r}")
    return SOLVERS[method](D, X, lam, **kwargs)
