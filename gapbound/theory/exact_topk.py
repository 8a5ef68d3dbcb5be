"""Exact cross-row checks of the TopK bound (``proofs/02_witness_bound.md`` 2.5-2.5.2), for :mod:`.exact`.

The row certificates are checked one by one in :mod:`.exact`; what couples the rows is checked here, in
rational arithmetic: the sample weights' budgets and the linear-hinge charge's constraints.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from .charge import CAP_FACTOR, charge_constant
from .separation import SeparationProof

if TYPE_CHECKING:
    from .bounds import BoundResult
    from .exact import ExactReport


def check_topk_weights(rep: ExactReport, result: BoundResult, codes: np.ndarray) -> None:
    """TopK (``proofs/02_witness_bound.md`` 2.5): every weighted entry is inactive in a code with ``m_t < k``
    non-zeros, its weight ``sw^2 <= 1``, and the weights of each code over all rows sum to at most ``k - m_t``
    (exactly; a row's weight is the largest any of its certificates uses)."""
    k = result.topk_k
    if k is None:
        rep.failures.append("topk bound without its k")
        return
    budget = [k - int(m) for m in (codes > 0).sum(1)]
    used: dict[tuple[int, int], Fraction] = {}
    for cert in result.certificates:
        if isinstance(cert, SeparationProof):
            continue
        row, idx = cert.tag.get("row"), cert.tag.get("weighted", ())
        sw = cert.sw[:, 2 * len(cert.y):]
        for j, t in enumerate(idx):
            w = max((Fraction(v) ** 2 for v in sw[:, j]), default=Fraction(0))
            if codes[t, row] != 0 or budget[t] <= 0 or w > 1:
                rep.failures.append(f"row {row}: weighted entry {int(t)} is not an inactive entry of a code with "
                                    f"fewer than k={k} non-zeros, or its weight exceeds 1")
            used[(int(t), row)] = max(used.get((int(t), row), Fraction(0)), w)
    per_code: dict[int, Fraction] = {}
    for (t, _), w in used.items():
        per_code[t] = per_code.get(t, Fraction(0)) + w
    for t, total in per_code.items():
        if total > budget[t]:
            rep.failures.append(f"code {t}: TopK weights sum to {float(total)!r} > k - m_t = {int(budget[t])}")


def check_topk_charge(rep: ExactReport, result: BoundResult, codes: np.ndarray) -> None:
    """TopK's linear-hinge charge (``proofs/02_witness_bound.md`` 2.5.1-2.5.2), exactly: every certificate of a row
    carries the same charge; hinges sit on inactive entries of codes with ``m_t = k`` and active charges only on
    those codes; one ``delta`` with ``0 < delta <=`` each charged code's smallest amplitude; ``lam, mu`` in
    ``[0, 4 delta]``; ``sum mu >= sum lam`` per code; each stored ``C <= charge_constant(mu, y, delta)``."""
    full = (codes > 0).sum(1) == result.topk_k
    seen: dict[int, tuple] = {}
    lam_sum: dict[int, Fraction] = {}
    mu_sum: dict[int, Fraction] = {}
    deltas, done = set(), set()
    for cert in result.certificates:
        if isinstance(cert, SeparationProof):
            continue
        row, n = cert.tag.get("row"), len(cert.y)
        slopes = -cert.sw[0, 2 * n + len(cert.tag.get("weighted", ())):]
        mu_c, C = cert.charge if cert.charge is not None else (np.zeros(n), np.zeros(n))
        key = (mu_c.tobytes(), C.tobytes(), slopes.tobytes(), cert.tag.get("delta"))
        if seen.setdefault(row, key) != key:
            rep.failures.append(f"row {row}: its certificates carry different charges")
        if row in done:  # one row's charge counts once
            continue
        done.add(row)
        delta = Fraction(cert.tag.get("delta", 0.0))
        cap = CAP_FACTOR * delta
        for t, lam in zip(cert.tag.get("hinged", ()), slopes):
            if codes[t, row] != 0 or not full[t] or not 0 <= Fraction(lam) <= cap:
                rep.failures.append(f"row {row}: hinge on entry {int(t)} is not on an inactive entry of a code with "
                                    f"k non-zeros, or its slope is outside [0, 4 delta]")
            lam_sum[int(t)] = lam_sum.get(int(t), Fraction(0)) + Fraction(lam)
        for t, m, c, y in zip(cert.tag["active"], mu_c, C, cert.y):
            m, y = Fraction(m), Fraction(y)
            if (m and not full[t]) or not 0 <= m <= cap or Fraction(c) > charge_constant(m, y, delta):
                rep.failures.append(f"row {row}: active charge of code {int(t)} invalid (code with fewer than k "
                                    "non-zeros, mu outside [0, 4 delta], or C above charge_constant)")
            mu_sum[int(t)] = mu_sum.get(int(t), Fraction(0)) + m
        if slopes.any() or mu_c.any():
            deltas.add(delta)
    if len(deltas) > 1:
        rep.failures.append(f"rows charged with different deltas {sorted(map(float, deltas))}")
    for t in {t for t, v in lam_sum.items() if v} | {t for t, v in mu_sum.items() if v}:
        y_min = min(Fraction(v) for v in codes[t][codes[t] > 0])
        if not 0 < min(deltas) <= max(deltas) <= y_min or mu_sum.get(t, 0) < lam_sum.get(t, 0):
            rep.failures.append(f"code {t}: charge needs 0 < delta <= min y and sum mu >= sum lam")
