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
penalty weight ``w`` (certified like every other hinge row).

On codes with ``m_t = k`` (no budget) the *linear-hinge charge* of :mod:`gapbound.theory.charge`
(``proofs/02_witness_bound.md`` 2.5.1-2.5.2) adds ``lam_tl relu(z_tl - delta)`` on inactive entries and
``- mu_ta relu(z_ta - delta)`` on active ones, for any ``0 <= lam, mu <= 4 delta`` with ``sum_a mu_ta >=
sum_l lam_tl`` and ``0 < delta <= min y``: the inactive entries pay when they come near the actives.
In a node a charged active entry's kept term is ``min((z - y)^2, (z - y - mu/2)^2 + C)`` (certified through
its conjugate), its free term ``relu(z - y - mu/2)^2 + C``, and the inactive hinges are linear rows of the
certificate with multipliers in ``[0, lam / 2]``.

Any feasible charge is valid; :func:`choose_charge` searches the weights (Frank-Wolfe) and the hinge
multipliers (projected supergradient): 20 steps on the weights alone, then (with codes of ``k``
non-zeros) 30 that move both, with float node values, and keeps the best (the rows' exact minima are concave in it: minima of functions
affine in the charge). Only the final charge's rows are certified; the charge itself is rounded so that
every constraint holds in rational arithmetic, and ``verify_exact`` re-checks it. The bound is a
relaxation: it is never reported as the class optimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from fractions import Fraction

import numpy as np

from .charge import CAP_FACTOR, charge_constant, charged_active_cost, kept_envelope
from .drops import _DROP_PENALTY, _Search
from .duality import _newton
from .relu import _best_first, _certify_recorded, _ReluRow

# Steps of the charge search (each: one branch and bound per row, uncertified): 20 Frank-Wolfe steps on the
# weights alone (the former search, so the best iterate is never below its bound), then, with codes of k
# non-zeros, 30 more that also move the hinge multipliers (step _STEP * cap / sqrt(j), j = 1, 2, ...; on
# development seed 0 steps 1/2 and 2 did worse, and the gain is still ~0.1% per step at 30).
_WEIGHT_STEPS, _CHARGE_STEPS = 20, 30
_STEP = 1.0


@dataclass
class RowCharge:
    """Row ``i``'s share of the linear-hinge charge (:mod:`gapbound.theory.charge`): ``mu`` per active entry
    (0 on codes with ``m < k``), ``C = charge_constant(mu, y, delta)`` rounded down, linear hinges of slope ``lam``
    on the rows ``Bh`` (inactive entries of codes with ``m = k``), offset ``delta``."""

    mu: np.ndarray
    C: np.ndarray
    Bh: np.ndarray
    lam: np.ndarray
    delta: float

    @property
    def active(self) -> bool:
        return bool(self.mu.any() or self.lam.any())


