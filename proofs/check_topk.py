"""Exact check of the TopK charging inequality (proofs/02 section 2.5) on the library's own function.

For every code ``s`` with ``m <= k`` non-zeros (values 1, 2) and every pre-activation vector ``z`` on a
rational grid (ties included), the witness error of a TopK(k) encoder, for *every* selection of ``k``
entries consistent with the ordering of ``z`` (any tie-break) and both variants (ReLU after the
selection, or none), is at least ``gapbound.theory.topk.charged_cost(z, s, k)``: the active entries'
ReLU cost plus the ``k - m`` largest ``relu(z)^2`` of the inactive entries. Also checked: the weighted
form (``sum_l w_l v_l <= `` the ``r`` largest ``v`` for ``0 <= w <= 1``, ``sum w <= r``) at every vertex of
the weight set. ``check()`` raises ``AssertionError`` with the first counterexample; a budget of
``k - m + 1`` (planted) has counterexamples.

Also checked: the linear-hinge charge of proofs/02 section 2.5.1 on codes with ``m = k``
(:mod:`gapbound.theory.charge`): the active entries' ReLU cost plus
``sum_l lam_l relu(z_l - delta) - sum_a mu_a relu(z_a - delta)`` for every ``(lam, mu)`` with
``0 <= lam, mu <= 4 delta``, ``sum mu >= sum lam`` and ``0 < delta <= 2 min y`` (:func:`hinge_charge` takes
the largest over that set, so one comparison per ``z`` covers them all). Planted: caps ``4.4 delta``,
``sum mu = 0.9 sum lam``, ``delta > 2 min y``; each has counterexamples.

:func:`check_charged_pieces` checks the relaxation of that charge in the row problems (proofs/02 section
2.5.2) on :mod:`gapbound.theory.charge`'s own functions, in sympy and exact rationals: the identity behind
``charge_constant``, the dropped and kept states, ``kept_conjugate`` as a supremum over all ``z``, the kept
state's convex envelope (``kept_envelope``, Newton's term, in float), the |u| bound, the free envelope (needs
``delta <= y``) and the linear hinge's multiplier box ``[0, lam/2]``. Planted
(its parameters): ``+mu^2/4`` in the constant, the kept conjugate without its max term, ``delta > y``,
``rho`` up to ``3 lam / 5``; each fails.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import sympy as sp

from gapbound.theory.charge import CAP_FACTOR, charge_constant, charged_active_cost, kept_conjugate, kept_envelope

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
                       mu_share: Fraction = Fraction(1), amplitudes: tuple[int, ...] = (1, 2), extra: int = 0) -> None:
    """Every TopK(k + extra) selection of every ``z`` on a grid (ties, points around ``delta`` and ``2 delta``) costs
    at least :func:`hinge_charge` on every code with ``k`` non-zeros (values ``amplitudes``) and ``delta <= 2 min y``
    (``extra > 0``: the bound computed for k also covers every larger k)."""
    grid = sorted(set(GRID) | {delta / 2, delta, 2 * delta, delta + Fraction(1, 7), 2 * delta + Fraction(1, 9)})
    for amps in itertools.product(amplitudes, repeat=k):
        s = [Fraction(a) for a in amps] + [Fraction(0)] * (n - k)
        for z in itertools.product(grid, repeat=n):
            z = list(z)
            lb = hinge_charge(z, s, delta, cap_factor * delta, mu_share)
            worst = min(topk_costs(z, s, k + extra))
            assert worst >= lb, f"TopK({k + extra}) cost {worst} < hinge charge {lb} at z={z}, s={s}, delta={delta}"


# ------------------------------------------------- 2.5.2: the charge's pieces in the row problems (certified)
Constant = Callable[[Any, Any, Any], Any]
Conjugate = Callable[[Any, Any, Any, Any], Any]


def _relu(x: Any) -> Any:
    """``max(x, 0)`` for Fractions, and for sympy expressions whose sign the assumptions decide (else raises)."""
    if not isinstance(x, sp.Basic):
        return max(x, 0 * x)
    if x.is_nonpositive:
        return sp.Integer(0)
    assert x.is_nonnegative, f"the sign of {x} is undecided"
    return x


def _kept_min(z: Any, y: Any, mu: Any, delta: Any, constant: Constant) -> Any:
    """``min(P1, P2)(z)``, ``P1 = (z - y)^2``, ``P2 = (z - y - mu/2)^2 + C``: the kept state's lower function."""
    return min((z - y) ** 2, (z - y - mu / 2) ** 2 + constant(mu, y, delta))


