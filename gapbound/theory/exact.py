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
   cost, which every point of the subproblem pays; ``n_optimum_skipped``: TopK nodes with the linear-hinge
   charge, whose linear pieces this minimiser does not handle: their components are checked, their optimum
   only in float, by cvxpy, in ``tests/test_theory_topk.py``);
5. *coverage* (``"linear-gated"``, ``"relu"``): every drop set of every row is
   covered by a certified subproblem (ReLU: a branch-and-bound node whose kept and dropped
   entries agree with it) not below the row bound, or costs at least the row bound by its
   drops alone; the total is at most the exact sum of the rows. ``"jumprelu"``: every gate
   pattern and threshold in a certified node not below the row bound or in a separation proof
   (:func:`gapbound.theory.jumprelu.uncovered_region`).

6. *TopK charge* (``"topk"``, ``proofs/02_witness_bound.md`` 2.5-2.5.2): across rows, the sample weights'
   budgets and the linear-hinge charge (one charge per row, caps, ``sum mu >= sum lam`` per code,
   ``0 < delta <= min y``, each stored ``C`` at most ``charge_constant``, free offsets ``y + mu/2`` exactly);
   per node, linear hinge multipliers at most half their slope, the charged constants, conjugate excess
   and floor.

Each failed check adds one line to ``ExactReport.failures``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from .bounds import BoundResult, normalise_scale
from .charge import conjugate_excess
from .duality import Certificate
from .exact_optimum import _q, _row_c, _Subproblem
from .exact_topk import check_topk_charge, check_topk_weights
from .jumprelu import coverage_failures as jumprelu_coverage
from .separation import SeparationProof, check_proof
from .witness import as_dictionary64, check_codes

_U = Fraction(1, 2**53)


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


def _conjugate(nu: Fraction) -> Fraction:
    """``sup_v [2 nu v - relu(v)^2] = nu^2`` (``nu >= 0``): the inactive entries' conjugate."""
    return nu * nu


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
    n_separation_proofs: int = 0
    n_optimum_skipped: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures


def _check_rows(rep: ExactReport, row: Any, name: str, idx: Any, X: np.ndarray, Dq: np.ndarray, Sq: np.ndarray,
                Dabs: np.ndarray) -> None:
    """Rows ``X`` are ``[fl(D s_t), 1]`` for the witness codes ``idx`` (within one dot product's rounding)."""
    M, N = Dq.shape
    if idx is None or len(X) == 0:
        return
    if len(idx) != len(X) or any(v != 1 for v in X[:, M]):
        rep.failures.append(f"row {row}: {name} is not [witness inputs, 1]")
        return
    exact = Sq[idx] @ Dq.T
    tol = _gamma(N + 1) * (Sq[idx] @ Dabs.T)
    if (abs(X[:, :M] - exact) > tol).any():
        rep.failures.append(f"row {row}: {name} differs from the witness inputs D s by more than one dot product's rounding")


def _check_inputs(rep: ExactReport, cert: Certificate, qc: dict, Dq: np.ndarray, Sq: np.ndarray, Dabs: np.ndarray) -> None:
    for name, key in (("Aa", "active"), ("Bi", "inactive")):
        _check_rows(rep, cert.tag.get("row"), name, cert.tag.get(key), qc[name], Dq, Sq, Dabs)
    if "weighted" in cert.tag:  # TopK: the weighted and hinged inactive entries' rows follow the relu class's 2 n
        n, n_w = len(cert.y), len(cert.tag["weighted"])
        _check_rows(rep, cert.tag.get("row"), "weighted rows", cert.tag["weighted"], qc["L"][2 * n:2 * n + n_w],
                    Dq, Sq, Dabs)
        _check_rows(rep, cert.tag.get("row"), "hinged rows", cert.tag.get("hinged", ()), qc["L"][2 * n + n_w:],
                    Dq, Sq, Dabs)


