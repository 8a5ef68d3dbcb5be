"""Sympy check for proofs/01_existence.md: exact recovery forces W D = I, impossible when rank D < N.

Symbolic W (N x M), b, D (M x N) for small sizes; the recovery equations for
codes a e_i (a in {1, 2}) and, with exactly-K supports, raised amplitudes,
are linear in (W, b) once the gate is 'pass' on active entries. We check that
they imply b_i = 0, (W D)_ii = 1, (W D)_ij = 0, i.e. W D = I_N, and that
rank(W D) <= M < N then makes them inconsistent.
"""

from __future__ import annotations

import itertools

import sympy as sp


def _recovery_equations(M: int, N: int, K: int):
    W = sp.Matrix(N, M, lambda i, j: sp.Symbol(f"w{i}_{j}"))
    b = sp.Matrix(N, 1, lambda i, _: sp.Symbol(f"b{i}"))
    D = sp.Matrix(M, N, lambda i, j: sp.Symbol(f"d{i}_{j}"))
    eqs = []
    for S in itertools.combinations(range(N), K):
        base = [1] * K
        for amps in [base] + [[2 if t == r else 1 for t in range(K)] for r in range(K)]:
            s = sp.zeros(N, 1)
            for idx, a in zip(S, amps):
                s[idx] = a
            z = W * (D * s) + b
            # active coordinates must pass their pre-activation and equal s
            eqs += [z[i] - s[i] for i in S]
    return W, b, D, eqs


def check(M: int = 2, N: int = 3, K: int = 2) -> None:
    """Raise AssertionError unless recovery of every exactly-K code implies W D = I and b = 0."""
    W, b, D, eqs = _recovery_equations(M, N, K)
    WD = W * D
    # unknowns: the entries of W D and b appear linearly; substitute P = W D
    P = sp.Matrix(N, N, lambda i, j: sp.Symbol(f"p{i}_{j}"))
    sub = {WD[i, j]: P[i, j] for i in range(N) for j in range(N)}
    lin = [sp.expand(sp.expand(e).subs({}) ) for e in eqs]
    # express each equation in P and b: z_i = sum_j P_ij s_j + b_i
    lin = []
    for S in itertools.combinations(range(N), K):
        for r in [None] + list(range(K)):
            s = [0] * N
            for t, idx in enumerate(S):
                s[idx] = 2 if t == r else 1
            for i in S:
                lin.append(sum(P[i, j] * s[j] for j in range(N)) + b[i] - s[i])
    sol = sp.solve(lin, list(P) + list(b), dict=True)
    assert len(sol) == 1, sol
    sol = sol[0]
    for i in range(N):
        assert sol[b[i]] == 0
        for j in range(N):
            assert sol[P[i, j]] == (1 if i == j else 0), (i, j, sol[P[i, j]])
    # W D = I is impossible: det(W D) = 0 identically when M < N (Cauchy-Binet: rank <= M)
    assert M < N
    assert sp.expand((W * D).det()) == 0
    del sub


if __name__ == "__main__":
    check()
    check(M=2, N=4, K=3)
    print("existence: ok")
