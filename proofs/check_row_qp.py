"""Sympy checks for proofs/02_witness_bound.md, run on the library's own formulas.

1. ``check_weak_duality``: for symbolic ``u``, data and multipliers, the library's
   :func:`~gapbound.theory.duality.dual_terms` and :func:`~gapbound.theory.duality.stationarity`
   satisfy ``f(u) - (2 u.g + sum(dual_terms)) = sum of per-term gaps``, each gap proven
   non-negative (a square, or a product of signed factors on each branch of the ReLU).
2. ``check_conjugates``: the conjugates used are suprema over *all* v, computed
   exactly by sympy on every piece of the function: ``sup_v [2 l v - v^2] = l^2``, and
   for the smoothed JumpReLU envelope ``sup_v [2 nu v - e(v)]`` equals the library's
   :func:`~gapbound.theory.duality.envelope_conjugate` on a grid of rational
   ``(nu, tau, gamma)`` and symbolically in both regimes ``nu <= 2 tau`` and ``nu >= 2 tau``.
3. ``check_kkt``: on an exact rational ReLU row problem, the exact minimiser (found
   by enumerating the ReLU patterns) with the library's
   :func:`~gapbound.theory.duality.multipliers` has ``g = 0`` exactly and zero duality gap.
4. ``check_jumprelu_envelope``: the envelope's geometry (tangent point, lower bound
   on the leak cost, C^1 pieces, the ``8 tau^2 gamma`` smoothing loss) and the library's
   ``_envelope`` evaluated exactly at rational points against the Moreau envelope
   ``min_v [e_tau(v) + (z - v)^2 / (2 gamma)]`` computed by sympy.
5. ``check_jumprelu_gates``: the JumpReLU branch and bound's free-entry terms (``_JumpReluRow.parts``) are
   below both gate costs for every threshold in the node's interval (symbolic offset, exact rational grid).
"""

from __future__ import annotations

import itertools

import numpy as np
import sympy as sp

from gapbound.theory import duality


