"""JumpReLU class: the ReLU branch and bound with the threshold as one more variable (exact when it completes).

A JumpReLU row outputs ``z_t 1[z_t > theta]`` with ``z = A u`` and its own threshold ``theta >= 0``.
Every witness entry ``t`` (target ``y_t = s_ti``, 0 for an inactive one) either *passes*
(``z_t >= theta``, cost ``(z_t - y_t)^2``) or is *dropped* (``z_t <= theta``, cost ``y_t^2``). For a
fixed pattern this is a convex QP in ``(u, theta)``: the ReLU row problem with ``theta`` free
(ReLU: ``theta = 0``). A node fixes some entries, restricts ``theta`` to ``[t0, t1]`` and relaxes
each free entry by a convex function below both of its costs on that interval
(``proofs/02_witness_bound.md`` 2.6): ``relu(z - theta - y + a)^2`` with ``a = min(t0, 2y)``,
or the constant ``y^2`` where ``t0 >= 2y`` (passing then costs ``(z - y)^2 >= (theta - y)^2 >= y^2``).
At ``theta`` in ``[T, inf)``, ``T = 2 max y``, every entry costs at least ``y^2``: the row costs at least
``sum y^2``, which the all-dropped row attains. The search itself is :func:`gapbound.theory.relu._best_first`;
branches fix an entry or halve the threshold interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .drops import _Search
from .duality import _newton, _up
from .relu import _best_first, _certify_recorded
from .separation import SeparationProof, exact_proof, farkas_weights, separating_direction

# Branch on the threshold interval (halve it) when more than this share of the largest entry gap at
# the node's minimiser comes from the interval's width rather than from the entry's gate.
_SPLIT_SHARE = 0.5
# Threshold intervals at the root: below ~T / 8 wide the free entries' relaxation is close to ReLU's.
_ROOT_INTERVALS = 8
# Penalty weight standing in for the gate constraints while Newton solves (the certificate treats them as hard
# constraints): stiffer than ReLU's, since a JumpReLU row's cost jumps at the threshold and the leaves'
# gate patterns are read off the minimiser.
_GATE_PENALTY = 1e7
# Entries this close to the threshold (relative to 1 + T) at a leaf's minimiser take their cheaper gate.
_TIE = 1e-4
# Narrowest threshold interval (relative to T): below it, entries are branched instead.
_MIN_WIDTH = 2.0**-12


def best_threshold(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """JumpReLU witness error of rows ``z`` (``... x n``) with their best threshold ``theta >= 0``, and that threshold.

    ``sum_t (z_t 1[z_t > theta] - y_t)^2`` is piecewise constant in ``theta`` between the sorted
    positive ``z``: the candidates are 0 and each positive ``z_t`` (which drops it and everything below).
    """
    thetas = np.concatenate([np.zeros(z.shape[:-1] + (1,)), np.sort(np.maximum(z, 0.0), axis=-1)], axis=-1)
    costs = np.where(z[..., None, :] > thetas[..., :, None], (z[..., None, :] - y) ** 2, y * y).sum(-1)
    k = costs.argmin(-1)
    return np.take_along_axis(costs, k[..., None], -1)[..., 0], np.take_along_axis(thetas, k[..., None], -1)[..., 0]


def threshold_interval(z: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[theta, hi)``: every threshold in it gates the rows ``z`` (``... x n``) exactly as ``theta`` does.

    ``hi`` is the smallest ``relu(z)`` above ``theta`` (``inf`` when none passes). A threshold *at* a data value
    (as :func:`best_threshold` returns) decides that entry by the last bit of its ``z``, and an encoder's own
    forward pass may round it the other way; the middle of the interval does not.
    """
    theta = np.asarray(theta, dtype=float)
    hi = np.where(np.maximum(z, 0.0) > theta[..., None], z, np.inf).min(-1)
    return theta, hi


