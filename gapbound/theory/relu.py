"""ReLU class: best-first branch and bound over each active entry's gate, every node certified.

A row's ReLU cost is ``sum_active (relu(z_t) - y_t)^2 + sum_inactive relu(z_t)^2`` with
``z = A u``. A node fixes some active entries as *kept* (cost ``(z - y)^2``) or *dropped*
(cost ``y^2`` under the hard constraint ``z <= 0``) and leaves the others *free*, relaxed to
``relu(z - y)^2``, the convex envelope of ``(relu(z) - y)^2`` over all ``z``
(``proofs/02_witness_bound.md`` 2.4). Every ``u`` is feasible for the child that matches the
signs of its free entries, and a child's relaxation is pointwise above its parent's, so a
child inherits ``max(parent, own)`` and the smallest certified value on the final frontier
is a lower bound on the row's ReLU optimum. Nodes are expanded best first, in vectorised
batches, branching on the free entry whose relaxation undercuts its ReLU cost most at the
node's minimiser; the search is complete when no open node is below the best ReLU row found.
"""

from __future__ import annotations

import heapq
import itertools
import math

import numpy as np

from .drops import _DROP_PENALTY, _Search
from .duality import _certify_batch, _newton

# A node is closed when it cannot undercut the incumbent by more than this (relative); the row is
# then reported optimal against OPTIMAL_RTOL (1e-6) in bounds.py.
_CLOSE_RTOL = 1e-8
# A frontier node is settled when its certified value is within this of the incumbent (else it is reopened).
_CERT_RTOL = 1e-7
# Nodes expanded per vectorised step (two children each): one Newton solve and one certificate batch.
_NODE_BATCH = 64


def relu_row_cost(za: np.ndarray, y: np.ndarray, zb: np.ndarray) -> np.ndarray:
    """ReLU witness error of a row (per batch entry): active ``(relu(z) - y)^2``, inactive ``relu(z)^2``."""
    return ((np.maximum(za, 0.0) - y) ** 2).sum(-1) + (np.maximum(zb, 0.0) ** 2).sum(-1)


def _children(states: np.ndarray, branch: np.ndarray) -> np.ndarray:
    """The two children of each node: entry ``branch[k]`` kept (1) or dropped (0); nodes in order."""
    kids = np.repeat(states, 2, axis=0)
    rows = np.arange(len(states))
    kids[2 * rows, branch] = 1
    kids[2 * rows + 1, branch] = 0
    return kids


