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
    (:mod:`gapbound.theory.jumprelu`): the ReLU branch and bound with the threshold
    a variable, over every witness entry's gate, pruning gate patterns no row realises
    (:mod:`gapbound.theory.separation`). Never below the linear-gated bound, never above
    the ReLU one (``theta = 0``).
``"topk"``
    TopK(k) encoders (the ``k`` largest pre-activations of each sample kept, with or without a
    ReLU) for every ``k >= topk_k`` (:mod:`gapbound.theory.topk`): the ranking is charged to the
    rows (an unselected active entry costs at least its ReLU cost, and a code with ``m < k``
    non-zeros pays for its ``k - m`` largest inactive entries, spread over the rows by weights),
    each row bounded by the ReLU branch and bound. A relaxation: never reported optimal.
``"relu"``
    ``f = relu(W x + b)``. An inactive entry costs ``relu(z)^2`` and an active
    entry is dropped (cost ``s^2``, hard constraint ``z <= 0``) exactly when ``z <= 0``.
    A best-first branch and bound over the entries' gates (:mod:`gapbound.theory.relu`);
    when it completes the per-row bound is the exact ReLU optimum.

Per row, ``min`` over the set ``Z`` of dropped active entries is enumerated
(:mod:`gapbound.theory.drops`; ReLU: branched, :mod:`gapbound.theory.relu`); each subproblem is
certified by weak duality (:mod:`gapbound.theory.duality`). Derivations: ``proofs/02_witness_bound.md``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..utils.validation import check_int
from .drops import _drop_search
from .jumprelu import _jumprelu_row_bnb, best_threshold, jumprelu_row_cost, threshold_interval
from .relu import _relu_row_bnb
from .topk import TopKCharge, _topk_row_bnb, choose_charge
from .witness import as_dictionary64, check_codes, witness_inputs

# A row is reported optimal when its certified bound is within this relative distance of the witness
# error of an actual encoder of the class (the row's own minimiser): then the bound is the class optimum
# up to that tolerance (the ReLU branch and bound settles nodes within 1e-7 of its incumbent).
OPTIMAL_RTOL = 1e-6

EncoderClass = Literal["linear-gated", "jumprelu", "relu", "topk"]
_CLASSES = ("linear-gated", "jumprelu", "relu", "topk")
_COVERS = {
    "linear-gated": "every linear-gated encoder g(Wx+b) whose outputs are each either the pre-activation or 0 "
    "(ReLU, JumpReLU with any thresholds, TopK with any k, BatchTopK)",
    "jumprelu": "JumpReLU encoders z 1[z > theta_i] with z = Wx+b and any per-latent thresholds theta_i >= 0 "
    "(includes ReLU, theta = 0)",
    "relu": "ReLU encoders relu(Wx+b)",
    "topk": "TopK encoders (the k largest entries of Wx+b kept, with or without a ReLU) for every k at least "
    "the witness codes' sparsity (certify: k >= K)",
}
# Why a TopK row is never reported as the class optimum (proofs/02_witness_bound.md 2.5).
_TOPK_RELAXED = ("TopK bound: a relaxation (the ranking charged to rows with fixed sample weights), "
                 "not the class optimum")


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
        ``"jumprelu"`` only: ``[lo, hi)``, every threshold in it gives the row ``weights`` their best JumpReLU
        error (``lo`` the exact search's, a data value; ``hi`` the next larger ``relu(z)``, ``inf`` when none
        passes): an encoder built from them should take the middle, which no rounding moves across a sample.
    upper : float
        Witness error of this row for the encoder of the class built from ``weights``
        (free gate: the best gate per entry; JumpReLU: the best threshold): the class optimum
        lies in ``[bound, upper]``.
    truncated : str or None
        Why the row bound may be below the class optimum: the drop enumeration ran out of
        budget (the tail bound decides), or the bound and ``upper`` differ by more than
        ``OPTIMAL_RTOL`` (an ill-conditioned kept set fell back to its drop cost, or the
        JumpReLU relaxation is not tight). ``None``: the row bound is the class optimum.
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
    upper: float = math.inf
    truncated: str | None = None


def class_cost(z: np.ndarray, s: np.ndarray, encoder_class: str) -> float:
    """Witness error of one row with pre-activations ``z`` and targets ``s`` for the class's best gate.

    ``"linear-gated"``: each active entry passes or is zeroed, whichever is cheaper, inactive
    ones are zeroed; ``"relu"``: ``relu(z)``; ``"jumprelu"``: ``z 1[z > theta]`` with the best
    ``theta >= 0`` (candidates 0 and every positive ``z``).
    """
    if encoder_class == "linear-gated":
        act = s > 0
        return float(np.minimum((z[act] - s[act]) ** 2, s[act] ** 2).sum())
    if encoder_class in ("relu", "topk"):  # topk: the relaxed row's active terms (its weighted terms aside)
        act = s > 0 if encoder_class == "topk" else np.ones(len(s), dtype=bool)
        return float(((np.maximum(z[act], 0.0) - s[act]) ** 2).sum())
    return float(jumprelu_row_cost(z, s))


