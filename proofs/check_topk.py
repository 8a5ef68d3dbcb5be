"""Exact check of the TopK charging inequality (proofs/02 section 2.5) on the library's own function.

For every code ``s`` with ``m <= k`` non-zeros (values 1, 2) and every pre-activation vector ``z`` on a
rational grid (ties included), the witness error of a TopK(k) encoder, for *every* selection of ``k``
entries consistent with the ordering of ``z`` (any tie-break) and both variants (ReLU after the
selection, or none), is at least ``gapbound.theory.topk.charged_cost(z, s, k)``: the active entries'
ReLU cost plus the ``k - m`` largest ``relu(z)^2`` of the inactive entries. Also checked: the weighted
form (``sum_l w_l v_l <= `` the ``r`` largest ``v`` for ``0 <= w <= 1``, ``sum w <= r``) at every vertex of
the weight set. ``check()`` raises ``AssertionError`` with the first counterexample; a budget of
``k - m + 1`` (planted) has counterexamples.

Also checked: the linear-hinge charge of proofs/02 section 2.5.1 on codes with ``m = k`` (derived and
estimated, not yet used by the library): the active entries' ReLU cost plus
``sum_l lam_l relu(z_l - delta) - sum_a mu_a relu(z_a - delta)`` for every ``(lam, mu)`` with
``0 <= lam, mu <= 4 delta``, ``sum mu >= sum lam`` and ``0 < delta <= 2 min y`` (:func:`hinge_charge` takes
the largest over that set, so one comparison per ``z`` covers them all). Planted: caps ``4.4 delta``,
``sum mu = 0.9 sum lam``, ``delta > 2 min y``; each has counterexamples.
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


def hinge_charge(z: list, s: list, delta: Fraction, cap: Fraction, mu_share: Fraction = Fraction(1)) -> Fraction:
    """The largest linear-hinge charge (module docstring) over ``0 <= lam, mu <= cap``, ``sum mu = mu_share sum lam``.

    For fixed ``z`` the charge is linear in ``(lam, mu)``; for a total ``L = sum lam`` the best ``lam`` fills the
    largest ``h(z_l) = relu(z_l - delta)`` first and the best ``mu`` the smallest ``h(z_a)``: concave and piecewise
    linear in ``L`` with breaks at multiples of ``cap``, so the maximum is at one of those (``mu_share < 1``
    plants the fault ``sum mu < sum lam``).
    """
    h = [max(v - delta, Fraction(0)) for v in z]
    act = [i for i in range(len(s)) if s[i] != 0]
    base = sum(((max(z[a], Fraction(0)) - s[a]) ** 2 for a in act), Fraction(0))
    hl = sorted((h[i] for i in range(len(s)) if s[i] == 0), reverse=True)
    ha = sorted(h[a] for a in act)
    return base + max(cap * (sum(hl[:j], Fraction(0)) - mu_share * sum(ha[:j], Fraction(0)))
                      for j in range(min(len(hl), len(ha)) + 1))


def check_hinge_charge(delta: Fraction = Fraction(1, 2), n: int = 4, k: int = 2, cap_factor: Fraction = Fraction(4),
                       mu_share: Fraction = Fraction(1), amplitudes: tuple[int, ...] = (1, 2)) -> None:
    """Every TopK(k) selection of every ``z`` on a grid (ties, points around ``delta`` and ``2 delta``) costs at least
    :func:`hinge_charge` on every code with ``k`` non-zeros (values ``amplitudes``) and ``delta <= 2 min y``."""
    grid = sorted(set(GRID) | {delta / 2, delta, 2 * delta, delta + Fraction(1, 7), 2 * delta + Fraction(1, 9)})
    for amps in itertools.product(amplitudes, repeat=k):
        s = [Fraction(a) for a in amps] + [Fraction(0)] * (n - k)
        for z in itertools.product(grid, repeat=n):
            z = list(z)
            lb = hinge_charge(z, s, delta, cap_factor * delta, mu_share)
            worst = min(topk_costs(z, s, k))
            assert worst >= lb, f"TopK({k}) cost {worst} < hinge charge {lb} at z={z}, s={s}, delta={delta}"


def check() -> None:
    check_weighted()
    check_charging()
    check_hinge_charge()


if __name__ == "__main__":
    check()
    print("topk charging: ok")