def _free_envelope(z: Any, y: Any, mu: Any, delta: Any, constant: Constant) -> Any:
    """``relu(z - y - mu/2)^2 + C``: the free state's term (a hinge row with offset ``y + mu/2``, plus ``C``)."""
    return _relu(z - y - mu / 2) ** 2 + constant(mu, y, delta)


def _grid(delta_over_y: Fraction = Fraction(1)):
    """``(y, delta, mu)`` with ``0 < delta <= delta_over_y * y`` and ``0 <= mu <= CAP_FACTOR * delta``, and the ``z`` to
    test at: a grid plus the pieces' break points ``0, delta, y, y + mu/2`` and points next to them."""
    eps = Fraction(1, 1000)
    for y in (Fraction(3, 10), Fraction(1), Fraction(2)):
        for j in range(1, 5):
            delta = delta_over_y * y * Fraction(j, 4)
            for i in range(9):
                mu = CAP_FACTOR * delta * Fraction(i, 8)
                breaks = {Fraction(0), delta, y, y + mu / 2}
                zs = {Fraction(k, 10) for k in range(-5, 46)} | {b + d for b in breaks for d in (-eps, 0, eps)}
                yield y, delta, mu, sorted(zs)


def check_charge_identity(constant: Constant = charge_constant) -> None:
    """``(z - y)^2 - mu (z - delta) == (z - y - mu/2)^2 + C`` for symbolic ``z, y, mu, delta``; ``C = 0`` at
    ``mu = 0``."""
    z, y, mu, delta = sp.symbols("z y mu delta", real=True)
    diff = sp.expand((z - y) ** 2 - mu * (z - delta) - ((z - y - mu / 2) ** 2 + constant(mu, y, delta)))
    assert diff == 0, f"charge constant: (z - y)^2 - mu (z - delta) - (z - y - mu/2)^2 - C = {diff}, not 0"
    assert sp.expand(constant(0, y, delta)) == 0, "charge constant: C != 0 at mu = 0"


def check_dropped_kept(constant: Constant = charge_constant) -> None:
    """The library's ``g`` is ``y^2`` on ``z <= 0``, ``P1`` on ``(0, delta]`` (where ``P1 <= P2``) and ``P2`` above
    (where ``P2 <= P1``), so ``g = min(P1, P2)`` on ``z > 0``: symbolically on each piece (``delta > 0``,
    ``mu >= 0``, any ``y``)."""
    y = sp.Symbol("y", real=True)
    delta, zp, r = sp.symbols("delta zp r", positive=True)
    mu, r0 = sp.symbols("mu r0", nonnegative=True)
    dropped = charged_active_cost(-r0, y, mu, delta)  # z = -r0 <= 0
    assert sp.expand(dropped - y**2) == 0, f"dropped: g(z) = {dropped} on z <= 0, not y^2"
    for z, d, piece in ((zp, zp + r0, 0), (delta + r, delta, 1)):  # 0 < z <= delta: P1; z > delta: P2
        g = charged_active_cost(z, y, mu, d)
        parts = [(z - y) ** 2, (z - y - mu / 2) ** 2 + constant(mu, y, d)]
        lower, upper = parts[piece], parts[1 - piece]
        assert sp.expand(g - lower) == 0, f"kept: g(z) = {g} is not {lower} at z = {z}, delta = {d}"
        assert sp.expand(upper - lower).is_nonnegative, f"kept: min(P1, P2) is not {lower} at z = {z}, delta = {d}"


