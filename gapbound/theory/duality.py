"""Certified values of the per-row convex problems: a batched Newton solver and a weak-duality certificate.

Each drop set of a row gives a convex problem (kept residuals, hinge
penalties for gate constraints, the inactive entries' envelope). ``_newton``
finds a good point, ``_certify_batch`` turns *any* point into a certified
lower bound on the problem's minimum (``proofs/02_witness_bound.md`` 2.3),
with every float64 operation's rounding error bounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .charge import conjugate_excess, kept_envelope


_UNIT_ROUNDOFF = 2.0**-53
# LAPACK's symmetric eigensolvers are backward stable: the computed eigenvalues of G are exact for
# G + E with ||E|| <= p(n) eps ||G||, p(n) a modest function of n. We take p(n) = 64 n; this constant
# is the one assumption of the certificate that is not derived (the exact verifier checks it).
_EIGVALSH_FACTOR = 64
# Linear hinges are smoothed over this width for Newton's point (the certificate holds at any point; a
# narrower width slows Newton down several times on TopK rows, whose hinges sit near delta ~ 1/2).
_LIN_EPS = 0.05


def _gamma(n: int) -> float:
    """Higham's ``gamma_n = n u / (1 - n u)``: relative error bound of ``n`` chained float64 roundings.

    An ``n``-term sum or dot product computed in any order is within ``gamma_n`` times
    the sum of the absolute values of its terms (Higham, *Accuracy and Stability*, 3.1).
    """
    nu = n * _UNIT_ROUNDOFF
    return nu / (1.0 - nu)


def _down(x: Any) -> Any:
    """One ulp towards -inf: below the exact result of the single rounded-to-nearest operation that made ``x``."""
    return np.nextafter(x, -np.inf)


def _up(x: Any) -> Any:
    """One ulp towards +inf (see :func:`_down`)."""
    return np.nextafter(x, np.inf)


def _envelope(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ReLU class's inactive-entry term ``relu(z)^2``: ``(value, nu, curvature)`` with ``nu = relu(z) = e'(z) / 2``."""
    zp = np.maximum(z, 0.0)
    return zp * zp, zp, (z > 0).astype(float)


def _outer(A: np.ndarray) -> np.ndarray:
    """``n x p^2``: each row's outer product ``A_t A_t^T``, flattened (for :func:`_gram`)."""
    return (A[:, :, None] * A[:, None, :]).reshape(A.shape[0], A.shape[1] * A.shape[1])  # also for 0 rows


def _gram(w: np.ndarray, outer: np.ndarray, p: int) -> np.ndarray:
    """``sum_t w_zt A_t A_t^T`` per batch entry ``z`` (``outer = _outer(A)``): one BLAS matrix product."""
    return (w @ outer).reshape(len(w), p, p)


