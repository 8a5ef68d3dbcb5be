"""Exact check of the TopK charging inequality (proofs/02 section 2.5) on the library's own function.

For every code ``s`` with ``m <= k`` non-zeros (values 1, 2) and every pre-activation vector ``z`` on a
rational grid (ties included), the witness error of a TopK(k) encoder, for *every* selection of ``k``
entries consistent with the ordering of ``z`` (any tie-break) and both variants (ReLU after the
selection, or none), is at least ``gapbound.theory.topk.charged_cost(z, s, k)``: the active entries'
ReLU cost plus the ``k - m`` largest ``relu(z)^2`` of the inactive entries. Also checked: the weighted
form (``sum_l w_l v_l <= `` the ``r`` largest ``v`` for ``0 <= w <= 1``, ``sum w <= r``) at every vertex of
the weight set. ``check()`` raises ``AssertionError`` with the first counterexample; a budget of
``k - m + 1`` (planted) has counterexamples.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

GRID = [Fraction(v, 2) for v in (-2, 0, 1, 2, 3, 4)]


def topk_costs(z: list, s: list, k: int) -> list[Fraction]:
    """Exact witness error of every TopK(k) selection consistent with ``z``'s order (ties: every choice), both
    variants (outputs ``z`` or ``relu(z)`` on the selected entries)."""
    n = len(z)
    out = []
    for sel in itertools.combinations(range(n), k):
        rest = [i for i in range(n) if i not in sel]
        if rest and min(z[i] for i in sel) < max(z[i] for i in rest):
            continue  # not a top-k selection
        for relu in (False, True):
            f = [(max(z[i], Fraction(0)) if relu else z[i]) if i in sel else Fraction(0) for i in range(n)]
            out.append(sum(((a - b) ** 2 for a, b in zip(f, s)), Fraction(0)))
    return out


def check_charging(n: int = 4, ks: tuple[int, ...] = (1, 2, 3)) -> None:
    from gapbound.theory.topk import charged_cost

    for k in ks:
        for m in range(1, k + 1):
            # support on the first m entries: the claim is invariant under permuting the entries
            for amps in itertools.product((1, 2), repeat=m):
                s = [Fraction(a) for a in amps] + [Fraction(0)] * (n - m)
                for z in itertools.product(GRID, repeat=n):
                    z = list(z)
                    lb = charged_cost(z, s, k)
                    worst = min(topk_costs(z, s, k))
                    assert worst >= lb, f"TopK({k}) cost {worst} < charged bound {lb} at z={z}, s={s}"


def check_weighted(n: int = 5) -> None:
    """max over the vertices of {0 <= w <= 1, sum w <= r} of sum w v equals the sum of the r largest v."""
    vals = [Fraction(v, 3) for v in (0, 1, 4, 4, 9)][:n]
    for r in range(n + 1):
        top = sum(sorted(vals, reverse=True)[:r], Fraction(0))
        for w in itertools.product((0, 1), repeat=n):
            if sum(w) <= r:
                assert sum((a * b for a, b in zip(w, vals)), Fraction(0)) <= top


def check() -> None:
    check_weighted()
    check_charging()


if __name__ == "__main__":
    check()
    print("topk charging: ok")