def check_kept_conjugate(constant: Constant = charge_constant, conjugate: Conjugate = kept_conjugate) -> None:
    """``conjugate(lam, y, mu, C) == sup_z [2 lam z - min(P1, P2)(z)]`` over all real ``z`` and ``lam``.

    The supremum of a pointwise maximum is the larger supremum; each ``2 lam z - P`` is a concave parabola (second
    derivative -2), maximised where its derivative vanishes. Symbolically for any ``C``, split by the sign of
    ``lam mu - C`` (which decides the larger); then exactly on a rational grid (negative ``lam`` included) with the
    library's ``C``, where both maximisers must attain the library's value and no grid ``z`` may exceed it
    (Fenchel-Young), and the library's ``g`` must equal ``y^2`` (``z <= 0``) and ``min(P1, P2)`` (``z > 0``)."""
    z, lam, y, mu = sp.symbols("z lam y mu", real=True)
    s, s0 = sp.Symbol("s", positive=True), sp.Symbol("s0", nonnegative=True)
    for C, larger in ((lam * mu - s, 1), (lam * mu + s0, 0)):  # lam mu - C = s > 0 / = -s0 <= 0
        sups = []
        for p in ((z - y) ** 2, (z - y - mu / 2) ** 2 + C):
            f = 2 * lam * z - p
            assert sp.diff(f, z, 2) == -2, f"kept: 2 lam z - {p} is not a concave parabola"
            (crit,) = sp.solve(sp.diff(f, z), z)
            sups.append(sp.expand(f.subs(z, crit)))
        gap = sp.expand(sups[larger] - sups[1 - larger])
        assert gap.is_nonnegative, f"kept: the conjugates {sups} are not ordered as lam mu - C says"
        lib = conjugate(lam, y, mu, C)
        assert sp.expand(lib - sups[larger]) == 0, (f"kept conjugate {lib} != sup_z [2 lam z - min(P1, P2)] "
                                                    f"= {sups[larger]} (lam mu - C = {sp.expand(lam * mu - C)})")
    lams = [Fraction(v) for v in (-3, -1, Fraction(-1, 2), Fraction(-1, 7), 0, Fraction(1, 3), 1, Fraction(5, 2))]
    for yq in (Fraction(1, 2), Fraction(1), Fraction(2)):
        for dq in (Fraction(1, 4), Fraction(1), Fraction(3)):
            for mq in (CAP_FACTOR * dq * Fraction(i, 4) for i in range(5)):
                zs = [Fraction(k, 4) for k in range(-8, 33)] + [dq, dq + Fraction(1, 1000)]
                for zq in zs:
                    g = charged_active_cost(zq, yq, mq, dq)
                    want = yq**2 if zq <= 0 else _kept_min(zq, yq, mq, dq, constant)
                    assert g == want, f"kept: g({zq}) = {g}, not {want} (y={yq}, mu={mq}, delta={dq})"
                for lq in lams:
                    conj = conjugate(lq, yq, mq, constant(mq, yq, dq))
                    # the two parabolas' maximisers first, then the grid
                    values = [2 * lq * zq - _kept_min(zq, yq, mq, dq, constant)
                              for zq in [yq + lq, yq + mq / 2 + lq] + zs]
                    where = f"lam={lq}, y={yq}, mu={mq}, delta={dq}"
                    assert max(values[:2]) == conj, f"kept conjugate {conj} != sup {max(values[:2])} at {where}"
                    assert max(values) <= conj, f"kept conjugate {conj} below 2 lam z - min(P1, P2) at {where}"


def check_kept_envelope(constant: Constant = charge_constant) -> None:
    """The kept state's convex envelope (Newton's term; validity does not depend on it): in residual ``d = z - y``,
    ``P1 = d^2`` up to ``k = C / mu``, the common tangent ``2 k d - k^2`` on ``[k, k + mu/2]``, ``P2`` above.

    Symbolically (``mu > 0``, any ``C = k mu``): the tangent is below ``P1`` and ``P2`` by squares, touching them at
    ``k`` and ``k + mu/2``, and ``P1 <= P2`` left of ``k``, ``P2 <= P1`` right of ``k + mu/2``; so this ``C^1``
    function with non-decreasing slope is the largest convex minorant. Then the library's float
    :func:`~gapbound.theory.charge.kept_envelope` (value, half slope, half curvature) against it on a grid."""
    d, k = sp.symbols("d k", real=True)
    mu = sp.Symbol("mu", positive=True)
    s0 = sp.Symbol("s0", nonnegative=True)
    p1, p2, tangent = d**2, (d - mu / 2) ** 2 + k * mu, 2 * k * d - k**2
    assert sp.expand(p1 - tangent - (d - k) ** 2) == 0 and sp.expand(p2 - tangent - (d - k - mu / 2) ** 2) == 0, \
        "kept envelope: 2 k d - k^2 is not the common tangent of P1 and P2"
    assert sp.expand((p2 - p1).subs(d, k - s0)).is_nonnegative, "kept envelope: P1 > P2 left of k"
    assert sp.expand((p1 - p2).subs(d, k + mu / 2 + s0)).is_nonnegative, "kept envelope: P2 > P1 right of k + mu/2"
    for yq, dq, mq, _ in _grid():
        cq = constant(mq, yq, dq)
        ds = [Fraction(j, 16) for j in range(-48, 49)]
        value, half_slope, curv = kept_envelope(np.array([float(v) for v in ds]), float(mq), float(cq))
        for dv, val, lam, cu in zip(ds, value, half_slope, curv):
            if mq == 0 or dv <= cq / mq:
                want = (dv * dv, dv, 1.0)
            elif dv >= cq / mq + mq / 2:
                want = ((dv - mq / 2) ** 2 + cq, dv - mq / 2, 1.0)
            else:
                want = (2 * (cq / mq) * dv - (cq / mq) ** 2, cq / mq, 0.0)
            near_knee = mq > 0 and min(abs(dv - cq / mq), abs(dv - cq / mq - mq / 2)) < Fraction(1, 10**9)
            ok = abs(val - float(want[0])) <= 1e-12 * (1 + abs(float(want[0]))) and abs(lam - float(want[1])) <= 1e-12
            assert ok and (near_knee or cu == want[2]), (f"kept_envelope({float(dv)}, mu={float(mq)}, C={float(cq)}) = "
                                                         f"{(val, lam, cu)}, not {tuple(float(w) for w in want)}")