def _kept(d: np.ndarray, charge: tuple | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kept entries' term at residual ``d = z - y``: ``(value, half slope, half curvature)``; ``(mu, C)``:
    the charged envelope (:func:`gapbound.theory.charge.kept_envelope`), else ``d^2``."""
    return kept_envelope(d, *charge) if charge is not None else (d * d, d, np.ones_like(d))


def _huber(v: np.ndarray, slope: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``slope relu(v)`` smoothed over ``[0, _LIN_EPS]`` (Newton's point only):
    ``(value, half slope, half curvature)``."""
    t = np.clip(v / _LIN_EPS, 0.0, 1.0)
    value = slope * np.where(v > _LIN_EPS, v - _LIN_EPS / 2, t * v / 2)
    return value, slope * t / 2, slope * ((v > 0) & (v < _LIN_EPS)) / (2 * _LIN_EPS)


def _newton(Aa: np.ndarray, y: np.ndarray, L: np.ndarray, c: np.ndarray, keep: np.ndarray, Wt: np.ndarray,
            Bi: np.ndarray, tau: float, iters: int = 100, u0: np.ndarray | None = None,
            charge: tuple | None = None, lin: np.ndarray | None = None) -> np.ndarray:
    """Batched damped Newton for the convex problem of each drop set.

    ``f(u) = ||keep*(Aa u - y)||^2 + sum_j Wt_j relu(L_j.u - c_j)^2 + sum_t e(B_t.u)``
    with ``e(z) = relu(z)^2`` for the inactive entries (:func:`_envelope`; ``tau = 0``: the ReLU
    class; ``tau = inf`` switches them off, the free gate). ``keep`` is
    ``n_Z x n_active`` (1 kept, 0 dropped), ``Wt`` is ``n_Z x n_L`` (penalties
    standing in for gate constraints); ``c`` is one vector for all subproblems or ``n_Z x n_L``
    (one per subproblem). The step uses the generalised Hessian
    (plus a small ridge, so it is a descent direction) and backtracks until
    ``f`` decreases.
    Converged problems leave the batch. The iterate only needs to be good:
    the certificate is valid for any ``u``. ``u0`` (``n_Z x p``): warm starts (e.g. a branch
    and bound node's parent) instead of the kept rows' least squares. ``charge = (mu, C)`` (one per
    active entry): kept entries pay the charged envelope of :mod:`gapbound.theory.charge` instead of
    ``(z - y)^2``; ``lin`` (one per ``L`` row, 0 elsewhere): linear hinges ``lin_j relu(L_j.u - c_j)``,
    smoothed here (:func:`_huber`).
    """
    p = Aa.shape[1]
    if math.isinf(tau):
        Bi = Bi[:0]
    AA, LL, BB = _outer(Aa), _outer(L), _outer(Bi)
    ridge = 1e-12 * np.eye(p)
    if u0 is not None:
        u_all = np.array(u0, dtype=np.float64)
    else:
        u_all = np.linalg.solve(_gram(keep, AA, p) + ridge, ((keep * y) @ Aa)[..., None])[..., 0]
    lin = np.zeros(L.shape[0]) if lin is None else lin
    if u0 is None and not Wt.any() and len(Bi) == 0 and charge is None and not lin.any():
        return u_all  # plain least squares: one solve is exact

    C = np.broadcast_to(c, (len(keep), L.shape[0]))  # one c for all subproblems, or one row each

    def objective(u: np.ndarray, kp: np.ndarray, wt: np.ndarray, cz: np.ndarray) -> np.ndarray:
        za, zl = u @ Aa.T, u @ L.T - cz
        return ((kp * _kept(za - y, charge)[0]).sum(1) + (wt * np.maximum(zl, 0.0) ** 2).sum(1)
                + _huber(zl, lin)[0].sum(1) + _envelope(u @ Bi.T)[0].sum(1))

    todo = np.arange(len(keep))
    f_all = objective(u_all, keep, Wt, C)
    for _ in range(iters):
        if len(todo) == 0:
            break
        u, kp, wt, f, cz = u_all[todo], keep[todo], Wt[todo], f_all[todo], C[todo]
        za, zl, zb = u @ Aa.T, u @ L.T - cz, u @ Bi.T
        _, ka, ca = _kept(za - y, charge)
        _, hg, hc = _huber(zl, lin)
        _, eb, cb = _envelope(zb)
        grad = (kp * ka) @ Aa + (wt * np.maximum(zl, 0.0) + hg) @ L + eb @ Bi
        H = _gram(kp * ca, AA, p) + _gram(wt * (zl > 0) + hc, LL, p) + _gram(cb, BB, p)
        try:
            d = -np.linalg.solve(H + 1e-9 * np.eye(p), grad[..., None])[..., 0]
        except np.linalg.LinAlgError:  # stiff penalties can swamp the ridge: a least-squares step instead
            d = -(np.linalg.pinv(H, hermitian=True) @ grad[..., None])[..., 0]
        step = np.ones(len(todo))
        fc = objective(u + d, kp, wt, cz)
        tol = 1e-14 * (1.0 + np.abs(f))
        slope = -2.0 * (grad * d).sum(1)  # f is convex: a step s lowers it by at most s * slope
        for _ in range(40):
            # no shorter step can lower f by tol where s * slope is below it: stop halving those (converged)
            bad = (fc > f - tol) & (step * slope > tol)
            if not bad.any():
                break
            step[bad] *= 0.5
            fc[bad] = objective(u[bad] + step[bad, None] * d[bad], kp[bad], wt[bad], cz[bad])
        moved = fc < f - tol
        u_all[todo[moved]] = u[moved] + step[moved, None] * d[moved]
        f_all[todo[moved]] = fc[moved]
        # converged: no decrease possible, or a full Newton step that kept the active set
        small = np.abs(d).max(1) <= 1e-13 * (1.0 + np.abs(u).max(1))
        todo = todo[moved & ~small]
    return u_all


def envelope_conjugate(nu: Any) -> Any:
    """``e*(2 nu) = nu^2``, the conjugate of the inactive-entry term ``e(v) = relu(v)^2`` at ``2 nu`` (``nu >= 0``).

    Pure arithmetic, so ``proofs/check_row_qp.py`` checks this very function with sympy against the
    supremum ``sup_v [2 nu v - relu(v)^2]`` over all ``v``.
    """
    return nu * nu


def _hard(sw: Any) -> Any:
    """Rows without a quadratic term: hard constraints ``L_j.u <= c_j`` (``sw = inf``) and linear hinges
    ``-sw_j relu(L_j.u - c_j)`` (``sw < 0``, multiplier at most ``-sw_j / 2``). False everywhere for symbolic arrays."""
    arr = np.asarray(sw)
    return (np.isinf(arr) | (arr < 0)) if arr.dtype.kind == "f" else np.zeros(arr.shape, dtype=bool)


def _multiplier_cap(sw: np.ndarray) -> np.ndarray:
    """The largest multiplier of each row: ``-sw / 2`` for a linear hinge (its conjugate is finite only up to
    there, ``proofs/02_witness_bound.md`` 2.5.2), unbounded otherwise."""
    return np.where(sw < 0, -sw / 2, np.inf)


def hinge_multiplier(mu: Any, sw: Any) -> Any:
    """The multiplier ``m`` of each hinge row in ``g``: ``sw mu`` for a penalty, ``mu`` itself for a hard constraint."""
    hard = _hard(sw)
    if not hard.any():
        return sw * mu
    return np.where(hard, mu, np.where(hard, 0.0, sw) * mu)


def dual_terms(lam: Any, y: Any, mu: Any, sw: Any, c: Any, conj: Any, excess: Any = None) -> Any:
    """The summands of the weak-duality constant (``proofs/02_witness_bound.md`` 2.3), one column each.

    With ``lam`` (kept residuals), ``mu >= 0`` (penalty hinges ``(sw relu(L u - c))^2``, or for
    ``sw = inf`` the multiplier of the hard constraint ``L u <= c``, which has no quadratic term) and
    ``conj = e*(2 nu)`` (inactive envelopes), every ``u`` satisfying the hard constraints has
    ``f(u) >= 2 u.g + sum(dual_terms)``, ``g = stationarity(...)``. A linear hinge (``sw < 0``, ``mu`` at
    most ``-sw / 2``) has the hard row's terms and holds for every ``u``. ``excess`` (charged kept entries):
    ``keep * conjugate_excess(lam, mu, C)``, the rest of their conjugate. Works on float
    arrays and on object arrays of sympy expressions (the symbolic check uses it).
    """
    hard = _hard(sw)
    quad = np.where(hard, 0.0, mu * mu) if hard.any() else mu * mu
    cols = [-2 * lam * y, -(lam * lam), -quad, -2 * hinge_multiplier(mu, sw) * c, -conj]
    return np.concatenate(cols if excess is None else cols + [-excess], axis=1)


def stationarity(lam: Any, Aa: Any, smu: Any, L: Any, nu: Any, Bi: Any) -> Any:
    """``g = Aa^T lam + L^T (sw mu) + Bi^T nu``: zero at a KKT point, where the dual equals the primal."""
    return lam @ Aa + smu @ L + nu @ Bi


def _sum_error(terms: np.ndarray) -> np.ndarray:
    """Bound on the rounding error of ``terms.sum(1)`` including each summand's own (<= 3) roundings.

    ``gamma_{n + 3}`` for ``n`` summands (Higham 3.1, any summation order); the factor 2 covers the
    rounding of this bound's own evaluation.
    """
    return 2.0 * _gamma(terms.shape[1] + 4) * np.abs(terms).sum(1)


def drop_cost(dropped: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``sum_{t dropped} y_t^2`` per subset (``dropped`` is 1 for dropped entries, 0 for kept and free ones)."""
    return dropped @ (y * y)


def multipliers(Aa: np.ndarray, y: np.ndarray, L: np.ndarray, c: np.ndarray, keep: np.ndarray, sw: np.ndarray,
                Bi: np.ndarray, tau: float, u: np.ndarray, hard_weight: float = 0.0,
                charge: tuple | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dual multipliers read off a primal point: ``lam`` = kept residuals, ``mu = sw relu(L u - c)``, ``nu = e'(B u) / 2``.

    Any values with ``mu, nu >= 0`` give a valid certificate; these are the KKT
    multipliers at the optimum, so the certificate is tight there. Hard rows (``sw = inf``)
    get ``mu = hard_weight relu(L u - c)``: ``u`` minimised the penalty ``hard_weight relu^2``
    standing in for the constraint, whose multiplier this is (it tends to the constraint's
    KKT multiplier as the weight grows). Linear hinges (``sw < 0``) get the smoothed hinge's
    (:func:`_huber`), charged kept entries the envelope's (:func:`gapbound.theory.charge.kept_multiplier`).
    """
    lam = keep * _kept(u @ Aa.T - y, charge)[1]
    v = u @ L.T - c
    viol = np.maximum(v, 0.0)
    hard = _hard(sw)
    mu = np.where(hard, hard_weight * viol, np.where(hard, 0.0, sw) * viol) if hard.any() else sw * viol
    if (sw < 0).any():
        mu = np.where(sw < 0, _huber(v, np.maximum(-sw, 0.0))[1], mu)
    nu = _envelope(u @ Bi.T)[1]
    return lam, mu, nu


@dataclass
class Certificate:
    """One batch of certified subproblems: the problem data, the multipliers and every certified component.

    ``value[z]`` is a certified lower bound on ``drop_cost + min_u f_z(u)`` for
    ``f_z(u) = sum_t keep_zt (Aa_t.u - y_t)^2 + sum_j (sw_zj relu(L_j.u - c_j))^2 + sum_t e(Bi_t.u)``
    (``e(v) = relu(v)^2``, :func:`_envelope`; none when ``tau = inf``), minimised
    subject to ``L_j.u <= c_j`` for the hard rows ``sw_zj = inf`` (their ``mu`` is the constraint's
    multiplier). ``drop[z]`` marks the dropped entries (drop cost ``sum drop y^2``); entries neither
    kept nor dropped are free (branch and bound nodes).
    The components satisfy, in exact arithmetic: ``drops_lo <= drop cost``,
    ``dual_lo <= sum(dual_terms)``, ``g_hi >= |g|``, ``Aa_kept^T Aa_kept - sig_lo I`` positive
    semidefinite, ``y_hi >= |y_kept|``, ``U_hi >= (y_hi + sqrt(cap - drops_lo)) / sqrt(sig_lo)``
    (with ``box``: ``Aa`` without its last column in the Gram matrix, whose last column is 0, and
    ``U_hi^2 - box^2`` in place of ``U_hi^2``; the hard rows keep ``|u_last| <= box``)
    and ``value <= max(drops_lo, min(cap, drops_lo + dual_lo - 2 g_hi U_hi))``, or, for the
    subproblems in ``exact`` (``z -> (lam, sw mu, nu)`` as ``Fraction`` lists, see :func:`gapbound.theory.correction.exact_value`),
    ``value <= drop cost + dual`` of those multipliers, whose ``g`` is exactly 0;
    :mod:`gapbound.theory.exact` re-checks each in rational arithmetic.

    TopK's charge (``proofs/02_witness_bound.md`` 2.5.2): rows with ``sw_zj < 0`` are linear hinges
    ``-sw_zj relu(L_j.u - c_j)`` with ``0 <= mu_j <= -sw_zj / 2``; ``charge = (mu_a, C)`` (one per active entry)
    makes a kept entry's term ``min((z - y)^2, (z - y - mu_a/2)^2 + C)`` (the dual gains ``-keep *
    conjugate_excess``) and adds ``C`` to the constant of every free entry (whose hinge offset is
    ``y + mu_a/2``): then ``drops_lo`` bounds the constant ``drop cost + sum_free C``, ``y_hi >= |y_kept| +
    |mu_kept| / 2``, ``floor_lo <= constant + sum_kept C`` (what every point pays) takes ``drops_lo``'s
    place in ``U_hi`` and in the fallback ``max(floor_lo, ...)``.
    """

    Aa: np.ndarray
    y: np.ndarray
    L: np.ndarray
    c: np.ndarray
    Bi: np.ndarray
    tau: float
    keep: np.ndarray
    sw: np.ndarray
    u: np.ndarray
    lam: np.ndarray
    mu: np.ndarray
    nu: np.ndarray
    drops_lo: np.ndarray
    dual_lo: np.ndarray
    g_hi: np.ndarray
    sig_lo: np.ndarray
    y_hi: np.ndarray
    U_hi: np.ndarray
    cap: np.ndarray
    value: np.ndarray
    tag: dict = field(default_factory=dict)
    exact: dict = field(default_factory=dict)
    drop: np.ndarray | None = None
    box: np.ndarray | None = None
    charge: tuple | None = None
    floor_lo: np.ndarray | None = None

    @property
    def dropped(self) -> np.ndarray:
        """``n_Z x n_active``: 1 for dropped entries (``1 - keep`` when ``drop`` was not given)."""
        return 1.0 - self.keep if self.drop is None else self.drop


def _polish(Aa: np.ndarray, L: np.ndarray, Bi: np.ndarray, keep: np.ndarray, sw: np.ndarray, lam: np.ndarray,
            mu: np.ndarray, nu: np.ndarray, rounds: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Multipliers moved towards ``g = 0`` along the rows that carry them (kept residuals, positive hinge and
    hard-row multipliers, positive ``nu``), negatives clipped to 0: still valid (any ``mu, nu >= 0`` are).

    The stiff gate penalties leave ``|g|`` ~1e-3 at Newton's point, and ``2 |g| U`` can then cost a node most
    of its value; the minimal-norm correction ``R^T d = -g`` (one ``p x p`` solve per subproblem) removes it.
    """
    hard, cap = _hard(sw), _multiplier_cap(sw)
    m = hinge_multiplier(mu, sw)
    ka, on_l, on_b = keep > 0, (m > 0) & (hard | (sw > 0)), nu > 0
    outers, p = (_outer(Aa), _outer(L), _outer(Bi)), Aa.shape[1]
    for _ in range(rounds):
        g = stationarity(lam, Aa, m, L, nu, Bi)
        G = (_gram(ka.astype(float), outers[0], p) + _gram(on_l.astype(float), outers[1], p)
             + _gram(on_b.astype(float), outers[2], p))
        ridge = 1e-13 * np.trace(G, axis1=1, axis2=2)[:, None, None] * np.eye(p) + 1e-300 * np.eye(p)
        v = np.linalg.solve(G + ridge, -g[..., None])[..., 0]
        lam = lam + ka * (v @ Aa.T)
        m = np.minimum(np.maximum(m + on_l * (v @ L.T), 0.0), cap)
        nu = np.maximum(nu + on_b * (v @ Bi.T), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.where(hard, m, np.where(sw > 0, m / np.where(sw > 0, sw, 1.0), 0.0))
    return lam, mu, nu


def _certify_batch(
    Aa: np.ndarray, y: np.ndarray, L: np.ndarray, c: np.ndarray, keep: np.ndarray, sw: np.ndarray,
    Bi: np.ndarray, tau: float, u: np.ndarray, record: list | None = None,
    dropped: np.ndarray | None = None, hard_weight: float = 0.0, exact_correction: bool = True,
    needed: float | None = None, box: np.ndarray | None = None, charge: tuple | None = None,
) -> np.ndarray:
    """Certified lower bounds on ``drops(Z) + min_u (convex problem of Z)`` for a batch of subsets.

    The hinge terms are ``(sw_j relu(L_j.u - c_j))^2`` with ``sw`` the float
    square roots of the penalty weights (a penalty of any weight is valid, so
    the weight *is* ``sw^2``). Weak duality (:func:`dual_terms`): for every ``u``,
    ``f(u) >= 2 u.g + dual``. ``g`` is ~0 but not exactly; ``2 u.g`` is bounded using
    ``|u| <= U`` for every ``u`` whose cost is below ``cap``,
    ``U = (|y_kept| + sqrt(cap - drops)) / sigma_min(Aa_kept)``; above ``cap`` the bound
    holds trivially. Hard rows (``sw = inf``) are constraints ``L_j.u <= c_j`` with multipliers
    ``hard_weight relu(L_j.u - c_j)`` (:func:`multipliers`); ``dropped`` (default ``1 - keep``) marks
    the entries whose drop cost is counted; ``exact_correction=False`` skips the rational correction of
    rank-deficient kept sets (their value stays the drop cost), and ``needed`` restricts it to the
    subproblems whose value is below ``needed`` and whose float dual reaches it. ``box`` (one per
    subproblem): the last coordinate of ``u`` has no kept-row term (a threshold) and its hard rows
    keep ``|u_last| <= box``; then ``U`` bounds the other coordinates through the kept rows and
    ``sqrt(U^2 + box^2)`` bounds ``|u|``. ``c`` may be ``n_Z x n_L`` (one per subproblem). Linear hinges
    (``sw < 0``) and ``charge = (mu, C)``: TopK's charge (:class:`Certificate`). Rounding: every float64 sum and product is widened by
    Higham's ``gamma_n`` for its own number of roundings, and the final combination is
    rounded outwards one ulp per operation (``proofs/02_witness_bound.md`` 2.3). With ``record``
    a :class:`Certificate` of the batch is appended to it.
    """
    if math.isinf(tau):
        Bi = Bi[:0]
    n_a, n_L, n_B, p = Aa.shape[0], L.shape[0], Bi.shape[0], Aa.shape[1]
    # drop cost: n_a products (y^2, exact mask) summed: gamma_{n_a + 1}
    drop_mask = 1.0 - keep if dropped is None else dropped
    if charge is None:
        drops = drop_cost(drop_mask, y)
        drops_lo = _down(drops * (1.0 - _gamma(n_a + 2)))
        floor_lo = drops_lo
    else:  # the constant: dropped y^2 and free entries' C (may be < 0); what every point pays adds kept C
        mu_c, C_c = charge
        const = np.hstack([drop_mask * (y * y), (1.0 - keep - drop_mask) * C_c])
        drops = const.sum(1)
        drops_lo = _down(drops - 2.0 * _gamma(2 * n_a + 2) * np.abs(const).sum(1))
        every = np.hstack([const, keep * C_c])
        floor_lo = _down(every.sum(1) - 2.0 * _gamma(3 * n_a + 2) * np.abs(every).sum(1))
    # sigma_min^2 of the kept rows: eigvalsh of the float Gram matrix, minus the Gram matrix's rounding
    # error (Weyl) and the eigensolver's backward error (_EIGVALSH_FACTOR)
    Ak = Aa if box is None else Aa[:, :-1]  # the threshold coordinate is bounded by the box instead
    G = _gram(keep, _outer(Ak), Ak.shape[1])
    G_err = 2.0 * _gamma(n_a + 2) * _gram(keep, _outer(np.abs(Ak)), Ak.shape[1])
    eig_min = np.linalg.eigvalsh(G)[:, 0]
    eps = np.finfo(float).eps
    slack = (np.linalg.norm(G_err, axis=(1, 2)) + _EIGVALSH_FACTOR * Ak.shape[1] * eps
             * np.linalg.norm(G, axis=(1, 2))) * 1.01
    sig_lo = _down(eig_min - slack)
    y_hi = _up(np.sqrt((keep * y * y).sum(1)) * (1.0 + _gamma(n_a + 4)))
    if charge is not None:  # kept terms >= ((|z - y| - mu/2)_+)^2 + C: |z_kept - y_kept| <= |mu_kept| / 2 + sqrt(r)
        y_hi = _up(y_hi + _up(np.sqrt((keep * mu_c * mu_c).sum(1)) * (0.5 + _gamma(n_a + 4))))

    def assemble(lam: np.ndarray, mu: np.ndarray, nu: np.ndarray) -> tuple[np.ndarray, ...]:
        """The multiplier-dependent components and the certified value (``dual, dual_lo, g_hi, cap, U_hi, value``)."""
        # dual: each summand takes <= 3 roundings, the sum n - 1 more (_sum_error)
        excess = None if charge is None else keep * conjugate_excess(lam, mu_c, C_c)
        terms = dual_terms(lam, y, mu, sw, c, envelope_conjugate(nu), excess)
        dual = terms.sum(1)
        dual_lo = _down(dual - _sum_error(terms))
        # g: three dot products of total length n_a + n_L + n_B, two additions, and sw * mu: gamma_{n + 3}
        smu = hinge_multiplier(mu, sw)
        g = stationarity(lam, Aa, smu, L, nu, Bi)
        g_err = 2.0 * _gamma(n_a + n_L + n_B + 4) * (np.abs(lam) @ np.abs(Aa) + np.abs(smu) @ np.abs(L) + nu @ np.abs(Bi))
        g_hi = _up(np.linalg.norm(np.abs(g) + g_err, axis=1) * (1.0 + _gamma(p + 4)))
        # any cap is valid; this one keeps U small while staying above the values that matter
        cap = _up(drops + np.maximum(dual, 0.0) + 1.0)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            r_hi = _up(cap - floor_lo)
            U_hi = np.where(sig_lo > 0, _up((y_hi + np.sqrt(r_hi)) / np.sqrt(np.maximum(sig_lo, 1e-300)) * (1.0 + 16 * eps)), np.inf)
            if box is not None:  # |u|^2 <= U^2 + box^2: three roundings and a square root, widened by 8 eps
                U_hi = _up(np.sqrt(U_hi * U_hi + box * box) * (1.0 + 8 * eps))
            bound = _down(_down(drops_lo + dual_lo) - _up(2.0 * g_hi * U_hi))
        # the convex part is >= 0 (charged: >= the kept C): floor_lo is always a bound (e.g. when U is infinite)
        bound = np.where(np.isfinite(bound), bound, -np.inf)
        floor = np.maximum(floor_lo, 0.0) if charge is None else floor_lo
        return dual, dual_lo, g_hi, cap, U_hi, np.maximum(np.minimum(bound, cap), floor)

    # the multipliers read off u, and the same corrected towards g = 0 (_polish): each node keeps the better
    lam, mu, nu = multipliers(Aa, y, L, c, keep, sw, Bi, tau, u, hard_weight, charge)
    parts = assemble(lam, mu, nu)
    lam2, mu2, nu2 = _polish(Aa, L, Bi, keep, sw, lam, mu, nu)
    parts2 = assemble(lam2, mu2, nu2)
    better = parts2[-1] > parts[-1]
    lam, mu, nu = (np.where(better[:, None], b, a) for a, b in ((lam, lam2), (mu, mu2), (nu, nu2)))
    dual, dual_lo, g_hi, cap, U_hi, value = (np.where(better, b, a) for a, b in zip(parts, parts2))
    # rank-deficient kept sets: no |u| bound; where the float dual says the value is higher, correct
    # the multipliers exactly instead (rare, and slower: rational arithmetic)
    from .correction import exact_value  # (correction builds on this module's primitives)

    exact = {}
    want = (sig_lo <= 0) & (drops + dual > value * (1 + 1e-9) + 1e-12) & exact_correction
    if needed is not None:
        want &= (value < needed) & (drops + dual >= needed)
    for z in np.flatnonzero(want):
        res = exact_value(Aa, y, L, c if c.ndim == 1 else c[z], keep[z], sw[z], Bi, tau, lam[z], mu[z], nu[z],
                           drop_mask[z], keep_multipliers=record is not None,
                           charge=charge)
        if res is not None and res[0] > value[z]:
            value[z], exact[int(z)] = res
    if record is not None:
        record.append(Certificate(Aa, y, L, c, Bi, tau, keep, sw, u, lam, mu, nu, drops_lo, dual_lo, g_hi,
                                  sig_lo, y_hi, U_hi, cap, value, exact=exact, drop=drop_mask, box=box,
                                  charge=charge, floor_lo=None if charge is None else floor_lo))
    return value
