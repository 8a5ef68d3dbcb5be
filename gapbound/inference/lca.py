"""The locally competitive algorithm (Rozell et al. 2008) and the authors'-style Adam-on-exp baseline.

- ``lca``: LCA with the non-negative soft threshold; its fixed points are
  exactly the non-negative LASSO solutions. Uses the factored form
  ``D^T (x - D a)`` so one iteration costs ``4 n M N`` FLOPs instead of the
  Gram form's ``2 n N^2`` when ``N > 2M``.
- ``adam_exp``: Adam on ``u`` with ``s = exp(u)`` (10,000 iterations, lr 3e-3
  by default), the ITO baseline of the paper's authors.
"""

from __future__ import annotations

from typing import Any

import torch

from ..utils.validation import check_float
from .problem import InferenceResult, Problem, objective
from .proximal import check_common, neg_grad

__all__ = ["lca", "adam_exp"]


def lca(
    D: Any, X: Any, lam: float, init: Any = None, max_iter: int = 1000, tol: float = 1e-6, check_every: int = 10,
    eta: float | None = None, dtype: torch.dtype | None = None,
) -> InferenceResult:
    """Locally competitive algorithm (Rozell et al. 2008), non-negative soft threshold.

    Membrane potentials ``u`` follow the Euler-discretised dynamics
    ``u <- u + eta * (D^T x - u - (D^T D - I) a)``, ``a = max(u - lam, 0)``.
    At a fixed point ``D^T (x - D a) = lam`` on the active set and ``<= lam``
    elsewhere: the non-negative LASSO's KKT conditions. The inhibition term is
    applied in factored form ``D^T (D a) - a`` unless the Gram form is cheaper,
    and the residual ``x - D a`` it needs also yields the certificate.

    Parameters
    ----------
    D, X, lam, init, max_iter, tol, check_every, dtype
        As in :func:`ista`.
    tol : float
        As in :func:`ista`; ``0`` runs exactly ``max_iter`` steps and skips the
        intermediate float64 certificates (worth it at language-model sizes).
    eta : float, optional
        Step ``dt / tau``; default ``1 / ||D||_2^2``, which keeps the
        discretisation stable (on the active set the error contracts by
        ``I - eta G``).

    Returns
    -------
    InferenceResult
        ``duality_gap`` is per sample.
    """
    check_common(max_iter, tol, check_every)
    prob = Problem.build(D, X, lam, init, dtype)
    L = prob.atoms.lipschitz
    eta = 1.0 / L if eta is None else check_float("eta", eta, minimum=0.0, strict_minimum=True, maximum=2.0 / L)
    lam = prob.lam
    A = prob.S0.clone()
    U = torch.where(A > 0, A + lam, torch.zeros_like(A))  # potentials reproducing the warm start
    rows = torch.arange(prob.n, device=prob.device)
    A_all = A.clone()
    cache: dict = {}
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        C = neg_grad(prob, A, rows, cache)  # D^T (x - D a) = b - G a
        U.mul_(1 - eta).add_(C, alpha=eta).add_(A, alpha=eta)
        A = (U - lam).clamp_(min=0.0)
        # tol = 0 (a fixed budget, e.g. inside a training loop): certify once, at the end.
        if tol == 0 or (n_iter % check_every and n_iter != max_iter):
            continue
        _, gap, _ = prob.certify(A, rows)
        A_all[rows] = A
        done = gap <= tol
        if done.all():
            break
        if done.any():
            keep = ~done
            rows, A, U = rows[keep], A[keep], U[keep]
    A_all[rows] = A
    return prob.result(A_all, n_iter, tol)


def adam_exp(
    D: Any, X: Any, lam: float, init: Any = None, max_iter: int = 10_000, tol: float = 0.0, check_every: int = 500,
    lr: float = 3e-3, floor: float = 1e-4, dtype: torch.dtype | None = None,
) -> InferenceResult:
    """Adam on exponentiated codes ``s = exp(u)``: the authors'-style ITO baseline.

    Minimises ``sum_i P(s_i)`` with ``torch.optim.Adam`` over ``u``; codes are
    positive by construction. ``tol = 0`` (default) runs all ``max_iter``
    steps, as the baseline does.

    Parameters
    ----------
    D, X, lam, init, max_iter, tol, check_every, dtype
        As in :func:`ista` (``init`` entries below ``floor`` start at ``floor``).
    lr : float
        Adam learning rate (default 3e-3).
    floor : float
        Smallest starting code, since ``exp(u)`` cannot be 0.
    """
    check_common(max_iter, tol, check_every)
    check_float("lr", lr, minimum=0.0, strict_minimum=True)
    check_float("floor", floor, minimum=0.0, strict_minimum=True)
    prob = Problem.build(D, X, lam, init, dtype)
    u = prob.S0.clamp_min(floor).log().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    n_iter = 0
    with torch.enable_grad():
        for n_iter in range(1, max_iter + 1):
            loss = objective(prob.D, prob.X, u.exp(), prob.lam).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if tol > 0 and n_iter % check_every == 0 and bool((prob.certify(u.detach().exp())[1] <= tol).all()):
                break
    return prob.result(u.detach().exp(), n_iter, tol)