def check_free_envelope(constant: Constant = charge_constant, delta_over_y: Fraction = Fraction(1)) -> None:
    """``relu(z - y - mu/2)^2 + C <= g(z)`` for every real ``z`` when ``0 < delta <= y``, ``mu >= 0``.

    Symbolically on the four pieces ``z <= 0``, ``0 < z <= delta``, ``delta < z <= y + mu/2``, ``z > y + mu/2`` (each
    written with non-negative slack symbols, so the difference is a polynomial sympy decides: non-negative
    coefficients, or a square; equality on the last piece); then exactly on the rational grid of :func:`_grid` with
    ``delta`` up to ``delta_over_y * y`` (``delta_over_y > 1`` plants the fault: the envelope then exceeds ``g``)."""
    delta, zp, r, q = sp.symbols("delta zp r q", positive=True)
    mu, e, r0, q0 = sp.symbols("mu e r0 q0", nonnegative=True)
    pieces = {  # name: (z, y, delta) with the piece's constraints built in; y >= delta where the proof needs it
        "z <= 0": (-r0, delta + e, delta),
        "0 < z <= delta": (zp, zp + r0 + e, zp + r0),
        "delta < z <= y + mu/2": (delta + r, delta + r + q0 - mu / 2, delta),
        "z > y + mu/2": (delta + e + mu / 2 + q, delta + e, delta),
    }
    for name, (z, y, d) in pieces.items():
        gap = sp.factor(sp.expand(charged_active_cost(z, y, mu, d) - _free_envelope(z, y, mu, d, constant)))
        assert gap.is_nonnegative, f"free envelope: g - envelope = {gap} not provably >= 0 on {name}"
        assert name != "z > y + mu/2" or gap == 0, f"free envelope: g - envelope = {gap} on {name}, not 0"
    for yq, dq, mq, zs in _grid(delta_over_y):
        for zq in zs:
            env, g = _free_envelope(zq, yq, mq, dq, constant), charged_active_cost(zq, yq, mq, dq)
            assert env <= g, f"free envelope {env} > g = {g} at z={zq}, y={yq}, delta={dq}, mu={mq}"


def check_u_bound(constant: Constant = charge_constant, delta_over_y: Fraction = Fraction(1)) -> None:
    """``min(P1, P2)(z) >= ((|z - y| - mu/2)_+)^2 + C`` and ``C <= 0`` for ``0 < delta <= y``, ``mu >= 0``: symbolically
    (``y = delta + e``, ``z = y + s`` with ``|s|`` below or above ``mu/2``, both signs of ``s``) and on the grid."""
    delta = sp.Symbol("delta", positive=True)
    mu, e, a, v, w = sp.symbols("mu e a v w", nonnegative=True)
    y = delta + e
    C = sp.expand(constant(mu, y, delta))
    assert C.is_nonpositive, f"|u| bound: C = {C} not provably <= 0 for delta <= y"
    cases = [(sgn * a, {mu: 2 * a + 2 * v}) for sgn in (1, -1)]  # |s| = a <= mu/2
    cases += [(sgn * (mu / 2 + w), {}) for sgn in (1, -1)]  # |s| = mu/2 + w
    for s, sub in cases:
        m = mu.subs(sub)
        hinge = _relu(sp.Abs(s.subs(sub)) - m / 2) ** 2 + constant(m, y, delta)
        for p in (s.subs(sub) ** 2, (s.subs(sub) - m / 2) ** 2 + constant(m, y, delta)):
            gap = sp.expand(p - hinge)
            assert gap.is_nonnegative, f"|u| bound: {p} - ((|s| - mu/2)_+)^2 - C = {gap} not provably >= 0 (s = {s})"
    for yq, dq, mq, zs in _grid(delta_over_y):
        cq = constant(mq, yq, dq)
        assert cq <= 0, f"|u| bound: C = {cq} > 0 at y={yq}, delta={dq}, mu={mq}"
        for zq in zs:
            low = _relu(abs(zq - yq) - mq / 2) ** 2 + cq
            assert _kept_min(zq, yq, mq, dq, constant) >= low, f"|u| bound fails at z={zq}, y={yq}, delta={dq}, mu={mq}"