def _obj(values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def check_weak_duality(p: int = 2) -> None:
    """``f(u) >= 2 u.g + sum(dual_terms)`` term by term, with the library's dual terms and g."""
    u = _obj(sp.symbols(f"u0:{p}", real=True))
    a = _obj(sp.symbols(f"a0:{p}", real=True))
    l_row = _obj(sp.symbols(f"l0:{p}", real=True))
    b_row = _obj(sp.symbols(f"e0:{p}", real=True))
    y, c, tau = sp.symbols("y c tau", real=True)
    lam = sp.Symbol("lam", real=True)
    mu, sw, nu, gam = sp.symbols("mu sw nu gamma", nonnegative=True)
    conj = duality.envelope_conjugate(_obj([nu]), tau, gam, maximum=lambda x, y_: _obj([sp.Max(x[0], y_[0])]))
    terms = duality.dual_terms(_obj([lam])[None], _obj([y]), _obj([mu])[None], _obj([sw])[None], _obj([c]),
                               conj[None])
    g = duality.stationarity(_obj([lam])[None], a[None], _obj([sw * mu])[None], l_row[None], _obj([nu])[None],
                             b_row[None])[0]
    lower = 2 * sum(u * g) + sum(terms[0])
    va, vl, vb = sum(a * u), sum(l_row * u), sum(b_row * u)
    # gaps of the three kinds of terms (each must be >= 0); their sum must be f - lower exactly
    gap_sq = (va - y) ** 2 - (2 * lam * (va - y) - lam**2)
    assert sp.expand(gap_sq - (va - y - lam) ** 2) == 0, "kept-residual gap is not a square"
    pos, neg = sp.Symbol("r", positive=True), sp.Symbol("r", positive=True)
    # hinge (sw relu(v - c))^2 vs 2 mu sw (v - c) - mu^2: v - c = r > 0 (a square) or v - c = -r < 0
    hinge_pos = (sw * pos) ** 2 - (2 * mu * sw * pos - mu**2)
    assert sp.expand(hinge_pos - (sw * pos - mu) ** 2) == 0, "hinge gap on v > c is not a square"
    hinge_neg = 0 - (2 * mu * sw * (-neg) - mu**2)
    assert sp.expand(hinge_neg).is_nonnegative, "hinge gap on v < c is not non-negative"
    # the library's dual terms and g must add up to exactly these per-term lower functions
    e_v = sp.Symbol("E")  # the envelope's value at vb (its gap E - (2 nu vb - conj) is Fenchel-Young, check 2)
    f_minus_lower = ((va - y) ** 2 + sp.Symbol("H") + e_v) - lower
    expected = (gap_sq + (sp.Symbol("H") - (2 * mu * sw * (vl - c) - mu**2))
                + (e_v - (2 * nu * vb - conj[0])))
    assert sp.expand(f_minus_lower - expected) == 0, "dual terms and g do not match the per-term conjugate bounds"


def _sup_on(expr: sp.Expr, v: sp.Symbol, lo, hi) -> sp.Expr:
    """Exact supremum of a concave quadratic (or linear) ``expr`` over ``[lo, hi]`` (either end may be infinite)."""
    cands = [x for x in (lo, hi) if x.is_finite]
    d = sp.diff(expr, v)
    if d.free_symbols & {v}:
        crit = sp.solve(d, v)
        cands += [x for x in crit if (lo <= x) == sp.true and (x <= hi) == sp.true]
    elif (d > 0) == sp.true and not hi.is_finite or (d < 0) == sp.true and not lo.is_finite:
        return sp.oo
    return sp.Max(*[expr.subs(v, x) for x in cands])


def _envelope_pieces(tau, gam):
    """The smoothed envelope's pieces ``(expression in v, lower end, upper end)`` (proofs/02 section 2.6)."""
    v = sp.Symbol("v", real=True)
    r1, r2 = tau + 4 * tau * gam, 2 * tau + 4 * tau * gam
    pieces = [(sp.Integer(0), -sp.oo, tau), (4 * tau * v - 4 * tau**2 - 8 * tau**2 * gam, r1, r2),
              (v**2 / (1 + 2 * gam), r2, sp.oo)]
    if gam != 0:
        pieces.append(((v - tau) ** 2 / (2 * gam), tau, r1))
    return v, pieces


def check_conjugates() -> None:
    """Conjugates as suprema over all v: the square's, and the smoothed envelope's against the library formula."""
    v, lam = sp.Symbol("v", real=True), sp.Symbol("lam", real=True)
    assert sp.simplify(_sup_on(2 * lam * v - v**2, v, -sp.oo, sp.oo) - lam**2) == 0
    grid = [sp.Rational(k, 4) for k in (0, 1, 3, 8)]
    for tau, gam, nu in itertools.product(grid, (sp.Integer(0), sp.Rational(1, 1000), sp.Rational(1, 7)), grid + [5]):
        vv, pieces = _envelope_pieces(tau, gam)
        sup = sp.Max(*[_sup_on(2 * nu * vv - e, vv, lo, hi) for e, lo, hi in pieces])
        lib = duality.envelope_conjugate(nu, tau, gam, maximum=sp.Max)
        assert sp.simplify(sup - lib) == 0, f"conjugate wrong at tau={tau}, gamma={gam}, nu={nu}: {lib} vs sup {sup}"
    # symbolically, in both regimes of nu
    tau, gam, t = sp.symbols("tau gamma t", positive=True)
    for nu in (2 * tau * t / (1 + t), 2 * tau * (1 + t)):  # nu < 2 tau and nu > 2 tau
        vv, pieces = _envelope_pieces(tau, gam)
        vals = [2 * nu * tau, 2 * nu * tau + 2 * gam * nu**2, nu**2 * (1 + 2 * gam)]  # candidate suprema
        lib = duality.envelope_conjugate(nu, tau, gam, maximum=sp.Max)
        best = vals[1] if nu.subs({tau: 1, t: 1}) < 2 else vals[2]
        assert sp.simplify(sp.expand(lib) - sp.expand(best)) == 0 or sp.simplify(lib - best) == 0


def check_kkt() -> None:
    """Exact ReLU row problem: the exact minimiser with the library's multipliers has g = 0 and zero duality gap."""
    R = sp.Rational
    Aa = np.array([[1, 0, 1], [2, 0, 1], [R(1, 2), 1, 1]], dtype=object)
    y = np.array([1, 2, 1], dtype=object)
    Bi = np.array([[1, -1, 1], [0, 1, 1], [R(-1, 3), R(1, 2), 1]], dtype=object)
    u = sp.symbols("u0:3", real=True)
    best = None
    for pattern in itertools.product((0, 1), repeat=len(Bi)):  # which inactive pre-activations are positive
        f = sum((sum(a * x for a, x in zip(r, u)) - t) ** 2 for r, t in zip(Aa, y))
        f += sum(sum(a * x for a, x in zip(r, u)) ** 2 for r, on in zip(Bi, pattern) if on)
        sol = sp.solve([sp.diff(f, x) for x in u], u, dict=True)
        if not sol:
            continue
        point = np.array([sol[0][x] for x in u], dtype=object)
        zb = Bi @ point
        if all((z >= 0) if on else (z <= 0) for z, on in zip(zb, pattern)):
            best = point
            break
    assert best is not None, "no consistent ReLU pattern"
    U = best[None]
    keep = np.ones((1, 3), dtype=object)
    L, c, sw = np.zeros((0, 3), dtype=object), np.zeros(0, dtype=object), np.zeros((1, 0), dtype=object)
    lam, mu, nu = duality.multipliers(Aa, y, L, c, keep, sw, Bi, 0, 0, U)
    g = duality.stationarity(lam, Aa, sw * mu, L, nu, Bi)
    assert all(sp.simplify(x) == 0 for x in g[0]), f"KKT stationarity fails: g = {g[0]}"
    conj = duality.envelope_conjugate(nu, 0, 0, maximum=lambda a, b: np.array([sp.Max(x, z) for x, z in zip(a.ravel(), b.ravel())], dtype=object).reshape(a.shape))
    dual = sum(duality.dual_terms(lam, y, mu, sw, c, conj)[0])
    primal = sum((Aa @ best - y) ** 2) + sum(max(z, 0) ** 2 for z in Bi @ best)
    assert sp.simplify(primal - dual) == 0, f"duality gap {primal - dual} at the exact optimum"
    assert primal > 0


def check_jumprelu_envelope() -> None:
    """Section 2.6: the envelope's geometry, symbolically, and the library's ``_envelope`` exactly at rational points."""
    z, tau, g = sp.symbols("z tau gamma", positive=True)
    a = sp.Symbol("a", positive=True)
    assert sp.solve(sp.Eq(2 * a * tau - a**2, 0), a) == [2 * tau]  # tangent from (tau, 0) touches z^2 at 2 tau
    line = 4 * tau * (z - tau)
    assert sp.expand(z**2 - line) == sp.expand((z - 2 * tau) ** 2)  # line <= z^2, equal at 2 tau
    ramp = (z - tau) ** 2 / (2 * g)
    lin = 4 * tau * z - 4 * tau**2 - 8 * tau**2 * g
    par = z**2 / (1 + 2 * g)
    r1, r2 = tau + 4 * tau * g, 2 * tau + 4 * tau * g
    for left, right, at in ((ramp, lin, r1), (lin, par, r2)):  # C^1 at the breakpoints
        assert sp.simplify((left - right).subs(z, at)) == 0 and sp.simplify(sp.diff(left - right, z).subs(z, at)) == 0
    assert sp.simplify(line - lin - 8 * tau**2 * g) == 0  # smoothing lowers the line piece by 8 tau^2 gamma
    # library _envelope at rational points: value = Moreau envelope (sympy minimum over pieces of e_tau),
    # value <= leak cost z^2 1[z > tau], and nu = e'(z) / 2
    v = sp.Symbol("v", real=True)
    for tau_q, gam_q in ((sp.Rational(1, 2), sp.Rational(1, 10)), (sp.Integer(2), sp.Rational(1, 1000)),
                         (sp.Integer(0), sp.Integer(0))):
        zs = [sp.Rational(k, 8) * max(tau_q, 1) for k in range(-8, 40, 3)]
        val, nu, _ = duality._envelope(np.array(zs, dtype=object), tau_q, gam_q)
        e_tau = [(sp.Integer(0), -sp.oo, tau_q), (4 * tau_q * (v - tau_q), tau_q, 2 * tau_q), (v**2, 2 * tau_q, sp.oo)]
        for zq, vq, nq in zip(zs, val, nu):
            leak = zq**2 if zq > tau_q else 0
            assert vq <= leak, f"envelope above the leak cost at z={zq}"
            if gam_q == 0:
                moreau = min(e.subs(v, zq) for e, lo, hi in e_tau if lo <= zq <= hi)
            else:
                moreau = -max(_sup_on(-(e + (zq - v) ** 2 / (2 * gam_q)), v, lo, hi) for e, lo, hi in e_tau)
            assert sp.simplify(vq - moreau) == 0, f"library envelope {vq} != Moreau envelope {moreau} at z={zq}"
            h = sp.Rational(1, 10**9)
            if gam_q > 0:  # nu = e'/2 (central difference of the exact Moreau envelope is exact on quadratics)
                up = duality._envelope(np.array([zq + h], dtype=object), tau_q, gam_q)[0][0]
                dn = duality._envelope(np.array([zq - h], dtype=object), tau_q, gam_q)[0][0]
                assert abs((up - dn) / (4 * h) - nq) < sp.Rational(1, 10**6), f"nu != e'/2 at z={zq}"


def check_jumprelu_gates() -> None:
    """Section 2.6: each free entry's term in a JumpReLU node (the library's ``_JumpReluRow.parts``) is below both of
    its gate costs for every threshold of the node's interval: symbolically for the active hinge's offset, and
    exactly on a rational grid of ``(y, t0, t1, theta, z)`` for the terms the library builds."""
    from fractions import Fraction as Q

    from gapbound.theory.jumprelu import _JumpReluRow

    y, t1, z = sp.symbols("y t1 z", positive=True)
    off = y + sp.Max(0, t1 - 2 * y)
    # a dropped entry has z <= theta <= t1, so z - off <= t1 - off <= y, hence relu(z - off)^2 <= y^2
    for case in (t1 - 2 * y, 2 * y - t1):  # t1 >= 2y / t1 <= 2y
        c = sp.Symbol("c", nonnegative=True)
        sub = {t1: 2 * y + c} if case == t1 - 2 * y else {t1: 2 * y - c}
        gap = sp.simplify((y - (t1 - off)).subs(sub))
        assert gap.is_nonnegative, f"t1 - offset exceeds y: {gap}"
    grid = [Q(k, 2) for k in range(0, 9)]
    for yq in (Q(1, 2), Q(2)):
        # entry 0 active (target y), entry 1 inactive; the rows themselves do not enter parts()
        prob = _JumpReluRow(np.ones((2, 2)), np.array([float(yq), 0.0]), None, None)
        for t0, t1q in itertools.combinations(grid, 2):
            keep, drop, hinge, dropped, C, _, _ = prob.parts(np.array([[-1.0, -1.0, float(t0), float(t1q)]]))
            for th in (t0, t1q):
                for zq in [Q(k, 4) for k in range(-4, 24)] + [th, th + Q(1, 2**30)]:
                    for t, yt in ((0, yq), (1, Q(0))):
                        arg = zq if yt > 0 else zq - th  # third block of L: z (active) or z - theta (inactive)
                        term = (max(arg - Q(C[0, 4 + t]), Q(0)) ** 2 if hinge[0, t] else Q(0)) + (yt**2 if dropped[0, t] else 0)
                        cost = (zq - yt) ** 2 if zq > th else yt**2
                        assert term <= cost, (f"JumpReLU node term {term} above the gate cost {cost} "
                                              f"(y={yt}, t0={t0}, t1={t1q}, theta={th}, z={zq})")


def check() -> None:
    check_weak_duality()
    check_conjugates()
    check_kkt()
    check_jumprelu_envelope()
    check_jumprelu_gates()


if __name__ == "__main__":
    check()
    print("row QP: ok")
