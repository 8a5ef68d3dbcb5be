"""The exact optimum of one certified subproblem (rational arithmetic), for :mod:`gapbound.theory.exact`."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from .duality import Certificate
from .rational import rational_solve


def _q(a: Any) -> np.ndarray:
    """Exact rational copy of a float array (object dtype); ``inf`` (a hard-constraint marker) becomes 0."""
    arr = np.asarray(a, dtype=np.float64)
    out = np.empty(arr.shape, dtype=object)
    for idx, v in np.ndenumerate(arr):
        out[idx] = Fraction(0) if np.isinf(v) else Fraction(v)
    return out


def _row_c(c: np.ndarray, z: int) -> np.ndarray:
    """Subproblem ``z``'s hinge offsets (``c`` is shared by the batch or one row per subproblem)."""
    return c if c.ndim == 1 else c[z]


class _Subproblem:
    """One certified subproblem in exact arithmetic: ``f(u) = sum keep (a.u - y)^2 + sum w relu(l.u - c)^2 + sum relu(b.u)^2``,
    subject to ``l.u <= c`` for the hard rows (``sw = inf``)."""

    def __init__(self, c: Certificate, qc: dict, z: int):
        self.A, self.y, self.L, self.c, self.B = qc["Aa"], qc["y"], qc["L"], _row_c(qc["c"], z), qc["Bi"]
        self.keep = [int(v) for v in c.keep[z]]
        self.hard = [j for j in range(len(self.c)) if np.isinf(c.sw[z, j])]
        sw = _q(c.sw[z])
        self.sw, self.w = sw, sw * sw
        self.inactive = not np.isinf(c.tau)  # tau = 0: the inactive entries' relu(b.u)^2 terms
        self.p = self.A.shape[1]

    def _terms(self):
        """(row, target, weight, kind) for every term: kind 0 square, 1 hinge (the inactive entries: target 0, weight 1)."""
        for t in range(len(self.y)):
            if self.keep[t]:
                yield self.A[t], self.y[t], Fraction(1), 0
        for j in range(len(self.c)):
            if self.w[j]:
                yield self.L[j], self.c[j], self.w[j], 1
        if self.inactive:
            for t in range(len(self.B)):
                yield self.B[t], Fraction(0), Fraction(1), 1

    def value(self, u: list[Fraction]) -> Fraction:
        total = Fraction(0)
        for row, tgt, w, kind in self._terms():
            z = sum(a * b for a, b in zip(row, u))
            if kind == 0:
                total += (z - tgt) ** 2
            else:
                total += w * max(z - tgt, Fraction(0)) ** 2
        return total

    def minimise(self, u0: list[Fraction], iters: int = 30) -> list[Fraction] | None:
        """Exact minimiser by active-set Newton from ``u0``: accepted only with an exactly zero gradient
        (hard rows: feasible, with an exactly zero Lagrangian gradient and non-negative multipliers)."""
        if self.hard:
            return self._minimise_constrained(u0, iters)
        u = u0
        for _ in range(iters):
            H, h, _ = self._newton_system(u)
            x = rational_solve(H, h)
            if x is None:
                return None
            if self.gradient_is_zero(x):
                return x
            u = x
        return None

    def _minimise_constrained(self, u0: list[Fraction], iters: int) -> list[Fraction] | None:
        """Primal active-set method: KKT of the piecewise-quadratic objective with the active hard rows as equalities.

        Starts from the rows active at ``u0`` (float tolerance); drops the row of the most negative
        multiplier, adds the most violated row, or re-reads the pieces, until a KKT point is exact.
        """
        scale = max((abs(v) for v in u0), default=Fraction(1)) + 1
        act = [j for j in self.hard if sum(a * b for a, b in zip(self.L[j], u0)) >= self.c[j] - scale * Fraction(1, 10**9)]
        u = u0
        for _ in range(iters):
            H, h, pattern = self._newton_system(u)
            n_e = len(act)
            K = [H[i] + [self.L[j][i] for j in act] for i in range(self.p)]
            K += [list(self.L[j]) + [Fraction(0)] * n_e for j in act]
            x = rational_solve(K, h + [self.c[j] for j in act])
            if x is None:
                return None
            u_new, m = x[: self.p], x[self.p:]
            viol = {j: sum(a * b for a, b in zip(self.L[j], u_new)) - self.c[j] for j in self.hard}
            if m and min(m) < 0:
                act.pop(min(range(n_e), key=lambda i: m[i]))
            elif max(viol.values(), default=Fraction(0)) > 0:
                act.append(max(viol, key=lambda j: viol[j]))
            elif self._newton_system(u_new)[2] == pattern:
                return u_new
            u = u_new
        return None

    def _newton_system(self, u: list[Fraction]) -> tuple[list[list[Fraction]], list[Fraction], tuple]:
        """``(H, h, pieces)``: the objective is ``u.H u / 2 - h.u + const`` on the pieces active at ``u``."""
        H = [[Fraction(0)] * self.p for _ in range(self.p)]
        h = [Fraction(0)] * self.p
        pattern = []
        for row, tgt, w, kind in self._terms():
            z = sum(a * b for a, b in zip(row, u))
            if kind == 0:
                a2, b1, piece = w, -2 * tgt * w, 0
            else:
                piece = int(z > tgt)
                a2, b1 = (w, -2 * tgt * w) if piece else (Fraction(0), Fraction(0))
            pattern.append(piece)
            if a2 or b1:
                for i in range(self.p):
                    if row[i]:
                        h[i] -= b1 * row[i]
                        for j in range(self.p):
                            H[i][j] += 2 * a2 * row[i] * row[j]
        return H, h, tuple(pattern)

    def gradient_is_zero(self, u: list[Fraction]) -> bool:
        g = [Fraction(0)] * self.p
        for row, tgt, w, kind in self._terms():
            z = sum(a * b for a, b in zip(row, u))
            if kind == 0:
                d = 2 * (z - tgt)
            else:
                d = 2 * w * max(z - tgt, Fraction(0))
            for i in range(self.p):
                g[i] += d * row[i]
        return all(v == 0 for v in g)