class _ReluRow:
    """One row's ReLU branch-and-bound problem: states code each active entry as 1 (kept), 0 (dropped), -1 (free)."""

    def __init__(self, Aa: np.ndarray, y: np.ndarray, Bi: np.ndarray, record: list | None, tag: dict | None):
        self.Aa, self.y, self.Bi, self.record, self.tag = Aa, y, Bi, record, tag
        n = len(y)
        self.L = np.vstack([Aa, Aa])  # rows 0..n-1: dropped (hard z <= 0); rows n..2n-1: free (relu(z - y)^2)
        self.c = np.concatenate([np.zeros(n), y])

    def root(self) -> np.ndarray:
        return np.full((1, len(self.y)), -1, dtype=np.int8)

    @staticmethod
    def _masks(states: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (states == 1).astype(float), (states == 0).astype(float), (states < 0).astype(float)

    def solve(self, states: np.ndarray, u0: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """Newton point, ReLU row cost there, relaxation estimate and per-entry relaxation gap."""
        Aa, y, Bi = self.Aa, self.y, self.Bi
        keep, drop, free = self._masks(states)
        u = _newton(Aa, y, self.L, self.c, keep, np.hstack([_DROP_PENALTY * drop, free]), Bi, 0.0, u0=u0)
        za, zb = u @ Aa.T, u @ Bi.T
        est = ((keep * (za - y) ** 2).sum(1) + drop @ (y * y) + (free * np.maximum(za - y, 0.0) ** 2).sum(1)
               + (np.maximum(zb, 0.0) ** 2).sum(1))
        gap = free * ((np.maximum(za, 0.0) - y) ** 2 - np.maximum(za - y, 0.0) ** 2)
        return u, relu_row_cost(za, y, zb), est, gap

    def children(self, states: np.ndarray, branch: np.ndarray) -> np.ndarray:
        return _children(states, branch)

    def certify(self, states: np.ndarray, u: np.ndarray, needed: float | None) -> np.ndarray:
        keep, drop, free = self._masks(states)
        sw = np.hstack([np.where(drop > 0, np.inf, 0.0), free])
        return _certify_recorded(self, keep, sw, u, needed, dropped=drop)


def _certify_recorded(problem, keep: np.ndarray, sw: np.ndarray, u: np.ndarray, needed: float | None,
                      **kw) -> np.ndarray:
    """Certify a batch of nodes of ``problem`` (its ``Aa, y, L, c, Bi``); tag the recorded certificate."""
    record = problem.record
    c = kw.pop("c") if "c" in kw else problem.c
    n_rec = len(record) if record is not None else 0
    kw.setdefault("hard_weight", _DROP_PENALTY)
    vals = _certify_batch(problem.Aa, problem.y, problem.L, c, keep, sw, problem.Bi, 0.0, u, record,
                          needed=needed, **kw)
    if record is not None and len(record) > n_rec:
        record[-1].tag = dict(problem.tag or {})
    return vals


def _best_first(problem, max_nodes: int) -> tuple[float, float, np.ndarray, float, int, bool]:
    """Best-first branch and bound with certified frontier nodes (module docstring).

    ``problem`` gives ``root()`` (the root states, one row each), ``solve(states, u0)`` (Newton point, class cost
    there, relaxation estimate, branching score per branch option; all scores ~0: a leaf),
    ``children(states, branch)`` (two per node, in order), ``certify(states, u, needed)`` and
    optionally ``incumbent()`` (the cost and ``u`` of a known member of the class).
    Nodes are ordered and pruned by their float estimate; only the frontier (pruned nodes and
    leaves) is certified, and a frontier node whose certified value falls short of the incumbent
    is reopened and branched, so the bound is the smallest *certified* frontier value.
    Returns ``(bound, incumbent cost, incumbent u, root estimate, nodes solved, complete)``.
    """
    counter = itertools.count()
    states = problem.root()
    U, cost, est, gap = problem.solve(states, None)
    j = int(np.argmin(cost))
    ub, best_u, root = float(cost[j]), U[j], float(est.min())
    if hasattr(problem, "incumbent"):  # a known row of the class (e.g. all entries dropped)
        c0, u0 = problem.incumbent()
        if c0 < ub:
            ub, best_u = c0, u0
    heap: list = [(float(est[k]), next(counter), states[k], U[k], gap[k]) for k in range(len(states))]
    heapq.heapify(heap)
    closed = math.inf  # smallest certified value of the frontier nodes that are settled
    solved = 1

    def branchable(node: tuple) -> bool:
        """Some free entry's relaxation undercuts its class cost at the node's minimiser (else it is a leaf)."""
        return bool((node[4] > 1e-12 * (1.0 + abs(node[0]))).any())

    def prunable(node: tuple) -> bool:
        """Its estimate reaches the incumbent, or it is a leaf (the relaxation is exact at its minimiser)."""
        return node[0] >= ub * (1.0 - _CLOSE_RTOL) or not branchable(node)

    def settle(nodes: list, reopen: bool = True) -> None:
        """Certify frontier nodes; with ``reopen``, one falling short of the incumbent goes back to be branched."""
        nonlocal closed
        # the exact correction only where it is needed to settle a node
        states, us = np.array([b[2] for b in nodes]), np.array([b[3] for b in nodes])
        vals = problem.certify(states, us, ub * (1.0 - _CERT_RTOL) if reopen else None).copy()  # (recorded: keep)
        leaf = np.array([not branchable(b) for b in nodes])
        short = np.flatnonzero(leaf & (vals < ub * (1.0 - _CERT_RTOL)))
        if reopen and len(short):  # leaves cannot be branched: their best certificate, exact correction included
            vals[short] = np.maximum(vals[short], problem.certify(states[short], us[short], None))
        for b, v in zip(nodes, vals):
            if reopen and v < ub * (1.0 - _CERT_RTOL) and branchable(b):
                heapq.heappush(heap, (float(v), next(counter), b[2], b[3], b[4]))
            else:
                closed = min(closed, float(v))

    while heap and solved < max_nodes:
        if prunable(heap[0]):
            frontier = []
            while heap and len(frontier) < _NODE_BATCH and prunable(heap[0]):
                frontier.append(heapq.heappop(heap))
            settle(frontier)
            continue
        batch = []
        while heap and len(batch) < _NODE_BATCH and not prunable(heap[0]):
            batch.append(heapq.heappop(heap))
        kids = problem.children(np.array([b[2] for b in batch]), np.array([int(np.argmax(b[4])) for b in batch]))
        U, cost, est, gap = problem.solve(kids, np.repeat(np.array([b[3] for b in batch]), 2, axis=0))
        solved += len(kids)
        j = int(np.argmin(cost))
        if cost[j] < ub:
            ub, best_u = float(cost[j]), U[j]
        parent_est = np.repeat([b[0] for b in batch], 2)
        for k in range(len(kids)):
            heapq.heappush(heap, (max(float(parent_est[k]), float(est[k])), next(counter), kids[k], U[k], gap[k]))
    complete = not heap
    for start in range(0, len(heap), _NODE_BATCH):  # out of budget: the open nodes' certified values count
        settle(heap[start:start + _NODE_BATCH], reopen=False)
    return closed, ub, best_u, root, solved, complete


def _relu_row_bnb(Aa: np.ndarray, y: np.ndarray, Bi: np.ndarray, max_nodes: int, record: list | None = None,
                  tag: dict | None = None) -> tuple[_Search, bool]:
    """Certified lower bound on one row's ReLU optimum by branch and bound (module docstring).

    Returns the search outcome (``value`` the certified bound, ``u`` the best ReLU row found,
    ``solved`` the nodes solved) and whether the search completed within ``max_nodes`` nodes.
    ``record``/``tag``: as in :func:`gapbound.theory.drops._drop_search` (frontier certificates).
    """
    n = len(y)
    bound, _, best_u, root, solved, complete = _best_first(_ReluRow(Aa, y, Bi, record, tag), max_nodes)
    drop_set = [int(t) for t in np.flatnonzero(Aa @ best_u <= 0.0)]
    return _Search(bound, drop_set, best_u, root, n if complete else -1, math.inf if complete else bound, solved), complete
