"""TopK class: the ReLU branch and bound with the ranking charged to the rows (``proofs/02_witness_bound.md`` 2.5).

A TopK(k) encoder (with or without a ReLU after the selection) selects on each sample ``t`` the
``k`` entries with the largest pre-activations ``z_ti = w_i.x_t + b_i``. Let ``m_t <= k`` be the
number of non-zeros of the witness code ``s_t``. If ``d`` of its active entries are not selected,
at least ``k - m_t + d`` inactive entries are, each with ``z`` at least every unselected entry's
``z``, and each costs ``z^2 >= relu(z)^2``. Charging ``d`` of them to the unselected active
entries (each ``>= relu(z_a)^2``) and the ``k - m_t`` largest to the sample gives, for every
TopK(k) encoder,

    cost_t >= sum_{active a} (relu(z_ta) - s_ta)^2 + sum of the k - m_t largest relu(z_tl)^2 (l inactive)
           >= sum_{active a} (relu(z_ta) - s_ta)^2 + sum_l w_tl relu(z_tl)^2

for any weights ``0 <= w_tl <= 1`` with ``sum_l w_tl <= k - m_t`` (an active entry pays
``(z - y)^2`` when selected with ``z > 0``, else ``y^2``, or ``y^2 + relu(z)^2`` when unselected:
at least its ReLU cost). The right side is a sum over rows of ReLU-like row problems (active
entries as in the ReLU class, no term on inactive entries except the weighted ones), each bounded by
the ReLU branch and bound (:mod:`gapbound.theory.relu`) with the weighted entries as hinge rows of
penalty weight ``w`` (certified like every other hinge row). Any feasible ``w`` gives a valid bound;
the weights are chosen by a few Frank-Wolfe steps on the concave dual ``w -> sum of row minima``
(the best response of a sample puts its budget on its largest ``relu(z)^2``; the search's nodes take their
float values there). Only the final weights' row problems are certified. The bound is a relaxation: it is never reported as the class
optimum.
"""

from __future__ import annotations

import math
from typing import Any
from fractions import Fraction

import numpy as np

from .drops import _DROP_PENALTY, _Search
from .duality import _newton
from .relu import _best_first, _certify_recorded, _ReluRow

# Frank-Wolfe steps on the sample weights (each: one branch and bound per row, uncertified except the last).
_FW_STEPS = 20


