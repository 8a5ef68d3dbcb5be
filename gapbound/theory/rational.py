"""Exact linear algebra on ``fractions.Fraction`` (used by the exact multiplier correction and the exact verifier)."""

from __future__ import annotations

from fractions import Fraction


def rational_solve(A: list[list[Fraction]], b: list[Fraction]) -> list[Fraction] | None:
    """A solution ``x`` of ``A x = b`` (``A``: m x n, free variables 0) by exact Gauss-Jordan; ``None`` if inconsistent."""
    m, n = len(A), len(A[0]) if A else 0
    rows = [list(A[i]) + [b[i]] for i in range(m)]
    pivots, r = [], 0
    for col in range(n):
        p = next((i for i in range(r, m) if rows[i][col] != 0), None)
        if p is None:
            continue
        rows[r], rows[p] = rows[p], rows[r]
        for i in range(m):
            if i != r and rows[i][col] != 0:
                f = rows[i][col] / rows[r][col]
                rows[i] = [a - f * c for a, c in zip(rows[i], rows[r])]
        pivots.append(col)
        r += 1
    if any(rows[i][n] != 0 for i in range(r, m)):
        return None
    x = [Fraction(0)] * n
    for i, col in enumerate(pivots):
        x[col] = rows[i][n] / rows[i][col]
    return x
