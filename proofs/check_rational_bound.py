"""Exact rational free-gate bound for a small rational dictionary, against gapbound.theory.lower_bound.

For the 'linear-gated' class with nothing dropped, each row's value is a
least-squares residual, computed here exactly in rationals. With drops, the
row value is the minimum over drop sets of drops + least squares, also exact.
The certified float bound must be <= the exact value and within 1e-9 of it.
"""

from __future__ import annotations

import itertools

import numpy as np
import sympy as sp


def exact_row_values(D: sp.Matrix, codes: list[list[int]]) -> list[sp.Rational]:
    """Exact min over drop sets Z of sum_Z s^2 + LS residual of the kept active codes, per row."""
    N = D.shape[1]
    out = []
    for i in range(N):
        act = [c for c in codes if c[i] > 0]
        rows = [list(D * sp.Matrix(c)) + [1] for c in act]
        y = [c[i] for c in act]
        best = None
        for k in range(len(act) + 1):
            cheapest = sum(sorted(v * v for v in y)[:k])
            if best is not None and cheapest >= best:
                break
            for Z in itertools.combinations(range(len(act)), k):
                keep = [t for t in range(len(act)) if t not in Z]
                A = sp.Matrix([rows[t] for t in keep])
                yy = sp.Matrix([y[t] for t in keep])
                G = A.T * A
                if G.rank() < G.shape[0]:
                    val = sum(y[t] ** 2 for t in Z)  # underdetermined: residual can be 0
                else:
                    u = G.LUsolve(A.T * yy)
                    r = A * u - yy
                    val = (r.T * r)[0] + sum(y[t] ** 2 for t in Z)
                best = val if best is None else min(best, val)
        out.append(sp.nsimplify(best))
    return out


def check() -> None:
    from gapbound.theory import lower_bound, witness_codes

    D = sp.Matrix([[1, 0, 1, 1, 2], [0, 1, 1, -1, 1], [1, 1, 0, 2, -1]]) / 2  # rational, M=3 < N=5
    codes = witness_codes(5, 2).astype(int).tolist()
    exact = exact_row_values(D, codes)
    total = sum(exact)
    assert total > 0
    res = lower_bound(np.array(D.tolist(), dtype=float), np.array(codes, dtype=float))
    for row, ex in zip(res.rows, exact):
        assert row.bound <= float(ex) + 1e-15, (row.row, row.bound, ex)
        assert row.bound >= float(ex) - 1e-9, (row.row, row.bound, ex)
    assert res.bound <= float(total)


if __name__ == "__main__":
    check()
    print("rational bound: ok")