def _row_bound(
    row: int, A: np.ndarray, codes: np.ndarray, encoder_class: str, max_subproblems: int,
    record: list | None = None, topk_charge: TopKCharge | None = None,
) -> RowBound:
    """Certified row bound for the class (module docstring; ``proofs/02_witness_bound.md``)."""
    active = np.flatnonzero(codes[:, row] > 0)
    inactive = np.flatnonzero(codes[:, row] == 0)
    Aa, y = A[active], codes[active, row]
    Bi = A[inactive]
    interval, complete = None, True
    tag = dict(row=row, active=active, inactive=inactive, encoder_class=encoder_class)
    if encoder_class == "linear-gated":
        res = _drop_search(Aa, y, Bi, False, math.inf, max_subproblems, record=record, tag=tag)
        best_res, bound, solved = res, res.value, res.solved
    elif encoder_class == "relu":
        res, complete = _relu_row_bnb(Aa, y, Bi, max_subproblems, record=record, tag=tag)
        best_res, bound, solved = res, res.value, res.solved
    elif encoder_class == "topk":  # weighted relu(z)^2 (codes with m < k), linear hinges (m = k) on inactive entries
        weighted, hinged, rc = topk_charge.row(A, codes, row)
        tag.update(inactive=inactive[:0], weighted=weighted, hinged=hinged, delta=topk_charge.delta)
        res, complete = _topk_row_bnb(Aa, y, A[weighted], topk_charge.sw[weighted, row], rc, max_subproblems,
                                      record=record, tag=tag)
        best_res, bound, solved = res, res.value, res.solved
    else:  # every witness entry has a gate: actives first, so drop sets index into ``active``
        order = np.concatenate([active, inactive])
        tag.update(active=order, inactive=inactive[:0])
        res, complete = _jumprelu_row_bnb(A[order], codes[order, row], max_subproblems, record=record, tag=tag)
        best_res, bound, solved = res, res.value, res.solved
    u = best_res.u if best_res.u is not None else np.zeros(A.shape[1])
    if encoder_class == "jumprelu":
        z = A @ u
        interval = [float(v) for v in threshold_interval(z, best_threshold(z, codes[:, row])[1])]
    bound = max(0.0, bound)
    upper = class_cost(A @ u, codes[:, row], encoder_class)
    truncated = None
    if encoder_class in ("relu", "jumprelu", "topk") and not complete:
        truncated = (f"branch and bound stopped after {solved} nodes (max_subproblems={max_subproblems}); "
                     "the smallest open node decides")
    elif encoder_class == "linear-gated" and best_res.tail <= bound:
        truncated = (f"drop enumeration stopped at {best_res.k_done + 1} drops (max_subproblems={max_subproblems}); "
                     f"the tail bound {best_res.tail:.6g} decides")
    elif encoder_class == "topk":
        truncated = _TOPK_RELAXED
    elif upper > bound + OPTIMAL_RTOL * upper:
        why = ("a leaf's gate pattern was neither separated nor proven unrealisable, or the best row found "
               "misses its closure value" if encoder_class == "jumprelu"
               else "an ill-conditioned or rank-deficient kept set fell back to a weaker certificate")
        truncated = f"bound {bound:.6g} below the best {encoder_class} row found ({upper:.6g}): {why}"
    return RowBound(
        row=row,
        bound=bound,
        n_active=len(active),
        n_inactive=len(inactive),
        best_drop_set=[int(active[t]) for t in best_res.drop_set],
        no_drop_value=best_res.no_drop,
        max_drops_enumerated=best_res.k_done,
        tail_bound=best_res.tail,
        n_subproblems=solved,
        weights=[float(v) for v in u],
        threshold_interval=interval,
        upper=upper,
        truncated=truncated,
    )


@dataclass
class BoundResult:
    """Certified witness-set lower bound: ``bound = sum of rows[i].bound`` (rounded down).

    ``optimal``: every row is the class optimum (no row ``truncated``), so ``bound`` is the
    optimum of the class on the witness set, up to ``OPTIMAL_RTOL``. ``scale_exponent``: the
    bound was computed for ``D * 2**-scale_exponent`` (exact in floating point; the class
    optimum does not change when ``D`` is scaled, an encoder absorbs the scale).
    ``topk_k``: ``"topk"`` only, the bound covers TopK(k) for every ``k >= topk_k``.
    ``certificates``: with ``keep_certificates=True``, every certified subproblem batch
    (:class:`~gapbound.theory.duality.Certificate`) for :func:`gapbound.theory.exact.verify_exact`.
    """

    bound: float
    encoder_class: str
    rows: list[RowBound]
    scale_exponent: int = 0
    certificates: list = field(default_factory=list)
    topk_k: int | None = None

    @property
    def optimal(self) -> bool:
        return all(r.truncated is None for r in self.rows)

    @property
    def truncated_rows(self) -> list[tuple[int, str]]:
        """``(row, reason)`` for every row whose bound may be below the class optimum."""
        return [(r.row, r.truncated) for r in self.rows if r.truncated is not None]

    @property
    def weights(self) -> np.ndarray:
        """``N x (M+1)``: each row's minimising ``(w_i, b_i)`` for the original ``D`` (a near-optimal encoder)."""
        W = np.array([r.weights for r in self.rows])
        W[:, :-1] = np.ldexp(W[:, :-1], -self.scale_exponent)
        return W


