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


def check() -> None:
    check_conjugates()
    check_gate_cases()
    check_kkt_small_instance()


if __name__ == "__main__":
    check()
    print("row QP: ok")