def _check_relaxation(rep: ExactReport, cert: Certificate, encoder_class: str) -> None:
    n = len(cert.y)
    row = cert.tag.get("row")
    keep, drop = cert.keep, cert.dropped
    if encoder_class == "linear-gated":  # drop enumeration: every entry kept or dropped, no constraint
        ok = np.array_equal(cert.L, cert.Aa) and not cert.c.any()
        ok = ok and np.isinf(cert.tau) and not cert.sw.any() and np.array_equal(drop, 1.0 - keep)
    else:  # relu branch and bound: inactive relu(z)^2; dropped: hard z <= 0; free: relu(z - y)^2; kept: (z - y)^2
        free = 1.0 - keep - drop
        n_w = len(cert.tag.get("weighted", ())) if encoder_class == "topk" else 0
        n_h = len(cert.tag.get("hinged", ())) if encoder_class == "topk" else 0
        ok = (len(cert.L) == 2 * n + n_w + n_h and np.array_equal(cert.L[:n], cert.Aa)
              and np.array_equal(cert.L[n:2 * n], cert.Aa) and not cert.c[:n].any() and cert.tau == 0.0)
        if encoder_class != "topk" or cert.charge is None:
            ok = ok and np.array_equal(cert.c[n:2 * n], cert.y) and cert.charge is None
        else:  # free entries' hinge offset y + mu/2, exactly (proofs/02 2.5.2)
            ok = ok and all(Fraction(c) == Fraction(y) + Fraction(m) / 2
                            for c, y, m in zip(cert.c[n:2 * n], cert.y, cert.charge[0]))
        if encoder_class == "topk":  # no inactive term but the weighted (offset 0, one finite weight per entry)
            sw_w, sw_h = cert.sw[:, 2 * n:2 * n + n_w], cert.sw[:, 2 * n + n_w:]  # and hinged ones (offset delta)
            ok = ok and len(cert.Bi) == 0 and not cert.c[2 * n:2 * n + n_w].any() and bool(np.isfinite(sw_w).all())
            ok = ok and bool((sw_w >= 0).all()) and bool((sw_w == sw_w[:1]).all())
            ok = ok and bool((sw_h <= 0).all()) and bool((sw_h == sw_h[:1]).all())
            ok = ok and bool((cert.c[2 * n + n_w:] == cert.tag.get("delta")).all())
        cert_sw = cert.sw[:, :2 * n]
        ok = ok and bool(np.isin(keep, (0.0, 1.0)).all() and np.isin(drop, (0.0, 1.0)).all() and (free >= 0).all())
        ok = ok and np.array_equal(np.isinf(cert_sw[:, :n]), drop > 0) and not cert_sw[:, :n][drop == 0].any()
        ok = ok and np.array_equal(cert_sw[:, n:], free)
    if not ok:
        rep.failures.append(f"row {row}: subproblem is not the {encoder_class} relaxation")


def _check_jumprelu_relaxation(rep: ExactReport, cert: Certificate) -> None:
    """JumpReLU nodes (``proofs/02_witness_bound.md`` 2.6): the rows of :class:`~gapbound.theory.jumprelu._JumpReluRow`,
    hard gates on decided entries, ``0 <= t0``, ``|theta| <= t1 <= box``, and each free entry's term below both of
    its gate costs on ``[t0, t1]``: a hinge of weight <= 1 with offset ``>= y + max(0, t1 - 2y)`` (active) or
    ``>= 0`` (inactive), or, where ``t0 >= 2y``, only its drop cost ``y^2``."""
    n, row = len(cert.y), cert.tag.get("row")
    Ax, L = cert.Aa[:, :-1], cert.L
    e = np.zeros(cert.Aa.shape[1])
    e[-1] = 1.0
    zt = np.hstack([Ax, -np.ones((n, 1))])
    act = cert.y > 0
    ok = (cert.box is not None and cert.c.ndim == 2 and L.shape[0] == 3 * n + 2 and not cert.Aa[:, -1].any()
          and np.array_equal(L[:n], zt) and np.array_equal(L[n:2 * n], -zt) and np.array_equal(L[-2], -e)
          and np.array_equal(L[-1], e) and np.array_equal(L[2 * n:3 * n], np.where(act[:, None], cert.Aa, zt))
          and cert.tau == 0.0 and len(cert.Bi) == 0)
    for z in range(len(cert.keep) if ok else 0):
        sw, c, drop_m = cert.sw[z], cert.c[z], cert.dropped[z]
        D, K = np.isinf(sw[:n]), np.isinf(sw[n:2 * n])
        t0, t1 = Fraction(-c[-2]), Fraction(c[-1])
        free = ~D & ~K
        const = free & act & (-c[-2] >= 2 * cert.y)
        hinge = free & ~const
        good = (not (D & K).any() and np.isinf(sw[-2:]).all() and not c[:2 * n].any() and t0 >= 0
                and Fraction(cert.box[z]) >= t1 and np.array_equal(cert.keep[z], K.astype(float))
                and np.array_equal(drop_m, (D | const).astype(float)) and not sw[:n][~D].any()
                and not sw[n:2 * n][~K].any() and not sw[2 * n:3 * n][~hinge].any()
                and (sw[2 * n:3 * n][hinge] <= 1).all())
        for t in np.flatnonzero(hinge) if good else ():
            y = Fraction(cert.y[t])
            good = good and Fraction(c[2 * n + t]) >= (y + max(Fraction(0), t1 - 2 * y) if act[t] else 0)
        ok = ok and good
    if not ok:
        rep.failures.append(f"row {row}: subproblem is not the jumprelu relaxation")


