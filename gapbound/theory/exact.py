"""Exact re-verification of a certified bound in rational arithmetic (``fractions.Fraction``).

Every float64 number is a rational, so the witness inputs, the multipliers and
every certified component of :class:`~gapbound.theory.duality.Certificate` can
be re-checked without rounding. :func:`verify_exact` checks, for a
:class:`~gapbound.theory.bounds.BoundResult` made with ``keep_certificates=True``:

1. *inputs*: every certificate's rows are the witness inputs ``fl(D s)`` (within
   the rounding of one dot product of ``D s``) with a bias column of ones;
2. *relaxation*: for ``"linear-gated"`` and ``"relu"``, the subproblem is the
   one of the class (linear-gated: no inactive term, no constraint; ReLU: ``relu(z)^2`` inactive
   terms, the hard constraint ``z <= 0`` exactly on dropped entries, ``relu(z - y)^2`` exactly on
   free ones); the JumpReLU leaves' threshold and leak
   constraints are not re-derived here (``proofs/02_witness_bound.md`` 2.6);
3. *components*: ``mu, nu >= 0``, ``drops_lo <= drop cost``, ``dual_lo <= dual``
   (the dual recomputed from the multipliers with this module's own formulas),
   ``g_hi >= |g|``, ``G - sig_lo I`` positive semidefinite (exact LDL^T), ``y_hi >= |y_kept|``,
   ``U_hi >= (y_hi + sqrt(cap - drops_lo)) / sqrt(sig_lo)`` and the certified value below
   the bound these components give;
4. *optimum* (``check_optimum``): the exact minimiser ``u*`` of each subproblem
   (an exact active-set Newton iteration on the piecewise-quadratic objective,
   accepted only when its gradient is exactly zero; with hard rows, a primal active-set
   method accepted only at an exact KKT point), and
   ``value <= drops + dual + 2 u*.g <= drops + f(u*)``: certified float bound <=
   exact dual value <= exact optimum (``n_optimum_trivial``: the value is at most the exact drop
   cost, which every point of the subproblem pays);
5. *coverage* (``"linear-gated"``, ``"relu"``): every drop set of every row is
   covered by a certified subproblem (ReLU: a branch-and-bound node whose kept and dropped
   entries agree with it) not below the row bound, or costs at least the row bound by its
   drops alone; the total is at most the exact sum of the rows.

Each failed check adds one line to ``ExactReport.failures``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from .bounds import BoundResult, normalise_scale
from .duality import Certificate
from .rational import rational_solve
from .witness import as_dictionary64, check_codes

_U = Fraction(1, 2**53)


def _q(a: Any) -> np.ndarray:
    """Exact rational copy of a float array (object dtype); ``inf`` (a hard-constraint marker) becomes 0."""
    arr = np.asarray(a, dtype=np.float64)
    out = np.empty(arr.shape, dtype=object)
    for idx, v in np.ndenumerate(arr):
        out[idx] = Fraction(0) if np.isinf(v) else Fraction(v)
    return out


def _gamma(n: int) -> Fraction:
    return n * _U / (1 - n * _U)


def _psd(G: np.ndarray) -> bool:
    """Exact test that a symmetric rational matrix is positive semidefinite (LDL^T with pivoting on zeros)."""
    A = [list(r) for r in G]
    n = len(A)
    for k in range(n):
        piv = A[k][k]
        if piv < 0:
            return False
        if piv == 0:
            if any(A[k][j] != 0 for j in range(k + 1, n)):
                return False
            continue
        for i in range(k + 1, n):
            f = A[i][k] / piv
            if f:
                for j in range(k + 1, n):
                    A[i][j] -= f * A[k][j]
    return True


def _envelope_piece(z: Fraction, tau: Fraction, gamma: Fraction) -> tuple[Fraction, Fraction, Fraction, int]:
    """Coefficients ``(a, b, c)`` of the quadratic ``a z^2 + b z + c`` equal to the smoothed envelope near ``z``, and the piece.

    Pieces (``proofs/02_witness_bound.md`` 2.6): 0 up to ``tau``; ``(z - tau)^2 / (2 gamma)`` up to
    ``r1 = tau + 4 tau gamma``; ``4 tau z - 4 tau^2 - 8 tau^2 gamma`` up to ``r2 = 2 tau + 4 tau gamma``;
    ``z^2 / (1 + 2 gamma)`` beyond.
    """
    r1, r2 = tau + 4 * tau * gamma, 2 * tau + 4 * tau * gamma
    if z <= tau:
        return Fraction(0), Fraction(0), Fraction(0), 0
    if z <= r1 and gamma > 0:
        return 1 / (2 * gamma), -tau / gamma, tau * tau / (2 * gamma), 1
    if z <= r2 and tau > 0:
        return Fraction(0), 4 * tau, -4 * tau * tau - 8 * tau * tau * gamma, 2
    return 1 / (1 + 2 * gamma), Fraction(0), Fraction(0), 3


def _conjugate(nu: Fraction, tau: Fraction, gamma: Fraction) -> Fraction:
    """``sup_v [2 nu v - e(v)]`` for the smoothed envelope (``nu >= 0``)."""
    return max(2 * nu * tau, nu * nu) + 2 * gamma * nu * nu


class _Subproblem:
    """One certified subproblem in exact arithmetic: ``f(u) = sum keep (a.u - y)^2 + sum w relu(l.u - c)^2 + sum e(b.u)``,
    subject to ``l.u <= c`` for the hard rows (``sw = inf``)."""

    def __init__(self, c: Certificate, qc: dict, z: int):
        self.A, self.y, self.L, self.c, self.B = qc["Aa"], qc["y"], qc["L"], qc["c"], qc["Bi"]
        self.keep = [int(v) for v in c.keep[z]]
        self.hard = [j for j in range(len(self.c)) if np.isinf(c.sw[z, j])]
        sw = _q(c.sw[z])
        self.sw, self.w = sw, sw * sw
        self.tau = None if np.isinf(c.tau) else Fraction(c.tau)
        self.gamma = Fraction(c.gamma)
        self.p = self.A.shape[1]

    def _terms(self):
        """(row, target, weight, kind) for every term: kind 0 square, 1 hinge, 2 envelope."""
        for t in range(len(self.y)):
            if self.keep[t]:
                yield self.A[t], self.y[t], Fraction(1), 0
        for j in range(len(self.c)):
            if self.w[j]:
                yield self.L[j], self.c[j], self.w[j], 1
        if self.tau is not None:
            for t in range(len(self.B)):
                yield self.B[t], Fraction(0), Fraction(1), 2

    def value(self, u: list[Fraction]) -> Fraction:
        total = Fraction(0)
        for row, tgt, w, kind in self._terms():
            z = sum(a * b for a, b in zip(row, u))
            if kind == 0:
                total += (z - tgt) ** 2
            elif kind == 1:
                total += w * max(z - tgt, Fraction(0)) ** 2
            else:
                a, b, c0, _ = _envelope_piece(z, self.tau, self.gamma)
                total += a * z * z + b * z + c0
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
            elif kind == 1:
                piece = int(z > tgt)
                a2, b1 = (w, -2 * tgt * w) if piece else (Fraction(0), Fraction(0))
            else:
                a2, b1, _, piece = _envelope_piece(z, self.tau, self.gamma)
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
            elif kind == 1:
                d = 2 * w * max(z - tgt, Fraction(0))
            else:
                a, b, _, _ = _envelope_piece(z, self.tau, self.gamma)
                d = 2 * a * z + b
            for i in range(self.p):
                g[i] += d * row[i]
        return all(v == 0 for v in g)


@dataclass
class ExactReport:
    """Outcome of :func:`verify_exact`: ``ok`` is ``not failures``."""

    failures: list[str] = field(default_factory=list)
    n_subproblems: int = 0
    n_optimum_checked: int = 0
    n_optimum_unresolved: int = 0
    n_optimum_trivial: int = 0
    n_unresolved_with_exact_g: int = 0
    n_rows_covered: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures


def _check_inputs(rep: ExactReport, cert: Certificate, qc: dict, Dq: np.ndarray, Sq: np.ndarray, Dabs: np.ndarray) -> None:
    M, N = Dq.shape
    for name, idx in (("Aa", cert.tag.get("active")), ("Bi", cert.tag.get("inactive"))):
        X = qc[name]
        if idx is None or len(X) == 0:
            continue
        if len(idx) != len(X) or any(v != 1 for v in X[:, M]):
            rep.failures.append(f"row {cert.tag.get('row')}: {name} is not [witness inputs, 1]")
            continue
        exact = Sq[idx] @ Dq.T
        tol = _gamma(N + 1) * (Sq[idx] @ Dabs.T)
        if (abs(X[:, :M] - exact) > tol).any():
            rep.failures.append(f"row {cert.tag.get('row')}: {name} differs from the witness inputs D s "
                                "by more than one dot product's rounding")


def _check_relaxation(rep: ExactReport, cert: Certificate, encoder_class: str) -> None:
    n = len(cert.y)
    row = cert.tag.get("row")
    keep, drop = cert.keep, cert.dropped
    if encoder_class == "linear-gated":  # drop enumeration: every entry kept or dropped, no constraint
        ok = np.array_equal(cert.L[:n], -cert.Aa) and np.array_equal(cert.L[n:2 * n], cert.Aa) and len(cert.L) == 2 * n
        ok = ok and np.isinf(cert.tau) and not cert.sw.any() and np.array_equal(drop, 1.0 - keep)
    else:  # relu branch and bound: inactive relu(z)^2; dropped: hard z <= 0; free: relu(z - y)^2; kept: (z - y)^2
        free = 1.0 - keep - drop
        ok = (len(cert.L) == 2 * n and np.array_equal(cert.L[:n], cert.Aa) and np.array_equal(cert.L[n:], cert.Aa)
              and not cert.c[:n].any() and np.array_equal(cert.c[n:], cert.y) and cert.tau == 0.0 and cert.gamma == 0.0)
        ok = ok and bool(np.isin(keep, (0.0, 1.0)).all() and np.isin(drop, (0.0, 1.0)).all() and (free >= 0).all())
        ok = ok and np.array_equal(np.isinf(cert.sw[:, :n]), drop > 0) and not cert.sw[:, :n][drop == 0].any()
        ok = ok and np.array_equal(cert.sw[:, n:], free)
    if not ok:
        rep.failures.append(f"row {row}: subproblem is not the {encoder_class} relaxation")


def _check_exact_multipliers(rep: ExactReport, where: str, mults: tuple, keep: np.ndarray, y: np.ndarray,
                             sw: np.ndarray, c: np.ndarray, tau: Fraction | None, gamma: Fraction, Aa: np.ndarray,
                             L: np.ndarray, Bi: np.ndarray, hard: np.ndarray) -> tuple[Fraction, np.ndarray]:
    """Check exactly corrected multipliers ``(lam, sw mu, nu)``: signs, support, ``g = 0``; return their dual and g."""
    lam, m, nu = (np.array(v, dtype=object) for v in mults)
    nu = nu[: len(Bi)]
    if any(v < 0 for v in m) or any(v < 0 for v in nu):
        rep.failures.append(f"{where}: negative corrected multiplier")
    if (any(lam[t] != 0 for t in range(len(lam)) if keep[t] == 0)
            or any(m[j] != 0 for j in range(len(m)) if sw[j] == 0 and not hard[j])):
        rep.failures.append(f"{where}: corrected multiplier on a term that is not in the subproblem")
    g = lam @ Aa + m @ L + (nu @ Bi if len(nu) else 0 * lam @ Aa)
    if any(v != 0 for v in g):
        rep.failures.append(f"{where}: corrected multipliers do not make g exactly 0")
    dual = (sum(-2 * lam * y - lam * lam, Fraction(0))
            + sum(((0 if hard[j] else -(m[j] / sw[j]) ** 2) - 2 * m[j] * c[j] for j in range(len(m)) if m[j] != 0),
                  Fraction(0))
            - sum((_conjugate(v, tau, gamma) for v in nu), Fraction(0)))
    return dual, g


def _check_components(rep: ExactReport, cert: Certificate, qc: dict, check_optimum: bool) -> list[Fraction]:
    """Exact checks of one batch; returns the rational certified values."""
    Aa, y, L, c, Bi = qc["Aa"], qc["y"], qc["L"], qc["c"], qc["Bi"]
    tau = None if np.isinf(cert.tau) else Fraction(cert.tau)
    gamma = Fraction(cert.gamma)
    Bi_used = Bi if tau is not None else Bi[:0]
    row = cert.tag.get("row")
    values = []
    for z in range(len(cert.keep)):
        rep.n_subproblems += 1
        keep, dropped = _q(cert.keep[z]), _q(cert.dropped[z])
        lam, mu, sw = _q(cert.lam[z]), _q(cert.mu[z]), _q(cert.sw[z])
        hard = np.isinf(cert.sw[z])  # hard constraint rows: mu is the multiplier itself, no quadratic term
        m = np.where(hard, mu, sw * mu)
        nu = _q(cert.nu[z]) if tau is not None else np.empty(0, dtype=object)
        where = f"row {row} subproblem {z} (drops {np.flatnonzero(cert.dropped[z] > 0).tolist()})"
        if (mu < 0).any() or (nu < 0).any():
            rep.failures.append(f"{where}: negative multiplier")
        drops = sum(dropped * y * y, Fraction(0))
        dual = (sum(-2 * lam * y - lam * lam, Fraction(0))
                + sum(np.where(hard, 0, -mu * mu) - 2 * m * c, Fraction(0))
                - sum((_conjugate(v, tau, gamma) for v in nu), Fraction(0)))
        g = lam @ Aa + m @ L + (nu @ Bi_used if len(nu) else 0 * lam @ Aa)
        G = (Aa.T * keep) @ Aa
        q = {k: Fraction(getattr(cert, k)[z]) if np.isfinite(getattr(cert, k)[z]) else None
             for k in ("drops_lo", "dual_lo", "g_hi", "sig_lo", "y_hi", "U_hi", "cap", "value")}
        if q["drops_lo"] > drops:
            rep.failures.append(f"{where}: certified drop cost {float(q['drops_lo'])!r} > exact {float(drops)!r}")
        if q["dual_lo"] is not None and q["dual_lo"] > dual:
            rep.failures.append(f"{where}: certified dual {float(q['dual_lo'])!r} > exact dual {float(dual)!r}")
        if q["g_hi"] is None or q["g_hi"] < 0 or q["g_hi"] ** 2 < sum(g * g, Fraction(0)):
            rep.failures.append(f"{where}: |g| bound below the exact |g|")
        if q["y_hi"] ** 2 < sum(keep * y * y, Fraction(0)):
            rep.failures.append(f"{where}: |y_kept| bound below the exact norm")
        assembled = None
        if q["U_hi"] is not None and q["sig_lo"] is not None and q["sig_lo"] > 0:
            if not _psd(G - q["sig_lo"] * np.eye(G.shape[0], dtype=int)):
                rep.failures.append(f"{where}: sigma_min^2 bound {float(q['sig_lo'])!r} above the exact smallest eigenvalue")
            r = q["cap"] - q["drops_lo"]
            slack = q["U_hi"] ** 2 * q["sig_lo"] - q["y_hi"] ** 2 - r
            if slack < 0 or slack * slack < 4 * q["y_hi"] ** 2 * r:
                rep.failures.append(f"{where}: U bound too small")
            assembled = min(q["cap"], q["drops_lo"] + q["dual_lo"] - 2 * q["g_hi"] * q["U_hi"])
        floor = max(q["drops_lo"], assembled) if assembled is not None else q["drops_lo"]
        if z in cert.exact:  # rank-deficient kept set: exactly corrected multipliers with g = 0
            dual, g = _check_exact_multipliers(rep, where, cert.exact[z], keep, y, sw, c, tau, gamma, Aa, L, Bi_used, hard)
            floor = max(floor, drops + dual)
        if q["value"] is None:  # -inf is a valid (empty) bound; NaN is not a number at all
            if np.isnan(cert.value[z]):
                rep.failures.append(f"{where}: certified value is NaN")
            continue
        if q["value"] > max(floor, Fraction(0)) and q["value"] > 0:
            rep.failures.append(f"{where}: certified value {float(q['value'])!r} above what its components give")
        values.append(q["value"])
        if check_optimum and q["value"] <= drops:
            rep.n_optimum_trivial += 1  # every point of the subproblem pays its drop cost: value <= optimum
        elif check_optimum:
            sub = _Subproblem(cert, qc, z)
            u_star = sub.minimise(list(_q(cert.u[z])))
            if u_star is None:
                rep.n_optimum_unresolved += 1
                rep.n_unresolved_with_exact_g += z in cert.exact  # g = 0 exactly: f >= dual needs no optimum
                continue
            rep.n_optimum_checked += 1
            opt = drops + sub.value(u_star)
            if z in cert.exact:
                dual, g = _check_exact_multipliers(ExactReport(), where, cert.exact[z], keep, y, sw, c, tau, gamma,
                                                   Aa, L, Bi_used, hard)
            dual_at = drops + dual + 2 * sum(g * np.array(u_star, dtype=object), Fraction(0))
            if not q["value"] <= dual_at <= opt:
                rep.failures.append(f"{where}: not certified {float(q['value'])!r} <= exact dual value "
                                    f"{float(dual_at)!r} <= exact optimum {float(opt)!r}")
    return values


def _check_coverage(rep: ExactReport, result: BoundResult, certs: list[Certificate], codes: np.ndarray,
                    max_subsets: int) -> None:
    """Every drop set ``Z`` of every row (each active entry kept or dropped) costs at least the row bound:
    by its drops alone, or through a certified node consistent with it (its kept entries outside ``Z``,
    its dropped entries inside) whose value reaches the bound."""
    by_row: dict[int, list[tuple[int, int, Fraction]]] = {}
    for cert in certs:
        drop = cert.dropped
        for z in range(len(cert.keep)):
            kb = sum(1 << t for t in np.flatnonzero(cert.keep[z] > 0))
            db = sum(1 << t for t in np.flatnonzero(drop[z] > 0))
            by_row.setdefault(cert.tag["row"], []).append((kb, db, Fraction(cert.value[z])))
    for r in result.rows:
        b = Fraction(r.bound)
        y = [Fraction(v) for v in codes[codes[:, r.row] > 0, r.row]]
        n = len(y)
        nodes = by_row.get(r.row, [])
        if any(v < b for kb, db, v in nodes if kb | db == (1 << n) - 1):
            rep.failures.append(f"row {r.row}: row bound above one of its certified subproblems")
        if 2**n > max_subsets:
            continue
        strong = [(kb, db) for kb, db, v in nodes if v >= b]
        for Zb in range(1 << n):
            if sum((y[t] ** 2 for t in range(n) if Zb >> t & 1), Fraction(0)) >= b:
                continue
            if not any(kb & Zb == 0 and db & ~Zb == 0 for kb, db in strong):
                rep.failures.append(f"row {r.row}: drop set {[t for t in range(n) if Zb >> t & 1]} neither certified "
                                    "nor pruned by its cost")
                break
        else:
            rep.n_rows_covered += 1


def verify_exact(D: Any, codes: Any, result: BoundResult, check_optimum: bool = True,
                 max_subsets: int = 1 << 16) -> ExactReport:
    """Re-check a certified bound in exact rational arithmetic (module docstring).

    Parameters
    ----------
    D, codes : array-like
        The dictionary and witness codes the bound was computed for.
    result : BoundResult
        From :func:`~gapbound.theory.lower_bound` with ``keep_certificates=True``.
    check_optimum : bool
        Also compute each subproblem's exact optimum (slower; small problems).
    max_subsets : int
        Rows with more drop sets than this skip the coverage check.

    Returns
    -------
    ExactReport
    """
    if not result.certificates:
        raise ValueError("result has no certificates: compute it with lower_bound(..., keep_certificates=True)")
    Dn, e = normalise_scale(as_dictionary64(D))
    if e != result.scale_exponent:
        raise ValueError(f"result was computed for another scale of D (exponent {result.scale_exponent}, not {e})")
    S = check_codes(codes, Dn.shape[1])
    Dq, Sq = _q(Dn), _q(S)
    Dabs = abs(Dq)
    rep = ExactReport()
    for cert in result.certificates:
        qc = {k: _q(getattr(cert, k)) for k in ("Aa", "y", "L", "c", "Bi")}
        _check_inputs(rep, cert, qc, Dq, Sq, Dabs)
        if result.encoder_class != "jumprelu":
            _check_relaxation(rep, cert, result.encoder_class)
        _check_components(rep, cert, qc, check_optimum)
    if result.encoder_class != "jumprelu":
        _check_coverage(rep, result, result.certificates, S, max_subsets)
    if Fraction(result.bound) > sum((Fraction(r.bound) for r in result.rows), Fraction(0)):
        rep.failures.append("total bound above the exact sum of the row bounds")
    return rep