class _TopKRow(_ReluRow):
    """One row's problem: active entries as in the ReLU class, weighted ``relu(z)^2`` on the inactive entries ``Bw``.

    ``L`` rows: ``Aa`` (dropped: hard ``z <= 0``), ``Aa`` (free: ``relu(z - y)^2``), ``Bw`` (penalty weight
    ``sw^2``, offset 0, the same in every node).
    """

    def __init__(self, Aa: np.ndarray, y: np.ndarray, Bw: np.ndarray, sw: np.ndarray, record: list | None,
                 tag: dict | None, certified: bool = True):
        super().__init__(Aa, y, Aa[:0], record, tag)
        n = len(y)
        self.Bw, self.sw_w, self.certified = Bw, sw, certified
        self.L = np.vstack([Aa, Aa, Bw])
        self.c = np.concatenate([np.zeros(n), y, np.zeros(len(Bw))])

    def _penalty(self, u: np.ndarray) -> np.ndarray:
        return (self.sw_w**2 * np.maximum(u @ self.Bw.T, 0.0) ** 2).sum(1)

    def _estimate(self, states: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The node relaxation's float value at ``u`` (no certificate)."""
        keep, drop, free = self._masks(states)
        za, y = u @ self.Aa.T, self.y
        return ((keep * (za - y) ** 2).sum(1) + drop @ (y * y) + (free * np.maximum(za - y, 0.0) ** 2).sum(1)
                + self._penalty(u))

    def solve(self, states: np.ndarray, u0: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """Newton point, the row's relaxed cost there, relaxation estimate and per-entry relaxation gap."""
        Aa, y = self.Aa, self.y
        keep, drop, free = self._masks(states)
        W = np.broadcast_to(self.sw_w**2, (len(states), len(self.sw_w)))
        u = _newton(Aa, y, self.L, self.c, keep, np.hstack([_DROP_PENALTY * drop, free, W]), self.Bi, 0.0, u0=u0)
        za = u @ Aa.T
        gap = free * ((np.maximum(za, 0.0) - y) ** 2 - np.maximum(za - y, 0.0) ** 2)
        return u, ((np.maximum(za, 0.0) - y) ** 2).sum(1) + self._penalty(u), self._estimate(states, u), gap

    def certify(self, states: np.ndarray, u: np.ndarray, needed: float | None) -> np.ndarray:
        if not self.certified:  # the weight search only needs the value (float estimate, not a bound)
            return self._estimate(states, u)
        keep, drop, free = self._masks(states)
        sw = np.hstack([np.where(drop > 0, np.inf, 0.0), free, np.broadcast_to(self.sw_w, (len(states), len(self.sw_w)))])
        return _certify_recorded(self, keep, sw, u, needed, dropped=drop)


def _topk_row_bnb(Aa: np.ndarray, y: np.ndarray, Bw: np.ndarray, sw: np.ndarray, max_nodes: int,
                  record: list | None = None, tag: dict | None = None, certified: bool = True) -> tuple[_Search, bool]:
    """Certified lower bound on one row's relaxed TopK problem (module docstring) by the ReLU branch and bound;
    ``certified=False``: the same search with float node values (the weight search; not a bound)."""
    n = len(y)
    problem = _TopKRow(Aa, y, Bw, sw, record, tag, certified)
    bound, _, best_u, root, solved, complete = _best_first(problem, max_nodes)
    drop_set = [int(t) for t in np.flatnonzero(Aa @ best_u <= 0.0)]
    return _Search(bound, drop_set, best_u, root, n if complete else -1, math.inf if complete else bound, solved), complete


def sample_budgets(codes: np.ndarray, k: int) -> np.ndarray:
    """``k - m_t``: how many inactive entries of each witness code every TopK(k) encoder selects."""
    return k - (codes > 0).sum(1)


def charged_cost(z: list, s: list, k: int) -> Any:
    """The per-sample lower bound on every TopK(k) encoder's cost (module docstring), for one code ``s`` with
    ``m <= k`` non-zeros and pre-activations ``z``: ``sum_active (relu(z) - s)^2`` plus the ``k - m`` largest
    ``relu(z)^2`` of the inactive entries. Pure arithmetic (floats or ``Fraction``): ``proofs/check_topk.py``
    checks it against the exact TopK cost of every selection."""
    relu = [v if v > 0 else 0 * v for v in z]
    active = sum(((r - y) ** 2 for r, y in zip(relu, s) if y != 0), 0 * z[0])
    inactive = sorted((r * r for r, y in zip(relu, s) if y == 0), reverse=True)
    r = int(sample_budgets(np.array([[float(y) for y in s]]), k)[0])
    return active + sum(inactive[:max(r, 0)], 0 * z[0])


def weight_roots(w: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """Float ``sw`` with ``sw^2 <= w`` rounded so that, exactly, ``sw^2 <= 1`` and ``sum_i sw_ti^2 <= budget_t``.

    ``sqrt`` is correctly rounded, so ``fl(sqrt(w))^2`` may exceed ``w`` by one ulp; one step down
    and an exact per-sample check (shrinking by ``1 - 2^-40`` until it holds) keep every budget.
    """
    sw = np.nextafter(np.sqrt(np.clip(w, 0.0, 1.0)), 0.0)
    sw[w <= 0] = 0.0
    for t in range(len(budget)):
        while sum((Fraction(v) ** 2 for v in sw[t]), Fraction(0)) > max(int(budget[t]), 0):
            sw[t] = np.nextafter(sw[t] * (1.0 - 2.0**-40), 0.0)
    return sw


def choose_weights(A: np.ndarray, codes: np.ndarray, k: int, max_nodes: int, steps: int = _FW_STEPS) -> np.ndarray:
    """Frank-Wolfe on ``w -> sum_i (row i's relaxed minimum)`` (concave; float node values, nothing certified):
    ``sw`` (``n x N``, penalty weight ``sw^2`` on ``relu(z_ti)^2``) of the best weights seen.

    A sample's best response puts weight 1 on its ``k - m_t`` largest ``relu(z_ti)^2`` at the rows' minimisers.
    Any weights in the budget are valid; these only make the bound tighter.
    """
    n, N = codes.shape
    budget = sample_budgets(codes, k)
    cand = (codes == 0) & (budget[:, None] > 0)
    w = np.where(cand, budget[:, None] / np.maximum(cand.sum(1, keepdims=True), 1), 0.0)
    best, best_w = -math.inf, w
    for it in range(steps):
        sw = weight_roots(w, budget)
        total, V = 0.0, np.zeros((n, N))
        for i in range(N):
            act, inw = np.flatnonzero(codes[:, i] > 0), np.flatnonzero(cand[:, i])
            res, _ = _topk_row_bnb(A[act], codes[act, i], A[inw], sw[inw, i], max_nodes, certified=False)
            total += res.value
            V[inw, i] = np.maximum(A[inw] @ res.u, 0.0) ** 2
        if total > best:
            best, best_w = total, w
        target = np.zeros_like(w)  # the best response: each sample's budget on its largest relu(z)^2
        order = np.argsort(-np.where(cand, V, -1.0), axis=1)
        for t in np.flatnonzero(budget > 0):
            target[t, order[t, : budget[t]]] = 1.0
        w = w + 2.0 / (it + 3.0) * (target - w)
    return weight_roots(best_w, budget)