def _check_separation(rep: ExactReport, proof: SeparationProof, Dq: np.ndarray, Sq: np.ndarray, Dabs: np.ndarray) -> None:
    """An empty node's proof: its rows are witness inputs with a bias 1, and the exact Farkas identity holds."""
    idx = np.asarray(proof.tag.get("active"))[proof.passing + proof.dropped]
    _check_rows(rep, proof.tag.get("row"), "separation proof", idx, _q(np.vstack([proof.Ap, proof.Ad])), Dq, Sq, Dabs)
    why = check_proof(_q(proof.Ap).tolist(), _q(proof.Ad).tolist(), proof.lam, proof.mu)
    rep.n_separation_proofs += 1
    if why is not None:
        rep.failures.append(f"row {proof.tag.get('row')}: separation proof invalid: {why}")


def _check_exact_multipliers(rep: ExactReport, where: str, mults: tuple, keep: np.ndarray, y: np.ndarray,
                             sw: np.ndarray, c: np.ndarray, Aa: np.ndarray,
                             L: np.ndarray, Bi: np.ndarray, hard: np.ndarray,
                             cert: Certificate) -> tuple[Fraction, np.ndarray]:
    """Check exactly corrected multipliers ``(lam, sw mu, nu)``: signs, support, caps, ``g = 0``; return their
    dual (without the constant) and g."""
    lam, m, nu = (np.array(v, dtype=object) for v in mults)
    nu = nu[: len(Bi)]
    if any(v < 0 for v in m) or any(v < 0 for v in nu):
        rep.failures.append(f"{where}: negative corrected multiplier")
    if any(m[j] > -sw[j] / 2 for j in range(len(m)) if sw[j] < 0):
        rep.failures.append(f"{where}: corrected linear hinge multiplier above half its slope")
    if (any(lam[t] != 0 for t in range(len(lam)) if keep[t] == 0)
            or any(m[j] != 0 for j in range(len(m)) if sw[j] == 0 and not hard[j])):
        rep.failures.append(f"{where}: corrected multiplier on a term that is not in the subproblem")
    g = lam @ Aa + m @ L + (nu @ Bi if len(nu) else 0 * lam @ Aa)
    if any(v != 0 for v in g):
        rep.failures.append(f"{where}: corrected multipliers do not make g exactly 0")
    dual = (sum(-2 * lam * y - lam * lam, Fraction(0)) - _kept_excess(cert, keep, lam)
            + sum(((0 if hard[j] else -(m[j] / sw[j]) ** 2) - 2 * m[j] * c[j] for j in range(len(m)) if m[j] != 0),
                  Fraction(0))
            - sum((_conjugate(v) for v in nu), Fraction(0)))
    return dual, g


def _charged_constants(cert: Certificate, keep: np.ndarray, dropped: np.ndarray,
                       y: np.ndarray) -> tuple[Fraction, Fraction]:
    """Exactly, for one subproblem: its constant (dropped ``y^2``, free entries' ``C``) and the kept entries' ``C``
    (``proofs/02_witness_bound.md`` 2.5.2; 0 uncharged)."""
    drops = sum(dropped * y * y, Fraction(0))
    if cert.charge is None:
        return drops, Fraction(0)
    C = _q(cert.charge[1])
    return drops + sum((1 - keep - dropped) * C, Fraction(0)), sum(keep * C, Fraction(0))


