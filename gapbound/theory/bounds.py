"""Certified lower bounds on the witness-set error of every encoder of a class, row by row.

For codes ``T`` with inputs ``x_t = D s_t`` the bound covers

    E(W, b) = sum_{s in T} || f(D s) - s ||^2

for every encoder ``f(x) = g(W x + b)`` of the class:

``"linear-gated"``
    Every output coordinate is either its pre-activation or 0, with the gate
    chosen arbitrarily per sample and coordinate. Covers ReLU, JumpReLU with
    any thresholds, TopK (any k, with or without a ReLU) and BatchTopK. An
    inactive coordinate can always be gated off at no cost, so only the active
    entries of each row constrain it:
    ``E >= sum_i min_{w, beta} sum_{t: s_ti > 0} min((w.x_t + beta - s_ti)^2, s_ti^2)``.
``"jumprelu"``
    ``f_i = z_i 1[z_i > theta_i]`` with any per-latent ``theta_i >= 0``
    (:mod:`gapbound.theory.jumprelu`). Never below the linear-gated bound,
    never above the ReLU one (``theta = 0``).
``"relu"``
    ``f = relu(W x + b)``. An inactive entry costs ``relu(z)^2`` and an active
    entry is dropped (cost ``s^2``) exactly when ``z <= 0``. With the drop
    enumeration complete the per-row bound is the exact ReLU optimum.

Per row, ``min`` over the set ``Z`` of dropped active entries is enumerated
(:mod:`gapbound.theory.drops`); each subproblem is certified by weak duality
(:mod:`gapbound.theory.duality`). Derivations: ``proofs/02_witness_bound.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..utils.validation import check_int
from .drops import _DROP_PENALTY, _drop_search
from .jumprelu import _jumprelu_row
from .witness import as_dictionary64, check_codes

EncoderClass = Literal["linear-gated", "jumprelu", "relu"]
_CLASSES = ("linear-gated", "jumprelu", "relu")
_COVERS = {
    "linear-gated": "every linear-gated encoder g(Wx+b) whose outputs are each either the pre-activation or 0 "
    "(ReLU, JumpReLU with any thresholds, TopK with any k, BatchTopK)",
    "jumprelu": "JumpReLU encoders z 1[z > theta_i] with z = Wx+b and any per-latent thresholds theta_i >= 0 "
    "(includes ReLU, theta = 0)",
    "relu": "ReLU encoders relu(Wx+b)",
}


@dataclass
class RowBound:
    """The certified bound of one output coordinate (row of ``W``).

    Attributes
    ----------
    row : int
        Coordinate index ``i``.
    bound : float
        Certified lower bound on this row's share of the witness error.
    n_active, n_inactive : int
        Witness codes with ``s_i > 0`` / ``s_i = 0``.
    best_drop_set : list[int]
        Active witness indices (into the witness set) dropped by the best subset found.
    no_drop_value : float
        Certified value with nothing dropped (the convex problem alone).
    max_drops_enumerated : int
        Largest drop-set size enumerated completely.
    tail_bound : float
        Cheapest cost of any drop set larger than that (the bound never exceeds it).
    n_subproblems : int
        Convex subproblems solved and certified.
    weights : list[float]
        The minimising ``(w, beta)`` found (a near-optimal row for this class).
    threshold_interval : list[float] or None
        ``"jumprelu"`` only: the threshold interval ``[t0, t1]`` attaining the row bound.
    """

    row: int
    bound: float
    n_active: int
    n_inactive: int
    best_drop_set: list[int]
    no_drop_value: float
    max_drops_enumerated: int
    tail_bound: float
    n_subproblems: int
    weights: list[float]
    threshold_interval: list[float] | None = None



def _row_bound(
    row: int, A: np.ndarray, codes: np.ndarray, encoder_class: str, max_subproblems: int,
    jumprelu_budget: int = 40, theta_grid: int = 8,
) -> RowBound:
    """Certified row bound for the class (module docstring; ``proofs/02_witness_bound.md``)."""
    active = np.flatnonzero(codes[:, row] > 0)
    inactive = np.flatnonzero(codes[:, row] == 0)
    Aa, y = A[active], codes[active, row]
    Bi = A[inactive]
    interval = None
    if encoder_class == "linear-gated":
        res = _drop_search(Aa, y, Bi, 0.0, math.inf, 0.0, 0.0, math.inf, max_subproblems)
        best_res, bound, solved = res, res.value, res.solved
    elif encoder_class == "relu":
        # a dropped active entry has z <= 0 (penalty); kept entries with z <= 0 already cost >= s^2
        res = _drop_search(Aa, y, Bi, 0.0, 0.0, 0.0, _DROP_PENALTY, math.inf, max_subproblems)
        best_res, bound, solved = res, res.value, res.solved
    else:
        best_res, bound, solved, interval = _jumprelu_row(Aa, y, Bi, max_subproblems, theta_grid, jumprelu_budget)
    u = best_res.u if best_res.u is not None else np.zeros(A.shape[1])
    return RowBound(
        row=row,
        bound=max(0.0, bound),
        n_active=len(active),
        n_inactive=len(inactive),
        best_drop_set=[int(active[t]) for t in best_res.drop_set],
        no_drop_value=best_res.no_drop,
        max_drops_enumerated=best_res.k_done,
        tail_bound=best_res.tail,
        n_subproblems=solved,
        weights=[float(v) for v in u],
        threshold_interval=interval,
    )


@dataclass
class BoundResult:
    """Certified witness-set lower bound: ``bound = sum of rows[i].bound`` (rounded down)."""

    bound: float
    encoder_class: str
    rows: list[RowBound]

    @property
    def weights(self) -> np.ndarray:
        """``N x (M+1)``: each row's minimising ``(w_i, b_i)`` (a near-optimal encoder for the class)."""
        return np.array([r.weights for r in self.rows])


def lower_bound(
    D: Any, codes: Any, encoder_class: EncoderClass = "linear-gated", max_subproblems: int = 20000,
    jumprelu_budget: int = 40,
) -> BoundResult:
    """Certified lower bound on ``sum_t ||f(x_t) - s_t||^2`` over the witness set, for every ``f`` in the class.

    Parameters
    ----------
    D : array-like
        ``M x N`` dictionary (finite, no zero columns).
    codes : array-like
        ``n x N`` non-negative witness codes; inputs are ``x_t = D s_t`` in float64
        (:func:`witness_inputs`).
    encoder_class : {"linear-gated", "jumprelu", "relu"}
        Which encoders the bound covers (module docstring).
    max_subproblems : int
        Per-row budget of convex subproblems; beyond it the drop enumeration
        stops and the (valid, looser) tail bound takes over.
    jumprelu_budget : int
        ``"jumprelu"`` only: branch-and-bound refinements per row (threshold
        splits and leak branchings); more is tighter and slower, any is valid.

    Returns
    -------
    BoundResult
    """
    if encoder_class not in _CLASSES:
        raise ValueError(f"encoder_class must be one of {_CLASSES}, got {encoder_class!r}")
    check_int("max_subproblems", max_subproblems, minimum=1)
    check_int("jumprelu_budget", jumprelu_budget, minimum=0)
    Dn = as_dictionary64(D)
    S = check_codes(codes, Dn.shape[1])
    X = S @ Dn.T
    A = np.hstack([X, np.ones((len(X), 1))])
    rows = [_row_bound(i, A, S, encoder_class, max_subproblems, jumprelu_budget) for i in range(Dn.shape[1])]
    total = math.fsum(r.bound for r in rows)
    return BoundResult(bound=max(0.0, total * (1 - 1e-12)), encoder_class=encoder_class, rows=rows)

