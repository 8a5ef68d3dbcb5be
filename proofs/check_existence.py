"""Sympy check for proofs/01_existence.md: exact recovery of the witness codes forces W D = I, impossible when M < N.

For symbolic W (N x M), b (N) and D (M x N) the recovery equations of a witness set
are ``(W D s + b)_i = s_i`` on every active coordinate ``i`` of every code ``s`` (an
active coordinate must pass its pre-activation; inactive ones can be gated off).
The check

1. builds those equations from ``W``, ``D``, ``b`` and the codes (by default the
   library's own :func:`gapbound.theory.witness_codes`),
2. verifies that each is the same polynomial as its linear form in ``P = W D``,
3. solves the linear system in ``(P, b)``: it must have the unique solution
   ``P = I``, ``b = 0``,
4. and shows ``W D = I`` impossible: ``det(W D)`` expands to the zero polynomial
   (Cauchy-Binet, rank <= M < N) while ``det(I) = 1``.

Each step raises ``AssertionError`` when it fails: a witness set that does not
pin down ``W D`` (for example without the raised amplitudes) fails step 3, and
``M >= N`` fails step 4 (``det(W D)`` is not identically zero).
"""

from __future__ import annotations

import numpy as np
import sympy as sp


def recovery_equations(codes: np.ndarray, M: int) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix, list[tuple[int, list[int], sp.Expr]]]:
    """``(W, b, D, [(i, s, (W D s + b)_i - s_i)])`` for every active coordinate ``i`` of every code ``s``."""
    N = codes.shape[1]
    W = sp.Matrix(N, M, lambda i, j: sp.Symbol(f"w{i}_{j}"))
    b = sp.Matrix(N, 1, lambda i, _: sp.Symbol(f"b{i}"))
    D = sp.Matrix(M, N, lambda i, j: sp.Symbol(f"d{i}_{j}"))
    eqs = []
    for code in codes:
        s = [sp.nsimplify(v) for v in code]
        z = W * (D * sp.Matrix(s)) + b
        eqs += [(i, s, z[i] - s[i]) for i in range(N) if s[i] != 0]
    return W, b, D, eqs


def check(M: int = 2, N: int = 3, K: int = 2, codes: np.ndarray | None = None, design: str = "exact") -> None:
    """Raise AssertionError unless exact recovery of the witness codes is impossible for every (W, b) when M < N."""
    if codes is None:
        from gapbound.theory import witness_codes

        codes = witness_codes(N, K, design)
    W, b, D, eqs = recovery_equations(np.asarray(codes), M)
    WD = W * D
    P = sp.Matrix(N, N, lambda i, j: sp.Symbol(f"p{i}_{j}"))
    to_WD = {P[i, j]: WD[i, j] for i in range(N) for j in range(N)}
    lin = []
    for i, s, eq in eqs:
        li = sum(P[i, j] * s[j] for j in range(N)) + b[i] - s[i]
        assert sp.expand(eq - li.subs(to_WD)) == 0, f"equation for coordinate {i} is not linear in W D"
        lin.append(li)
    sol = sp.solve(lin, list(P) + list(b), dict=True)
    assert len(sol) == 1, "the recovery equations have no or several solutions"
    sol = sol[0]
    free = [v for v in list(P) + list(b) if v not in sol]
    assert not free, f"the witness set does not pin down W D and b (free: {free[:4]})"
    for i in range(N):
        assert sol[b[i]] == 0, f"recovery does not force b_{i} = 0"
        for j in range(N):
            assert sol[P[i, j]] == (1 if i == j else 0), f"recovery does not force (W D)_{i}{j} = {int(i == j)}"
    # W D = I needs det(W D) = 1; Cauchy-Binet makes det(W D) the zero polynomial when M < N
    assert sp.expand(WD.det()) == 0, "det(W D) is not identically 0: W D = I is satisfiable (M >= N)"


if __name__ == "__main__":
    check()
    check(M=2, N=4, K=3)
    check(M=2, N=4, K=2, design="pairs")
    print("existence: ok")
