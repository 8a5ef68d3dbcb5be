"""Drop enumeration: a row's minimum over the sets of dropped active entries, each subproblem certified.

A row's cost splits into the drop cost of the active entries its gate zeroes
and a convex problem over ``(w, beta)`` for the rest
(``proofs/02_witness_bound.md`` 2.1-2.2). ``_drop_search`` enumerates the
drop sets by size, pruned by their cost, and reports whether it finished.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .duality import _certify_batch, _gamma, _newton

# Weight of the quadratic penalty that stands in for a gate constraint ("a dropped active entry has
# z <= threshold") while Newton solves; the certificate treats these rows as hard constraints
# (sw = inf) with multipliers _DROP_PENALTY relu(L u - c), so the bound is for the constraint itself.
_DROP_PENALTY = 1e4


@dataclass
class _Search:
    """Outcome of one row search (drop enumeration or branch and bound)."""

    value: float
    drop_set: list[int]
    u: np.ndarray | None
    no_drop: float
    k_done: int
    tail: float
    solved: int



def _combinations(n: int, k: int, ysq: np.ndarray, best: float) -> list[tuple[int, ...]]:
    """The drop sets of size ``k`` whose drop cost is below ``best`` (the others cannot lower the minimum)."""
    return [Z for Z in itertools.combinations(range(n), k) if ysq[list(Z)].sum() < best]


def _cheapest(ysq: np.ndarray) -> np.ndarray:
    """``cheapest[k]``: a lower bound (rounded down) on the drop cost of any ``k`` entries."""
    return np.concatenate([[0.0], np.cumsum(np.sort(ysq))]) * (1.0 - _gamma(len(ysq) + 2))


def _drop_search(
    Aa: np.ndarray, y: np.ndarray, Bi: np.ndarray, relu: bool, best: float, max_subproblems: int,
    batch: int = 4096, record: list | None = None, tag: dict | None = None,
) -> _Search:
    """Certified ``min(best, min_Z [drops(Z) + convex(Z)])`` over drop sets ``Z`` of the active entries.

    Free gate (``relu=False``): the convex problem of ``Z`` is least squares on the kept entries.
    ReLU (``relu=True``; the exhaustive reference for :mod:`gapbound.theory.relu`'s branch and bound):
    plus the inactive entries' ``relu(B u)^2`` and the hard constraint ``z <= 0`` on dropped entries.
    ``best`` prunes: a subset whose drop cost alone reaches it cannot lower the minimum, and the result
    never exceeds it. With ``record``, every certified batch is appended as a
    :class:`~gapbound.theory.duality.Certificate` carrying ``tag``.
    """
    n = len(y)
    ysq = y**2
    tau = 0.0 if relu else math.inf  # inf: no inactive-entry terms
    L, c = Aa, np.zeros(n)  # dropped entries: z <= 0 (ReLU only; weight 0 for the free gate)
    cheapest = _cheapest(ysq)
    best_Z, best_u, no_drop = [], None, 0.0  # no_drop stays 0 (a trivial bound) when pruned before k = 0
    solved, k_done = 0, -1
    for k in range(n + 1):
        if cheapest[k] >= best:
            k_done = n  # every larger drop set costs at least the best already certified
            break
        combos = _combinations(n, k, ysq, best)
        if solved + len(combos) > max_subproblems:
            break
        for start in range(0, len(combos), batch):
            chunk = combos[start : start + batch]
            keep = np.ones((len(chunk), n))
            for r, Z in enumerate(chunk):
                keep[r, list(Z)] = 0.0
            Wt = (_DROP_PENALTY if relu else 0.0) * (1.0 - keep)
            u = _newton(Aa, y, L, c, keep, Wt, Bi, tau)
            n_rec = len(record) if record is not None else 0
            # the penalised rows are certified as hard constraints (multipliers _DROP_PENALTY relu(z))
            sw = np.where(Wt > 0, np.inf, 0.0)
            vals = _certify_batch(Aa, y, L, c, keep, sw, Bi, tau, u, record, hard_weight=_DROP_PENALTY)
            if record is not None and len(record) > n_rec:
                record[-1].tag = dict(tag or {}, cap=best)
            solved += len(chunk)
            j = int(np.argmin(vals))
            if k == 0:
                no_drop = float(vals[0])
            if vals[j] < best:
                best, best_Z, best_u = float(vals[j]), list(chunk[j]), u[j]
        k_done = k
    tail = float(cheapest[k_done + 1]) if k_done + 1 <= n else math.inf
    return _Search(min(best, tail), best_Z, best_u, no_drop, k_done, tail, solved)