def _sup_linear(expr: sp.Expr, z: sp.Symbol, lo: sp.Expr, hi: sp.Expr) -> sp.Expr:
    """Exact supremum of ``expr``, affine in ``z``, over ``[lo, hi]`` (one end may be infinite). The slope's sign must
    follow from the symbols' assumptions: an undecided sign raises rather than guessing the supremum finite."""
    slope = sp.diff(expr, z)
    assert z not in slope.free_symbols, f"{expr} is not affine in {z}"
    if slope.is_positive and not hi.is_finite or slope.is_negative and not lo.is_finite:
        return sp.oo
    if slope.is_nonnegative and hi.is_finite:
        return expr.subs(z, hi)
    if slope.is_nonpositive and lo.is_finite:
        return expr.subs(z, lo)
    raise AssertionError(f"linear hinge: the sign of the slope {slope} of {expr} is undecided")


def _hinge_sup(rho: sp.Expr, lam: sp.Expr, delta: sp.Expr) -> sp.Expr:
    """``sup_z [2 rho z - lam relu(z - delta)]``, piece by piece: ``2 rho z`` on ``z <= delta``, minus
    ``lam (z - delta)`` above."""
    z = sp.Symbol("z", real=True)
    return sp.Max(_sup_linear(2 * rho * z, z, -sp.oo, delta),
                  _sup_linear(2 * rho * z - lam * (z - delta), z, delta, sp.oo))


def check_linear_hinge(rho_over_lam: Fraction = Fraction(1, 2)) -> None:
    """``sup_z [2 rho z - lam relu(z - delta)] == 2 rho delta`` for ``0 <= rho <= lam/2`` (all of the box: ``lam = 2 rho
    + f``, ``f >= 0``; and at its vertices ``0`` and ``rho_over_lam * lam``, the planted fault's entry), ``+oo`` for
    ``rho > lam/2`` and for ``rho < 0``."""
    delta, lam, f = sp.symbols("delta lam f", positive=True)
    rho, f0, lam0 = sp.symbols("rho f0 lam0", nonnegative=True)
    for r, l in ((rho, 2 * rho + f0), (sp.Integer(0), lam), (sp.Rational(rho_over_lam) * lam, lam)):
        sup = _hinge_sup(r, l, delta)
        assert sp.simplify(sup - 2 * r * delta) == 0, f"linear hinge: sup = {sup}, not 2 rho delta (rho={r}, lam={l})"
    for r in (lam0 / 2 + f, -f):
        assert _hinge_sup(r, lam0, delta) == sp.oo, f"linear hinge: sup finite at rho = {r} outside [0, lam/2]"


def check_charged_pieces(constant: Constant = charge_constant, conjugate: Conjugate = kept_conjugate,
                         delta_over_y: Fraction = Fraction(1), rho_over_lam: Fraction = Fraction(1, 2)) -> None:
    """proofs/02 section 2.5.2 on :mod:`gapbound.theory.charge`; the parameters plant faults (module docstring)."""
    check_charge_identity(constant)
    check_dropped_kept(constant)
    check_kept_conjugate(constant, conjugate)
    check_kept_envelope(constant)
    check_free_envelope(constant, delta_over_y)
    check_u_bound(constant, delta_over_y)
    check_linear_hinge(rho_over_lam)


def check() -> None:
    check_weighted()
    check_charging()
    check_hinge_charge()
    check_hinge_charge(extra=1)
    check_charged_pieces()


if __name__ == "__main__":
    check()
    print("topk charging: ok")