def jumprelu_row_cost(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """JumpReLU witness error of rows ``z`` with the best threshold each (:func:`best_threshold`)."""
    return best_threshold(z, y)[0]


class _JumpReluRow:
    """One row's JumpReLU branch-and-bound problem over ``u' = (w, b, theta)``.

    A state is ``n`` entry codes (1 pass, 0 drop, -1 free) followed by ``t0, t1``. ``L`` rows:
    ``z - theta`` (hard ``<= 0`` for dropped entries), ``theta - z`` (hard ``<= 0`` for passing ones),
    ``z - theta`` again (free hinge, ``c = y - a``), ``-theta <= -t0`` and ``theta <= t1``.
    """

    def __init__(self, A: np.ndarray, y: np.ndarray, record: list | None, tag: dict | None):
        n, p = A.shape
        self.n, self.y, self.record, self.tag = n, y, record, tag
        self.Aa = np.hstack([A, np.zeros((n, 1))])  # kept residuals do not involve theta
        zt = np.hstack([A, -np.ones((n, 1))])
        e = np.zeros((1, p + 1))
        e[0, -1] = 1.0
        # free hinges: active entries relu(z - y - max(0, t1 - 2y))^2, inactive ones relu(z - theta)^2
        self.L = np.vstack([zt, -zt, np.where((y > 0)[:, None], self.Aa, zt), -e, e])
        self.Bi = np.zeros((0, p + 1))
        self.T = 2.0 * float(y.max())  # exact
        self.best = (float((y**2).sum()), np.zeros(p + 1))  # best encoder row found: the all-dropped one to start
        self.proofs: dict[bytes, SeparationProof] = {}  # nodes whose decided gates no row realises

    def root(self) -> np.ndarray:
        """Every entry free; ``[0, T]`` cut into ``_ROOT_INTERVALS`` equal threshold intervals."""
        edges = np.linspace(0.0, self.T, _ROOT_INTERVALS + 1)
        edges[-1] = self.T
        states = np.full((_ROOT_INTERVALS, self.n + 2), -1.0)
        states[:, self.n], states[:, self.n + 1] = edges[:-1], edges[1:]
        return states

    def incumbent(self) -> tuple[float, np.ndarray]:
        """The best encoder row found so far (its JumpReLU cost with the best threshold, and ``u``)."""
        return self.best

    def parts(self, states: np.ndarray) -> tuple[np.ndarray, ...]:
        """Masks (pass, drop, free hinge, dropped incl. constant free entries), per-node ``c``, ``t0``, ``t1``."""
        n, y = self.n, self.y
        codes, t0, t1 = states[:, :n], states[:, n], states[:, n + 1]
        keep, drop, free = codes == 1, codes == 0, codes < 0
        const = free & (y > 0) & (t0[:, None] >= 2.0 * y)
        hinge = free & ~const
        over = np.maximum(t1[:, None] - 2.0 * y, 0.0)
        c_free = np.where(y > 0, np.where(over > 0, _up(y + over), y), 0.0)  # rounded up: only lowers the hinge
        zeros = np.zeros((len(states), n))
        C = np.hstack([zeros, zeros, c_free, -t0[:, None], t1[:, None]])
        return keep, drop, hinge, drop | const, C, t0, t1

    def solve(self, states: np.ndarray, u0: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """Newton point, JumpReLU row cost there, relaxation estimate and branching scores (entries, interval)."""
        y, n = self.y, self.n
        keep, drop, hinge, dropped, C, t0, t1 = self.parts(states)
        ones = np.ones((len(states), 1))
        Wt = np.hstack([_GATE_PENALTY * drop, _GATE_PENALTY * keep, hinge.astype(float), _GATE_PENALTY * ones,
                        _GATE_PENALTY * ones])
        u = _newton(self.Aa, y, self.L, C, keep.astype(float), Wt, self.Bi, 0.0, u0=u0)
        z, theta = u @ self.Aa.T, np.maximum(u[:, -1], 0.0)
        zf = np.where(y > 0, z, z - u[:, -1:])  # the free hinges' argument (L's third block)
        relax = np.where(hinge, np.maximum(zf - C[:, 2 * n:3 * n], 0.0) ** 2, np.where(dropped, y * y, 0.0))
        est = (keep * (z - y) ** 2).sum(1) + np.where(keep, 0.0, relax).sum(1)
        true = np.where(z > theta[:, None], (z - y) ** 2, y * y)
        free = hinge | (dropped & ~drop)
        gap = np.where(free, np.maximum(true - relax, 0.0), 0.0)
        # the free entries' relaxation were the interval the single point theta
        point = np.where(y > 0, np.where(theta[:, None] >= 2.0 * y, y * y, np.maximum(z - y, 0.0) ** 2), relax)
        j = np.argmax(gap, axis=1)
        rows = np.arange(len(states))
        width_share = np.where(free, point - relax, 0.0)[rows, j]
        split = (width_share > _SPLIT_SHARE * gap[rows, j]) & (t1 - t0 > _MIN_WIDTH * self.T)
        score = np.hstack([gap, np.where(split, 2.0 * gap[rows, j], 0.0)[:, None]])
        cost = jumprelu_row_cost(z, y)
        for k in np.flatnonzero(~(score > 1e-12 * (1.0 + np.abs(est[:, None]))).any(1)):
            cost[k] = self._leaf(states[k], u[k], z[k], theta[k], score[k], est[k])
            est[k] = math.inf if states[k].tobytes() in self.proofs else est[k]
        j = int(np.argmin(cost))
        if cost[j] < self.best[0]:
            self.best = (float(cost[j]), u[j])
        return u, cost, est, score

    def _leaf(self, state: np.ndarray, u: np.ndarray, z: np.ndarray, theta: float, score: np.ndarray,
              est: float) -> float:
        """A node whose relaxation is exact at its minimiser: is the minimiser's gate pattern realisable?

        Entries within ``_TIE`` of ``theta`` take their cheaper gate. Realisable: the relaxed value is
        approached by actual rows ``u + eps v`` (``v`` separates the pattern); returns the best such row's
        cost. Not realisable (:mod:`gapbound.theory.separation`): the free entries of the conflict get
        branching scores (in ``score``), or, when every conflicting entry is decided, the node holds no
        encoder row and its exact proof is stored (``self.proofs``). Returns an actual row's cost.
        """
        y, n = self.y, self.n
        codes = state[:n]
        tie = np.abs(z - theta) <= _TIE * (1.0 + self.T)
        passing = np.where(codes >= 0, codes == 1, np.where(tie, (theta - y) ** 2 < y * y, z > theta))
        A = self.Aa[:, :-1]
        P, D = np.flatnonzero(passing), np.flatnonzero(~passing)
        w = farkas_weights(A[P], A[D])
        if w is None:
            v = separating_direction(A[P], A[D])
            if v is None:
                return math.inf
            scale = (1.0 + np.abs(u[:-1]).max()) / (1.0 + np.abs(v).max())
            rows = u[:-1] + np.array([1e-3, 1e-5, 1e-7, 1e-9])[:, None] * scale * v
            costs = jumprelu_row_cost(rows @ A.T, y)
            k = int(np.argmin(costs))
            if costs[k] < self.best[0]:
                self.best = (float(costs[k]), np.append(rows[k], 0.0))
            return float(costs[k])
        weight = np.zeros(n)
        weight[P], weight[D] = w[0], w[1]
        conflict_free = (codes < 0) & (weight > 1e-12)
        if conflict_free.any():
            score[:n] = np.where(conflict_free, (1.0 + abs(est)) * (1.0 + weight), 0.0)
            return math.inf
        proof = exact_proof(A[P], A[D], w[0], w[1])
        if proof is not None:
            sp, sd, lam, mu = proof
            pi, di = [int(P[i]) for i in sp], [int(D[i]) for i in sd]
            self.proofs[state.tobytes()] = SeparationProof(pi, di, A[pi], A[di], lam, mu, dict(self.tag or {}))
        return math.inf

    def children(self, states: np.ndarray, branch: np.ndarray) -> np.ndarray:
        """Entry ``branch`` passing (1) or dropped (0); ``branch = n``: the interval's lower and upper half."""
        n = self.n
        kids = np.repeat(states, 2, axis=0)
        for k, j in enumerate(branch):
            if j < n:
                kids[2 * k, j], kids[2 * k + 1, j] = 1.0, 0.0
            else:
                mid = 0.5 * (states[k, n] + states[k, n + 1])
                kids[2 * k, n + 1], kids[2 * k + 1, n] = mid, mid
        return kids

    def certify(self, states: np.ndarray, u: np.ndarray, needed: float | None) -> np.ndarray:
        keep, drop, hinge, dropped, C, t0, t1 = self.parts(states)
        inf = np.full((len(states), 1), np.inf)
        sw = np.hstack([np.where(drop, np.inf, 0.0), np.where(keep, np.inf, 0.0), hinge.astype(float), inf, inf])
        vals = _certify_recorded(self, keep.astype(float), sw, u, needed, dropped=dropped.astype(float), c=C, box=t1,
                                 hard_weight=_GATE_PENALTY).copy()  # the recorded certificate keeps its values
        for k, st in enumerate(states):
            proof = self.proofs.get(st.tobytes())
            if proof is not None:  # no encoder row has these gates: the node is empty
                vals[k] = math.inf
                if self.record is not None:
                    self.record.append(proof)
        return vals


def _jumprelu_row_bnb(A: np.ndarray, y: np.ndarray, max_nodes: int, record: list | None = None,
                      tag: dict | None = None) -> tuple[_Search, bool]:
    """Certified lower bound on one row's JumpReLU optimum (module docstring) over all witness entries.

    ``A``: ``[x_t, 1]`` of every witness code, ``y``: the row's targets (0 where inactive). Returns the
    search outcome (``value`` the certified bound, ``u`` the best ``(w, b)`` found, ``solved`` the nodes)
    and whether the search completed within ``max_nodes`` nodes.
    """
    problem = _JumpReluRow(A, y, record, tag)
    bound, _, _, root, solved, complete = _best_first(problem, max_nodes)
    best_u = problem.best[1]
    tail = float(np.nextafter(math.fsum(y**2), -np.inf))  # theta >= T; fsum is correctly rounded
    value = min(bound, tail)
    act = y > 0
    drop_set = [int(t) for t in np.flatnonzero(act & (A @ best_u[:-1] <= max(best_u[-1], 0.0)))]
    return _Search(value, drop_set, best_u[:-1], root, len(y) if complete else -1, tail, solved), complete


@dataclass
class _Boxes:
    """One row's certified regions: entry ``t`` passes where ``P[k, t]``, drops where ``D[k, t]``, ``theta`` in
    ``[t0[k], t1[k]]`` (proofs: every ``theta``)."""

    P: np.ndarray
    D: np.ndarray
    t0: np.ndarray
    t1: np.ndarray


def _row_boxes(certificates: list, row: int, n: int, bound: float) -> _Boxes:
    """The nodes of ``row`` whose certified value reaches ``bound`` (decided gates and threshold interval read off
    the certificate, whose relaxation :func:`gapbound.theory.exact.verify_exact` checks) and its separation proofs."""
    P, D, t0, t1 = [], [], [], []
    for cert in certificates:
        if cert.tag.get("row") != row:
            continue
        if isinstance(cert, SeparationProof):  # no (w, b, theta) has these gates
            p, d = np.zeros((1, n), bool), np.zeros((1, n), bool)
            p[0, cert.passing], d[0, cert.dropped] = True, True
            P.append(p), D.append(d), t0.append([-np.inf]), t1.append([np.inf])
            continue
        strong = cert.value >= bound
        P.append(np.isinf(cert.sw[strong, n:2 * n])), D.append(np.isinf(cert.sw[strong, :n]))
        t0.append(-cert.c[strong, -2]), t1.append(cert.c[strong, -1])
    if not P:
        return _Boxes(np.zeros((0, n), bool), np.zeros((0, n), bool), np.zeros(0), np.zeros(0))
    return _Boxes(np.vstack(P), np.vstack(D), np.concatenate(t0), np.concatenate(t1))


def uncovered_region(certificates: list, row: int, y: np.ndarray, bound: float) -> str | None:
    """Exact check that ``row``'s certified nodes cover every gate pattern and threshold; ``None`` if they do.

    Every ``theta`` in ``[0, T]`` (``T = 2 max y``) with every pass/drop pattern of the row's witness entries
    (``y``, in the certificates' entry order) must lie in a node whose certified value reaches ``bound`` (its
    passing entries pass, its dropped ones drop, ``theta`` in its interval) or in an empty node (a separation
    proof); ``theta >= T`` costs at least ``sum y^2``, which must reach ``bound`` (exact). Regions are split on
    the entry or interval endpoint that most of the nodes inside them decide (the search tree's own branching),
    comparing the stored float64 values exactly. Returns the first region no node covers, in words.
    """
    if bound <= 0:
        return None  # every row costs >= 0
    if Fraction(bound) > sum((Fraction(v) ** 2 for v in y), Fraction(0)):
        return f"bound {bound!r} above the cost sum y^2 of thresholds theta >= T"
    n = len(y)
    B = _row_boxes(certificates, row, n, bound)
    free = np.zeros(n, bool)
    stack = [(free, free, 0.0, 2.0 * float(np.max(y)), np.arange(len(B.t0)))]
    while stack:
        P, D, a, b, idx = stack.pop()
        # the nodes meeting the region (a < b always: splits fall strictly inside)
        idx = idx[~(B.P[idx] & D).any(1) & ~(B.D[idx] & P).any(1) & (B.t0[idx] < b) & (B.t1[idx] > a)]
        inside = ~(B.P[idx] & ~P).any(1) & ~(B.D[idx] & ~D).any(1) & (B.t0[idx] <= a) & (B.t1[idx] >= b)
        if inside.any():
            continue
        refine = (B.P[idx] | B.D[idx]) & ~(P | D)
        ends = np.concatenate([B.t0[idx], B.t1[idx]])
        ends = ends[(ends > a) & (ends < b)]
        if not refine.any() and not len(ends):
            where = (f"passing {np.flatnonzero(P).tolist()}, dropped {np.flatnonzero(D).tolist()}, "
                     f"theta in [{a!r}, {b!r}]")
            return f"no certified node covers the region {where}"
        counts = refine.sum(0)
        # a point separates the nodes lying wholly on one side of it (a split of the search tree separates all)
        pts = np.unique(ends) if len(ends) else np.zeros(1)
        pt_counts = (np.searchsorted(np.sort(B.t1[idx]), pts, side="right")
                     + len(idx) - np.searchsorted(np.sort(B.t0[idx]), pts, side="left")) if len(ends) else np.zeros(1, int)
        if counts.max() >= pt_counts.max():
            t = int(np.argmax(counts))
            on = np.zeros(n, bool)
            on[t] = True
            stack += [(P | on, D, a, b, idx), (P, D | on, a, b, idx)]
        else:
            m = float(pts[np.argmax(pt_counts)])
            stack += [(P, D, a, m, idx), (P, D, m, b, idx)]
    return None


def coverage_failures(result, codes: np.ndarray) -> tuple[list[str], int]:
    """:func:`uncovered_region` for every row of a JumpReLU ``BoundResult`` (``keep_certificates=True``) on its
    witness ``codes``: one line per row its nodes do not cover, and the number of rows covered."""
    failures, covered = [], 0
    for r in result.rows:
        s = codes[:, r.row]
        y = s[np.concatenate([np.flatnonzero(s > 0), np.flatnonzero(s == 0)])]  # the search's entry order
        why = uncovered_region(result.certificates, r.row, y, r.bound)
        if why is None:
            covered += 1
        else:
            failures.append(f"row {r.row}: {why}")
    return failures, covered
