"""JumpReLU class: branch and bound over a row's threshold interval and its inactive entries' leak decisions.

(``proofs/02_witness_bound.md`` section 2.6.)
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from .drops import _DROP_PENALTY, _ENVELOPE_SMOOTHING, _drop_search, _Search
from .duality import _envelope


def _jumprelu_row(
    Aa: np.ndarray, y: np.ndarray, Bi: np.ndarray, max_subproblems: int, grid: int, budget: int,
    record: list | None = None, tag: dict | None = None,
) -> tuple[_Search, float, int, list[float]]:
    """Branch and bound over the row's threshold ``theta >= 0`` and the inactive entries' leak decisions.

    A leaf is a threshold interval ``[t0, t1]`` with inactive entries forced
    out (``z <= t1``: penalty on top of the envelope), forced to leak (cost
    ``z^2`` with ``z >= t0``) or free (envelope ``e_t1``). Kept entries have
    ``z >= t0``, dropped ones ``z <= t1``. ``theta >= 2 max(s)``: every kept
    active entry costs ``(z - s)^2 >= s^2``, so the row costs at least
    ``sum s^2`` (analytic tail). The row bound is the smallest leaf value; the
    smallest leaf is refined ``budget`` times: branch on the free inactive
    entry whose envelope undercuts ``z^2 1[z > t1]`` most, else halve its
    interval. Children only tighten the relaxation, so a child stores
    ``max(parent, child)``. Returns the best search, the bound, the subproblem
    count and the attaining interval. ``record``/``tag``: as in :func:`_drop_search`.
    """
    T = 2.0 * float(y.max())
    tail = float(np.nextafter(math.fsum(y**2), -np.inf))  # fsum is correctly rounded
    n_in = len(Bi)
    heap: list[tuple[float, int, float, float, frozenset, frozenset]] = [(tail, 0, T, math.inf, frozenset(), frozenset())]
    sols: dict[int, np.ndarray | None] = {0: None}
    solved, best_res = 0, None

    def evaluate(t0: float, t1: float, out: frozenset, leak: frozenset, cap: float) -> tuple[float, np.ndarray | None]:
        nonlocal solved, best_res
        o, lk = sorted(out), sorted(leak)
        free = np.setdiff1d(np.arange(n_in), lk)
        # forced out: rho relu(z - t1)^2; forced leak: relu(z)^2 + relu(-z)^2 = z^2 and rho relu(t0 - z)^2
        Lx = np.vstack([Bi[o], Bi[lk], -Bi[lk], -Bi[lk]])
        cx = np.concatenate([np.full(len(o), t1), np.zeros(2 * len(lk)), np.full(len(lk), -t0)])
        wx = np.concatenate([np.full(len(o), _DROP_PENALTY), np.ones(2 * len(lk)), np.full(len(lk), _DROP_PENALTY)])
        leaf_tag = None
        if record is not None:
            inact = (tag or {}).get("inactive", np.arange(n_in))
            leaf_tag = dict(tag or {}, inactive=inact[free], out=inact[o], leak=inact[lk])
        res = _drop_search(Aa, y, Bi[free], t0, t1, _DROP_PENALTY, _DROP_PENALTY, cap, max_subproblems,
                           extra=(Lx, cx, wx), record=record, tag=leaf_tag)
        solved += res.solved
        if res.u is not None and (best_res is None or res.value < best_res.value):
            best_res = res
        return res.value, res.u

    def push(v: float, t0: float, t1: float, out: frozenset, leak: frozenset, u: np.ndarray | None) -> None:
        key = len(sols)
        sols[key] = u
        heapq.heappush(heap, (v, key, t0, t1, out, leak))

    edges = np.linspace(0.0, T, grid + 1)
    for t0, t1 in zip(edges[:-1], edges[1:]):
        v, u = evaluate(float(t0), float(t1), frozenset(), frozenset(), heap[0][0])
        push(v, float(t0), float(t1), frozenset(), frozenset(), u)
    for _ in range(budget):
        v, key, t0, t1, out, leak = heapq.heappop(heap)
        if math.isinf(t1):
            heapq.heappush(heap, (v, key, t0, t1, out, leak))
            break  # the analytic tail is the minimum: nothing left to refine
        u = sols[key]
        if u is None:  # stored capped at a competitor's value: solve it to see what to refine
            v2, u = evaluate(t0, t1, out, leak, math.inf)
            push(max(v, v2), t0, t1, out, leak, u)
            continue
        cap = heap[0][0]
        free = np.setdiff1d(np.arange(n_in), sorted(out | leak))
        z = Bi[free] @ u
        gap = z**2 * (z > t1) - _envelope(z, t1, _ENVELOPE_SMOOTHING)[0]
        if len(free) and gap.max() > 1e-6 * (1.0 + v):
            j = int(free[np.argmax(gap)])
            children = [(t0, t1, out | {j}, leak), (t0, t1, out, leak | {j})]
        else:
            mid = 0.5 * (t0 + t1)
            children = [(t0, mid, out, leak), (mid, t1, out, leak)]
        for a, b, o, lk in children:
            # bounded at the next-smallest leaf: above it, a child cannot be the row minimum
            v2, u2 = evaluate(a, b, o, lk, cap)
            push(max(v, v2), a, b, o, lk, u2)
    v, _, t0, t1, _, _ = heap[0]
    if best_res is None:
        best_res = _Search(v, [], None, 0.0, -1, math.inf, 0)
    return best_res, v, solved, [t0, t1]

