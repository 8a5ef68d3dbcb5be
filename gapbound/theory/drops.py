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
# Moreau smoothing of the JumpReLU inactive-entry envelope (proofs/02 section 2.6): it
# lowers a leaking entry's cost by at most 8 tau^2 gamma, and keeps Newton and the duals well posed.
_ENVELOPE_SMOOTHING = 1e-3


@dataclass
class _Search:
    """Outcome of one drop enumeration (one threshold interval)."""

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
    Aa: np.ndarray, y: np.ndarray, Bi: np.ndarray, t0: float, t1: float, rho_keep: float,
    rho_drop: float, best: float, max_subproblems: int, batch: int = 4096,
    extra: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, record: list | None = None,
    tag: dict | None = None,
) -> _Search:
    """Certified ``min(best, min_Z [drops(Z) + convex(Z)])`` over drop sets ``Z`` of the active entries.

    The convex problem of ``Z`` (threshold interval ``[t0, t1]``) has the
    inactive entries' envelope ``e_t1(B u)`` (none when ``t1 = inf``) and the constraints
    ``z >= t0`` on kept and ``z <= t1`` on dropped active entries (weights ``rho_keep``, ``rho_drop``:
    ``_DROP_PENALTY`` for a hard constraint, 0 for none);
    ``extra = (L, c, w)`` adds hinge terms ``w relu(L u - c)^2`` shared by every
    subset (fixed leak decisions). ``best`` prunes: a subset whose drop cost
    alone reaches it cannot lower the minimum, and the result never exceeds it.
    With ``record``, every certified batch is appended as a
    :class:`~gapbound.theory.duality.Certificate` carrying ``tag``.
    """
    n = len(y)
    ysq = y**2
    t1c = 0.0 if math.isinf(t1) else t1  # an infinite ceiling switches its terms off (weight 0)
    if math.isinf(t1):
        rho_drop = 0.0
    L = np.vstack([-Aa, Aa])
    c = np.concatenate([np.full(n, -t0), np.full(n, t1c)])
    wx = np.zeros(0)
    if extra is not None:
        L, c, wx = np.vstack([L, extra[0]]), np.concatenate([c, extra[1]]), extra[2]
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
            Wt = np.hstack([rho_keep * keep, rho_drop * (1.0 - keep), np.broadcast_to(wx, (len(chunk), len(wx)))])
            gamma = 0.0 if t1 == 0.0 else _ENVELOPE_SMOOTHING
            u = _newton(Aa, y, L, c, keep, Wt, Bi, t1, gamma)
            n_rec = len(record) if record is not None else 0
            # constraint rows (penalty weight) are certified as hard constraints, the rest as weighted terms
            sw = np.where(Wt == _DROP_PENALTY, np.inf, np.sqrt(Wt))
            vals = _certify_batch(Aa, y, L, c, keep, sw, Bi, t1, gamma, u, record, hard_weight=_DROP_PENALTY)
            if record is not None and len(record) > n_rec:
                record[-1].tag = dict(tag or {}, t0=t0, t1=t1, cap=best)
            solved += len(chunk)
            j = int(np.argmin(vals))
            if k == 0:
                no_drop = float(vals[0])
            if vals[j] < best:
                best, best_Z, best_u = float(vals[j]), list(chunk[j]), u[j]
        k_done = k
    tail = float(cheapest[k_done + 1]) if k_done + 1 <= n else math.inf
    return _Search(min(best, tail), best_Z, best_u, no_drop, k_done, tail, solved)

