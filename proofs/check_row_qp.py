"""Sympy checks for proofs/02_witness_bound.md, run on the library's own formulas.

1. ``check_weak_duality``: for symbolic ``u``, data and multipliers, the library's
   :func:`~gapbound.theory.duality.dual_terms` and :func:`~gapbound.theory.duality.stationarity`
   satisfy ``f(u) - (2 u.g + sum(dual_terms)) = sum of per-term gaps``, each gap proven
   non-negative (a square, or a product of signed factors on each branch of the ReLU).
2. ``check_conjugates``: the conjugates used are suprema over *all* v, computed
   exactly by sympy on every piece of the function: ``sup_v [2 l v - v^2] = l^2``, and
   for the ReLU class's inactive-entry term ``sup_v [2 nu v - relu(v)^2]`` equals the library's
   :func:`~gapbound.theory.duality.envelope_conjugate` for symbolic ``nu >= 0``; the library's
   ``_envelope`` is ``relu(z)^2`` with ``nu = relu(z)`` (half its derivative) at rational points.
3. ``check_kkt``: on an exact rational ReLU row problem, the exact minimiser (found
   by enumerating the ReLU patterns) with the library's
   :func:`~gapbound.theory.duality.multipliers` has ``g = 0`` exactly and zero duality gap.
4. ``check_jumprelu_gates``: the JumpReLU branch and bound's free-entry terms (``_JumpReluRow.parts``) are
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
    y, c = sp.symbols("y c", real=True)
    lam = sp.Symbol("lam", real=True)
    mu, sw, nu = sp.symbols("mu sw nu", nonnegative=True)
    conj = duality.envelope_conjugate(_obj([nu]))
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
    e_v = sp.Symbol("E")  # relu(vb)^2, the inactive term's value at vb (its gap E - (2 nu vb - conj) is Fenchel-Young, check 2)
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


def check_conjugates() -> None:
    """Conjugates as suprema over all v: the square's, and ``relu(v)^2``'s against the library formula;
    the library's inactive-entry term ``_envelope`` at rational points."""
    v, lam = sp.Symbol("v", real=True), sp.Symbol("lam", real=True)
    assert sp.simplify(_sup_on(2 * lam * v - v**2, v, -sp.oo, sp.oo) - lam**2) == 0
    nu = sp.Symbol("nu", nonnegative=True)
    # relu(v)^2 in two pieces: 0 on (-inf, 0], v^2 on [0, inf)
    sup = sp.Max(_sup_on(2 * nu * v, v, -sp.oo, sp.Integer(0)), _sup_on(2 * nu * v - v**2, v, sp.Integer(0), sp.oo))
    lib = duality.envelope_conjugate(nu)
    assert sp.simplify(sup - lib) == 0, f"conjugate wrong: {lib} vs sup {sup}"
    for nq in (sp.Integer(0), sp.Rational(1, 3), sp.Integer(5)):  # the same at rational points
        sup_q = max(sp.Integer(0), _sup_on(2 * nq * v - v**2, v, sp.Integer(0), sp.oo))
        assert sp.simplify(sup_q - duality.envelope_conjugate(nq)) == 0, f"conjugate wrong at nu={nq}"
    zs = [sp.Rational(k, 8) for k in range(-8, 40, 3)]
    val, nus, _ = duality._envelope(np.array(zs, dtype=object))
    for zq, vq, nq in zip(zs, val, nus):
        assert vq == max(zq, 0) ** 2 and nq == max(zq, 0), f"inactive term wrong at z={zq}: {vq}, nu {nq}"


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
    lam, mu, nu = duality.multipliers(Aa, y, L, c, keep, sw, Bi, 0, U)
    g = duality.stationarity(lam, Aa, sw * mu, L, nu, Bi)
    assert all(sp.simplify(x) == 0 for x in g[0]), f"KKT stationarity fails: g = {g[0]}"
    conj = duality.envelope_conjugate(nu)
    dual = sum(duality.dual_terms(lam, y, mu, sw, c, conj)[0])
    primal = sum((Aa @ best - y) ** 2) + sum(max(z, 0) ** 2 for z in Bi @ best)
    assert sp.simplify(primal - dual) == 0, f"duality gap {primal - dual} at the exact optimum"
    assert primal > 0


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
    check_jumprelu_gates()


if __name__ == "__main__":
    check()
    print("row QP: ok")
