"""Sympy checks for proofs/02_witness_bound.md: per-row reduction, weak duality and KKT of the row problem.

1. The pass-or-zero gate: for any z, min((z - s)^2, s^2) <= cost of outputting z or 0,
   and an inactive coordinate can cost 0 (free gate) while ReLU pays relu(z)^2.
2. Conjugate inequalities used for weak duality: v^2 >= 2 l v - l^2 and
   relu(v)^2 >= 2 m v - m^2 for m >= 0.
3. KKT of the least-squares row problem on a small symbolic instance: the
   dual built from the optimal residual attains the primal value (zero gap).
"""

from __future__ import annotations

import sympy as sp


def check_conjugates() -> None:
    v, l, m = sp.symbols("v l m", real=True)
    assert sp.expand(v**2 - (2 * l * v - l**2) - (v - l) ** 2) == 0  # gap is a square
    # relu(v)^2 >= 2 m v - m^2 for m >= 0: on v >= 0 it is the square (v-m)^2, on v < 0 the rhs is <= -m^2 < 0 ... <= 0
    mp = sp.Symbol("mp", nonnegative=True)
    vn = sp.Symbol("vn", negative=True)
    assert sp.simplify(2 * mp * vn - mp**2) .is_nonpositive


def check_gate_cases() -> None:
    """Output z costs (z-s)^2, output 0 costs s^2: both are >= min((z-s)^2, s^2) (min of the two)."""
    z = sp.Symbol("z", real=True)
    s = sp.Symbol("s", positive=True)
    costs = [(z - s) ** 2, (0 - s) ** 2]
    lower = sp.Min(*costs)
    for c in costs:
        assert sp.Min(c, lower) == lower  # lower is the smaller of the two by construction
    # inactive (s = 0): output 0 costs exactly 0, output z costs z^2 >= relu(z)^2
    assert sp.expand(z**2 - sp.Max(z, 0) ** 2).subs(z, -3) >= 0 and sp.expand(z**2 - sp.Max(z, 0) ** 2).subs(z, 2) == 0


def check_kkt_small_instance() -> None:
    """Row problem min_{w,beta} sum_t (a_t.(w,beta) - y_t)^2 on exact rationals; dual at the residual is tight."""
    A = sp.Matrix([[1, 0, 1], [2, 0, 1], [1, 1, 1], [1, -1, 1], [sp.Rational(1, 2), 1, 1]])
    y = sp.Matrix([1, 2, 1, 1, 1])
    u = (A.T * A).LUsolve(A.T * y)
    r = A * u - y
    primal = (r.T * r)[0]
    g = A.T * r
    assert g == sp.zeros(3, 1)  # stationarity: A^T lambda = 0 with lambda = residual
    dual = (-2 * r.T * y - r.T * r)[0]
    assert sp.simplify(primal - dual) == 0
    assert primal > 0  # the rows are inconsistent, so the bound is positive


def check_jumprelu_envelope() -> None:
    """Section 2.6: the JumpReLU leak envelope, its conjugate and its Moreau smoothing, symbolically."""
    z, tau, mu, g = sp.symbols("z tau mu gamma", positive=True)
    # the tangent from (tau, 0) to z^2 touches at z = 2 tau with slope 4 tau
    a = sp.Symbol("a", positive=True)
    assert sp.solve(sp.Eq(2 * a * tau - a**2, 0), a) == [2 * tau]
    line = 4 * tau * (z - tau)
    assert sp.expand(z**2 - line) == sp.expand((z - 2 * tau) ** 2)  # line <= z^2 everywhere, equal at 2 tau
    # the line stays below the leak cost z^2 on (tau, 2 tau], and is 0 at tau: e <= z^2 1[z > tau]
    assert line.subs(z, tau) == 0
    # conjugate e*(mu) = max(mu tau, mu^2/4): sup over the flat/line part is at z = tau (value mu tau)
    # when mu <= 4 tau, and at z = mu/2 on the parabola (value mu^2/4) when mu >= 4 tau
    assert sp.simplify(sp.Max(mu * tau, mu**2 / 4).subs(mu, 4 * tau) - 4 * tau**2) == 0
    assert sp.simplify((mu * z - z**2).subs(z, mu / 2) - mu**2 / 4) == 0
    # Moreau envelope pieces (prox point v) are continuous at the breakpoints r1 = tau + 4 tau gamma and
    # r2 = 2 tau + 4 tau gamma, and smoothing costs exactly 8 tau^2 gamma on the line part
    ramp = (z - tau) ** 2 / (2 * g)
    lin = 4 * tau * (z - 4 * tau * g - tau) + (4 * tau * g) ** 2 / (2 * g)
    v = z / (1 + 2 * g)
    par = v**2 + (z - v) ** 2 / (2 * g)
    r1, r2 = tau + 4 * tau * g, 2 * tau + 4 * tau * g
    assert sp.simplify(ramp.subs(z, r1) - lin.subs(z, r1)) == 0
    assert sp.simplify(lin.subs(z, r2) - par.subs(z, r2)) == 0
    assert sp.simplify(sp.diff(lin, z) - sp.diff(par, z).subs(z, r2)) == 0
    assert sp.simplify(line - lin - 8 * tau**2 * g) == 0
    assert sp.simplify(z**2 - par - z**2 * 2 * g / (1 + 2 * g)) == 0  # smoothing only lowers the parabola
    # conjugate of the smoothed envelope: e*(mu) + gamma mu^2 / 2 (Moreau); with mu = 2 nu this is
    # max(2 nu tau, nu^2) + 2 gamma nu^2, the term used in gapbound.theory._certify_batch
    nu = sp.Symbol("nu", positive=True)
    assert sp.simplify((mu**2 / 4 + g * mu**2 / 2).subs(mu, 2 * nu) - (nu**2 + 2 * g * nu**2)) == 0


def check() -> None:
    check_jumprelu_envelope()
    check_conjugates()
    check_gate_cases()
    check_kkt_small_instance()


if __name__ == "__main__":
    check()
    print("row QP: ok")