class _TopKRow(_ReluRow):
    """One row's problem: active entries as in the ReLU class (charged: :mod:`gapbound.theory.charge`),
    weighted ``relu(z)^2`` on the inactive entries ``Bw`` and linear hinges on ``charge.Bh``.

    ``L`` rows: ``Aa`` (dropped: hard ``z <= 0``), ``Aa`` (free: ``relu(z - y - mu/2)^2 + C``), ``Bw`` (penalty
    weight ``sw^2``, offset 0), ``Bh`` (linear hinges ``lam relu(z - delta)``, ``sw = -lam``); the same in every node.
    """

    def __init__(self, Aa: np.ndarray, y: np.ndarray, Bw: np.ndarray, sw: np.ndarray, charge: RowCharge,
                 record: list | None, tag: dict | None, certified: bool = True):
        super().__init__(Aa, y, Aa[:0], record, tag)
        n = len(y)
        self.sw_w, self.ch, self.certified = sw, charge, certified
        self.L = np.vstack([Aa, Aa, Bw, charge.Bh])
        self.c = np.concatenate([np.zeros(n), y + charge.mu / 2, np.zeros(len(Bw)),
                                 np.full(len(charge.Bh), charge.delta)])
        self.sw_rest = np.concatenate([sw, -charge.lam])  # the weighted and hinge rows' sw, every node
        self.lin = np.concatenate([np.zeros(2 * n + len(Bw)), charge.lam])
        self.charge = (charge.mu, charge.C) if charge.active else None
        self.nw = len(Bw)

    def _penalty(self, u: np.ndarray) -> np.ndarray:
        n = len(self.y)
        z = u @ self.L[2 * n:].T
        w = self.nw
        return ((self.sw_w**2 * np.maximum(z[:, :w], 0.0) ** 2).sum(1)
                + (self.ch.lam * np.maximum(z[:, w:] - self.ch.delta, 0.0)).sum(1))

    def _free_envelope(self, za: np.ndarray) -> np.ndarray:
        return np.maximum(za - self.y - self.ch.mu / 2, 0.0) ** 2 + self.ch.C

    def _estimate(self, states: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The node relaxation's float value at ``u`` (no certificate)."""
        keep, drop, free = self._masks(states)
        za, y = u @ self.Aa.T, self.y
        kept = kept_envelope(za - y, self.ch.mu, self.ch.C)[0]
        return ((keep * kept).sum(1) + drop @ (y * y) + (free * self._free_envelope(za)).sum(1) + self._penalty(u))

    def solve(self, states: np.ndarray, u0: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """Newton point, the row's charged cost there, relaxation estimate and per-entry relaxation gap."""
        Aa, y = self.Aa, self.y
        keep, drop, free = self._masks(states)
        rest = np.broadcast_to(np.maximum(self.sw_rest, 0.0) ** 2, (len(states), len(self.sw_rest)))
        u = _newton(Aa, y, self.L, self.c, keep, np.hstack([_DROP_PENALTY * drop, free, rest]), self.Bi, 0.0, u0=u0,
                    charge=self.charge, lin=self.lin)
        za = u @ Aa.T
        cost = charged_active_cost(za, y, self.ch.mu, self.ch.delta)
        gap = free * (cost - self._free_envelope(za))
        return u, cost.sum(1) + self._penalty(u), self._estimate(states, u), gap

    def certify(self, states: np.ndarray, u: np.ndarray, needed: float | None) -> np.ndarray:
        if not self.certified:  # the charge search only needs the value (float estimate, not a bound)
            return self._estimate(states, u)
        keep, drop, free = self._masks(states)
        rest = np.broadcast_to(self.sw_rest, (len(states), len(self.sw_rest)))
        sw = np.hstack([np.where(drop > 0, np.inf, 0.0), free, rest])
        return _certify_recorded(self, keep, sw, u, needed, dropped=drop, charge=self.charge)


def _topk_row_bnb(Aa: np.ndarray, y: np.ndarray, Bw: np.ndarray, sw: np.ndarray, charge: RowCharge, max_nodes: int,
                  record: list | None = None, tag: dict | None = None, certified: bool = True) -> tuple[_Search, bool]:
    """Certified lower bound on one row's relaxed TopK problem (module docstring) by the ReLU branch and bound;
    ``certified=False``: the same search with float node values (the charge search; not a bound)."""
    n = len(y)
    problem = _TopKRow(Aa, y, Bw, sw, charge, record, tag, certified)
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


def _project(lam: np.ndarray, mu: np.ndarray, hcand: np.ndarray, acand: np.ndarray,
             cap: float) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean projection of each code's ``(lam, mu)`` onto ``0 <= lam, mu <= cap``, ``sum mu >= sum lam``
    (``lam`` on ``hcand``, ``mu`` on ``acand``): ``mu + tau``, ``lam - tau`` clipped, ``tau >= 0`` by bisection."""
    def clipped(tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (np.clip(lam - tau[:, None], 0.0, cap) * hcand, np.clip(mu + tau[:, None], 0.0, cap) * acand)

    def short(tau: np.ndarray) -> np.ndarray:
        la, mu_ = clipped(tau)
        return mu_.sum(1) < la.sum(1)

    lo, hi = np.zeros(len(lam)), np.full(len(lam), cap)  # tau = cap is feasible (every lam clipped to 0)
    for _ in range(60):
        mid = (lo + hi) / 2
        s = short(mid)
        lo, hi = np.where(s, mid, lo), np.where(s, hi, mid)
    return clipped(np.where(short(np.zeros(len(lam))), hi, 0.0))  # tau = 0 where clipping alone is feasible


@dataclass
class TopKCharge:
    """The TopK bound's charge: ``sw`` (``n x N``, weight ``sw^2`` on inactive entries of codes with ``m < k``),
    ``lam`` (hinge slopes on inactive entries of codes with ``m = k``), ``mu`` and ``C`` (active entries of those
    codes) and ``delta``; every constraint of ``proofs/02_witness_bound.md`` 2.5-2.5.2 holds exactly."""

    sw: np.ndarray
    lam: np.ndarray
    mu: np.ndarray
    C: np.ndarray
    delta: float

    def row(self, A: np.ndarray, codes: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray, RowCharge]:
        """Row ``i``'s weighted entries, hinged entries and :class:`RowCharge`."""
        act = codes[:, i] > 0
        weighted, hinged = np.flatnonzero(self.sw[:, i] > 0), np.flatnonzero(self.lam[:, i] > 0)
        return weighted, hinged, RowCharge(self.mu[act, i], self.C[act, i], A[hinged], self.lam[hinged, i], self.delta)


def _exact_charge(codes: np.ndarray, lam: np.ndarray, mu: np.ndarray, delta: float) -> tuple[np.ndarray, ...]:
    """``(lam, mu, C)`` rounded so that, exactly: ``y + mu/2`` is a float (``mu`` on a dyadic grid of step
    ``2^-24 delta``, else 0), ``C <= charge_constant(mu, y, delta)``, caps ``4 delta`` and, per code,
    ``sum mu >= sum lam`` (``lam`` scaled down until it holds)."""
    if delta <= 0:  # no code with m = k: no hinge charge
        return np.zeros_like(lam), np.zeros_like(mu), np.zeros_like(mu)
    cap = CAP_FACTOR * delta
    q = delta * 2.0**-24  # a power of two times delta: exact
    mu = np.minimum(np.floor(mu / q) * q, cap)
    lam = np.minimum(lam, cap)
    C = np.zeros_like(mu)
    Q = Fraction
    for t, i in zip(*np.nonzero(mu)):
        y, m = Q(codes[t, i]), Q(mu[t, i])
        if Q(codes[t, i] + mu[t, i] / 2) != y + m / 2:
            mu[t, i] = 0.0
            continue
        exact = charge_constant(m, y, Q(delta))
        C[t, i] = float(exact)
        if Q(C[t, i]) > exact:
            C[t, i] = np.nextafter(C[t, i], -np.inf)
    for t in np.flatnonzero(lam.any(1)):
        total = sum(map(Q, mu[t]), Q(0))
        if sum(map(Q, lam[t]), Q(0)) > total:  # scaled to the mu total, then down an ulp at a time
            lam[t] = np.nextafter(lam[t] * (float(total) / lam[t].sum()), 0.0)
        while sum(map(Q, lam[t]), Q(0)) > total:
            lam[t] = np.nextafter(lam[t], 0.0)
    return lam, mu, C


def charge_delta(codes: np.ndarray, charged: np.ndarray) -> float:
    """``delta``: half the smallest amplitude of the charged codes' active entries (2.5.2 needs ``delta <= min y``)."""
    return 0.5 * float(codes[charged].min()) if charged.any() else 0.0


def choose_charge(A: np.ndarray, codes: np.ndarray, k: int, max_nodes: int, steps: int | None = None,
                  hinge: bool = True) -> TopKCharge:
    """The charge of the TopK bound: one search over the sample weights and the hinge multipliers
    (``proofs/02_witness_bound.md`` 2.5-2.5.2; float node values, nothing certified; any feasible charge is valid).

    ``sum_i (row i's relaxed minimum)`` is concave in the charge. Weights: Frank-Wolfe (a code's best response
    puts weight 1 on its ``k - m_t`` largest ``relu(z)^2`` at the rows' minimisers). Hinge multipliers
    ``(lam, mu)`` on codes with ``m = k``: projected supergradient steps (``relu(z_l - delta)``, ``-relu(z_a -
    delta)``), ``delta`` half the smallest amplitude of those codes. The first 20 steps move the weights only
    (so the best iterate is never below the weights-only search's); ``steps``: default 50 with codes of ``k``
    non-zeros (a hinge charge to search), else 20. ``hinge=False``: the weights alone (20 steps).
    Returns the best charge seen.
    """
    n, N = codes.shape
    budget = sample_budgets(codes, k)
    cand = (codes == 0) & (budget[:, None] > 0)
    full = budget == 0
    hcand, acand = (codes == 0) & full[:, None], (codes > 0) & full[:, None]
    delta = charge_delta(codes, acand) if hinge else 0.0
    cap = CAP_FACTOR * delta
    steps = (_WEIGHT_STEPS + _CHARGE_STEPS if cap > 0 else _WEIGHT_STEPS) if steps is None else steps
    w = np.where(cand, budget[:, None] / np.maximum(cand.sum(1, keepdims=True), 1), 0.0)
    lam, mu = np.zeros((n, N)), np.zeros((n, N))
    best, best_ch = -math.inf, None
    for it in range(steps):
        ch = TopKCharge(weight_roots(w, budget), *_exact_charge(codes, lam, mu, delta), delta)
        total, Z = 0.0, np.zeros((n, N))
        for i in range(N):
            act = np.flatnonzero(codes[:, i] > 0)
            weighted, _, rc = ch.row(A, codes, i)
            res, _ = _topk_row_bnb(A[act], codes[act, i], A[weighted], ch.sw[weighted, i], rc, max_nodes,
                                   certified=False)
            total += res.value
            Z[:, i] = A @ res.u
        if total > best:
            best, best_ch = total, ch
        target = np.zeros_like(w)  # the best response: each sample's budget on its largest relu(z)^2
        order = np.argsort(-np.where(cand, np.maximum(Z, 0.0) ** 2, -1.0), axis=1)
        for t in np.flatnonzero(budget > 0):
            target[t, order[t, : budget[t]]] = 1.0
        w = w + 2.0 / (it + 3.0) * (target - w)
        j = it + 2 - _WEIGHT_STEPS  # the hinge multipliers move once the weights have had their steps
        if cap > 0 and j >= 1:
            h, step = np.maximum(Z - delta, 0.0), _STEP * cap / math.sqrt(j)
            lam, mu = _project(ch.lam + step * h, ch.mu - step * h, hcand, acand, cap)
    return best_ch