def lower_bound(
    D: Any, codes: Any, encoder_class: EncoderClass = "linear-gated", max_subproblems: int = 20000,
    jumprelu_budget: int | None = None, keep_certificates: bool = False, topk_k: int | None = None,
    topk_hinge: bool = True,
) -> BoundResult:
    """Certified lower bound on ``sum_t ||f(x_t) - s_t||^2`` over the witness set, for every ``f`` in the class.

    Parameters
    ----------
    D : array-like
        ``M x N`` dictionary (finite, no zero columns).
    codes : array-like
        ``n x N`` non-negative witness codes; inputs are ``x_t = D s_t`` in float64
        (:func:`witness_inputs`).
    encoder_class : {"linear-gated", "jumprelu", "relu", "topk"}
        Which encoders the bound covers (module docstring).
    max_subproblems : int
        Per-row budget of convex subproblems (``"relu"``: branch-and-bound nodes); beyond it the
        drop enumeration stops and the (valid, looser) tail bound takes over (``"relu"``: the
        open nodes' certified values).
    jumprelu_budget : int, optional
        Deprecated and ignored (it limited the threshold refinements of the former JumpReLU
        relaxation; the JumpReLU branch and bound is limited by ``max_subproblems``).
    keep_certificates : bool
        Keep every certified subproblem (problem data, multipliers, certified
        components) in ``BoundResult.certificates`` for exact re-verification.
    topk_k : int, optional
        ``"topk"`` only: the bound covers TopK(k) for every ``k >= topk_k``; at least the largest
        number of non-zeros of a witness code (the default).
    topk_hinge : bool
        ``"topk"`` only: with the linear-hinge charge on codes with ``topk_k`` non-zeros (``proofs/02`` 2.5.1;
        the default), or only the sample weights (the weaker bound of session 6; faster: 20 search steps
        instead of 50, no hinge rows).

    Returns
    -------
    BoundResult
    """
    if encoder_class not in _CLASSES:
        raise ValueError(f"encoder_class must be one of {_CLASSES}, got {encoder_class!r}")
    check_int("max_subproblems", max_subproblems, minimum=1)
    if not isinstance(topk_hinge, bool):
        raise TypeError(f"topk_hinge must be True or False, got {topk_hinge!r}")
    if jumprelu_budget is not None:
        check_int("jumprelu_budget", jumprelu_budget, minimum=0)
        warnings.warn("jumprelu_budget is ignored: the JumpReLU bound is a branch and bound limited by max_subproblems",
                      FutureWarning, stacklevel=2)
    Dn, e = normalise_scale(as_dictionary64(D))
    S = check_codes(codes, Dn.shape[1])
    A = np.hstack([witness_inputs(Dn, S), np.ones((len(S), 1))])
    record: list | None = [] if keep_certificates else None
    charge, k = None, None
    if encoder_class == "topk":
        sparsity = int((S > 0).sum(1).max())
        k = sparsity if topk_k is None else check_int("topk_k", topk_k, minimum=1)
        if k < sparsity:
            raise ValueError(f"topk_k={k} is below the witness codes' sparsity {sparsity}: the TopK bound needs "
                             "k >= the number of non-zeros of every code (use encoder_class='linear-gated' for any k)")
        charge = choose_charge(A, S, k, max_subproblems, hinge=topk_hinge)
    rows = [_row_bound(i, A, S, encoder_class, max_subproblems, record=record,
                       topk_charge=charge)
            for i in range(Dn.shape[1])]
    total = np.nextafter(math.fsum(r.bound for r in rows), -np.inf)  # fsum is correctly rounded: one ulp down
    return BoundResult(bound=max(0.0, float(total)), encoder_class=encoder_class, rows=rows, scale_exponent=e,
                       certificates=record or [], topk_k=k)


def normalise_scale(D: np.ndarray) -> tuple[np.ndarray, int]:
    """``(D * 2**-e, e)`` with the largest column norm in ``[0.5, 1)``; a power of two, so exact.

    The optimum of every encoder class is the same for ``D`` and ``c D`` (``W / c``
    absorbs the scale), and the witness inputs ``fl(D s) 2**-e = fl(D 2**-e s)`` are
    the same numbers up to the exponent, so the bound is certified for the caller's
    inputs and does not depend on the scale of ``D``. ``e = 0`` when scaling would
    underflow an entry.
    """
    e = int(np.frexp(np.linalg.norm(D, axis=0).max())[1])
    Ds = np.ldexp(D, -e)
    if not np.array_equal(np.ldexp(Ds, e), D):
        return D, 0
    return Ds, e