def _kept_excess(cert: Certificate, keep: np.ndarray, lam: np.ndarray) -> Fraction:
    """Exactly, the kept entries' conjugate excess ``max(0, lam mu - C)`` (2.5.2; 0 uncharged)."""
    if cert.charge is None:
        return Fraction(0)
    mu_c, C = _q(cert.charge[0]), _q(cert.charge[1])
    return sum((conjugate_excess(a, b, d) for a, b, d, k in zip(lam, mu_c, C, keep) if k), Fraction(0))


def _at_least_sum_of_roots(h: Fraction | None, a: Fraction, b: Fraction) -> bool:
    """``h >= sqrt(a) + sqrt(b)`` exactly (``a, b >= 0``): ``h >= 0``, ``t = h^2 - a - b >= 0`` and ``t^2 >= 4 a b``."""
    if h is None or h < 0:
        return False
    t = h * h - a - b
    return t >= 0 and t * t >= 4 * a * b


def _check_components(rep: ExactReport, cert: Certificate, qc: dict, check_optimum: bool) -> list[Fraction]:
    """Exact checks of one batch; returns the rational certified values."""
    Aa, y, L, c, Bi = qc["Aa"], qc["y"], qc["L"], qc["c"], qc["Bi"]
    inactive = not np.isinf(cert.tau)  # tau = 0: the inactive entries' relu(b.u)^2 terms; inf: none
    Bi_used = Bi if inactive else Bi[:0]
    row = cert.tag.get("row")
    values = []
    Ak = Aa if cert.box is None else Aa[:, :-1]  # box: the last coordinate is bounded by hard rows instead
    c_all = c
    for z in range(len(cert.keep)):
        rep.n_subproblems += 1
        c = _row_c(c_all, z)
        box2 = Fraction(0) if cert.box is None else Fraction(cert.box[z]) ** 2
        keep, dropped = _q(cert.keep[z]), _q(cert.dropped[z])
        lam, mu, sw = _q(cert.lam[z]), _q(cert.mu[z]), _q(cert.sw[z])
        mu_c = _q(cert.charge[0]) if cert.charge is not None else None
        # hard constraint rows and linear hinges (sw < 0): mu is the multiplier itself, no quadratic term
        hard = np.isinf(cert.sw[z]) | (cert.sw[z] < 0)
        m = np.where(hard, mu, sw * mu)
        nu = _q(cert.nu[z]) if inactive else np.empty(0, dtype=object)
        where = f"row {row} subproblem {z} (drops {np.flatnonzero(cert.dropped[z] > 0).tolist()})"
        if (mu < 0).any() or (nu < 0).any():
            rep.failures.append(f"{where}: negative multiplier")
        if any(lam[t] != 0 for t in range(len(lam)) if keep[t] == 0):
            rep.failures.append(f"{where}: residual multiplier on an entry that is not kept")
        if any(mu[j] > -sw[j] / 2 for j in np.flatnonzero(cert.sw[z] < 0)):
            rep.failures.append(f"{where}: linear hinge multiplier above half its slope")
        drops, kept_C = _charged_constants(cert, keep, dropped, y)
        dual = (sum(-2 * lam * y - lam * lam, Fraction(0)) - _kept_excess(cert, keep, lam)
                + sum(np.where(hard, 0, -mu * mu) - 2 * m * c, Fraction(0))
                - sum((_conjugate(v) for v in nu), Fraction(0)))
        g = lam @ Aa + m @ L + (nu @ Bi_used if len(nu) else 0 * lam @ Aa)
        G = (Ak.T * keep) @ Ak
        q = {k: Fraction(getattr(cert, k)[z]) if np.isfinite(getattr(cert, k)[z]) else None
             for k in ("drops_lo", "dual_lo", "g_hi", "sig_lo", "y_hi", "U_hi", "cap", "value")}
        if q["drops_lo"] > drops:
            rep.failures.append(f"{where}: certified drop cost {float(q['drops_lo'])!r} > exact {float(drops)!r}")
        if q["dual_lo"] is not None and q["dual_lo"] > dual:
            rep.failures.append(f"{where}: certified dual {float(q['dual_lo'])!r} > exact dual {float(dual)!r}")
        if q["g_hi"] is None or q["g_hi"] < 0 or q["g_hi"] ** 2 < sum(g * g, Fraction(0)):
            rep.failures.append(f"{where}: |g| bound below the exact |g|")
        if not _at_least_sum_of_roots(q["y_hi"], sum(keep * y * y, Fraction(0)),
                                      sum(keep * mu_c * mu_c, Fraction(0)) / 4 if cert.charge is not None else 0):
            rep.failures.append(f"{where}: |y_kept| (+ |mu_kept| / 2) bound below the exact norm")
        floor_lo = q["drops_lo"]
        if cert.charge is not None:  # what every point pays: the constant and the kept entries' C
            floor_lo = Fraction(cert.floor_lo[z])
            if floor_lo > drops + kept_C:
                rep.failures.append(f"{where}: certified floor {float(floor_lo)!r} > exact {float(drops + kept_C)!r}")
        assembled = None
        if q["U_hi"] is not None and q["sig_lo"] is not None and q["sig_lo"] > 0:
            if not _psd(G - q["sig_lo"] * np.eye(G.shape[0], dtype=int)):
                rep.failures.append(f"{where}: sigma_min^2 bound {float(q['sig_lo'])!r} above the exact smallest eigenvalue")
            r = q["cap"] - floor_lo
            slack = (q["U_hi"] ** 2 - box2) * q["sig_lo"] - q["y_hi"] ** 2 - r
            if slack < 0 or slack * slack < 4 * q["y_hi"] ** 2 * r:
                rep.failures.append(f"{where}: U bound too small")
            assembled = min(q["cap"], q["drops_lo"] + q["dual_lo"] - 2 * q["g_hi"] * q["U_hi"])
        floor = max(floor_lo, assembled) if assembled is not None else floor_lo
        if z in cert.exact:  # rank-deficient kept set: exactly corrected multipliers with g = 0
            dual, g = _check_exact_multipliers(rep, where, cert.exact[z], keep, y, sw, c, Aa, L, Bi_used, hard, cert)
            floor = max(floor, drops + dual)
        if q["value"] is None:  # -inf is a valid (empty) bound; NaN is not a number at all
            if np.isnan(cert.value[z]):
                rep.failures.append(f"{where}: certified value is NaN")
            continue
        # uncharged subproblems cost >= 0, so a value <= 0 needs nothing more; charged ones can cost < 0
        trivial = Fraction(0) if cert.charge is None else floor
        if q["value"] > max(floor, trivial) and (q["value"] > 0 or cert.charge is not None):
            rep.failures.append(f"{where}: certified value {float(q['value'])!r} above what its components give")
        values.append(q["value"])
        if check_optimum and cert.charge is not None:
            rep.n_optimum_skipped += 1  # linear pieces: no exact minimiser computed (the components are checked)
        elif check_optimum and q["value"] <= drops:
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
                dual, g = _check_exact_multipliers(ExactReport(), where, cert.exact[z], keep, y, sw, c,
                                                   Aa, L, Bi_used, hard, cert)
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
        if isinstance(cert, SeparationProof):
            _check_separation(rep, cert, Dq, Sq, Dabs)
            continue
        qc = {k: _q(getattr(cert, k)) for k in ("Aa", "y", "L", "c", "Bi")}
        _check_inputs(rep, cert, qc, Dq, Sq, Dabs)
        if result.encoder_class == "jumprelu":
            _check_jumprelu_relaxation(rep, cert)
        else:
            _check_relaxation(rep, cert, result.encoder_class)
        _check_components(rep, cert, qc, check_optimum)
    if result.encoder_class != "jumprelu":
        _check_coverage(rep, result, result.certificates, S, max_subsets)
    else:  # every (gate pattern, threshold) in a certified node or a separation proof
        failures, rep.n_rows_covered = jumprelu_coverage(result, S)
        rep.failures += failures
    if result.encoder_class == "topk":
        check_topk_weights(rep, result, S)
        check_topk_charge(rep, result, S)
    if Fraction(result.bound) > sum((Fraction(r.bound) for r in result.rows), Fraction(0)):
        rep.failures.append("total bound above the exact sum of the row bounds")
    return rep
