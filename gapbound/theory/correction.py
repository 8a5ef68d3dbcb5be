"""Exact multiplier correction for subproblems whose kept rows are rank-deficient (``proofs/02_witness_bound.md`` 2.3).

Without a bound on ``|u|`` the weak-duality certificate needs ``g = 0`` exactly: the float multipliers are
corrected in rational arithmetic so that it holds (:func:`exact_value`).
"""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np
import scipy.linalg

from .charge import conjugate_excess
from .duality import _down, _hard, hinge_multiplier
from .rational import integer_solve, to_integers


@functools.lru_cache(maxsize=4)
def _integer_rows_cached(data: bytes, shape: tuple[int, int], splits: tuple[int, int]) -> tuple[list, list, list]:
    rows = [[int(v) for v in r] for r in to_integers(np.frombuffer(data, dtype=np.float64).reshape(shape))[0]]
    return rows[: splits[0]], rows[splits[0]: splits[1]], rows[splits[1]:]


def _integer_rows(Aa: np.ndarray, L: np.ndarray, Bi: np.ndarray) -> tuple[list, list, list]:
    """``Aa``, ``L``, ``Bi`` as integer rows with one common power-of-two scale (cached: a row problem's
    branch-and-bound nodes share them)."""
    stacked = np.ascontiguousarray(np.vstack([Aa, L, Bi]), dtype=np.float64)
    return _integer_rows_cached(stacked.tobytes(), stacked.shape, (len(Aa), len(Aa) + len(L)))


def exact_value(Aa: np.ndarray, y: np.ndarray, L: np.ndarray, c: np.ndarray, keep: np.ndarray, sw: np.ndarray,
                 Bi: np.ndarray, tau: float, lam: np.ndarray, mu: np.ndarray, nu: np.ndarray,
                 dropped: np.ndarray, attempts: int = 4,
                 keep_multipliers: bool = True,
                 charge: tuple | None = None) -> tuple[float, tuple[list, list, list] | None] | None:
    """Certified value of one subproblem whose kept rows are rank-deficient, by an exact multiplier correction.

    The weak-duality bound needs ``g = 0`` or a bound on ``|u|``, and a rank-deficient kept set
    gives no bound on ``|u|``. Instead, the float multipliers are corrected in rational
    arithmetic (float64 data scaled to integers, :func:`~gapbound.theory.rational.integer_solve`) along
    ``p`` independent rows among those with a free-sign or positive multiplier
    (kept residuals, active hinges, active envelopes) so that ``g`` is exactly 0; then
    ``f(u) >= dual`` for every ``u`` and the value ``drop cost + dual`` is exact (rounded down once).
    A multiplier the correction would make negative (or a linear hinge's above its cap) is set to 0 and its
    row left out (a few attempts). ``charge``: TopK's charge (:class:`~gapbound.theory.duality.Certificate`). Returns ``(value, (lam, sw mu, nu))`` (the corrected multipliers as ``Fraction``
    lists, or ``None`` without ``keep_multipliers``), or ``None`` when no correction is found.
    """
    Q = Fraction
    kept_idx = np.flatnonzero(keep > 0)
    m_f = hinge_multiplier(mu, sw)
    hard = _hard(sw)
    zero_h: set[int] = set()
    zero_e: set[int] = set()
    p = Aa.shape[1]
    for _ in range(attempts):
        hinge_idx = np.array([j for j in np.flatnonzero(m_f > 0) if j not in zero_h], dtype=int)
        env_idx = np.array([t for t in np.flatnonzero(nu > 0) if t not in zero_e], dtype=int)
        R = np.vstack([Aa[kept_idx], L[hinge_idx], Bi[env_idx]])
        if len(R) == 0:
            return None
        # pivot on free-sign kept rows first, then on the largest multipliers (least likely to change sign)
        signed = np.concatenate([m_f[hinge_idx], nu[env_idx]])
        weight = np.concatenate([np.ones(len(kept_idx)), 1e-3 * signed / max(float(signed.max(initial=0.0)), 1e-300)])
        _, T, piv = scipy.linalg.qr((R * weight[:, None]).T, pivoting=True, mode="economic")
        diag = np.abs(np.diag(T))
        rank = int((diag > 1e-14 * diag[0]).sum()) if len(diag) and diag[0] > 0 else 0
        sel = piv[:rank]
        # exact g = mult . R in integers: R = R_int / 2^eR, mult = mult_int / 2^eM
        A_int, L_int, B_int = _integer_rows(Aa, L, Bi)
        rows_int = [A_int[t] for t in kept_idx] + [L_int[j] for j in hinge_idx] + [B_int[t] for t in env_idx]
        mult_int, eM = to_integers(np.concatenate([lam[kept_idx], m_f[hinge_idx], nu[env_idx]]))
        mult_int = [int(a) for a in mult_int]
        nz = [r for r, a in enumerate(mult_int) if a]  # object arrays: the products are Python integers
        g_int = (np.array([mult_int[r] for r in nz], dtype=object) @ np.array([rows_int[r] for r in nz], dtype=object)
                 if nz else np.zeros(p, dtype=int)).tolist()
        # solve sum_r x_r R_int[sel_r] = -g_int exactly, x = num / det; the multipliers become
        # (det mult_int + num) / (det 2^eM), a common denominator
        sol = integer_solve([[rows_int[r][k] for r in sel] for k in range(p)], [-v for v in g_int])
        if sol is None:
            return None  # g has a component outside the span of the active rows
        num, det = sol
        new = [a * det for a in mult_int]
        for d, r in zip(num, sel):
            new[r] += d
        n_k, n_h = len(kept_idx), len(hinge_idx)
        cap = [Fraction(-sw[j]) / 2 * (det << eM) if sw[j] < 0 else None for j in hinge_idx]
        bad_h = {int(hinge_idx[i]) for i in range(n_h)
                 if new[n_k + i] < 0 or (cap[i] is not None and new[n_k + i] > cap[i])}
        bad_e = {int(env_idx[i]) for i in range(len(env_idx)) if new[n_k + n_h + i] < 0}
        if not bad_h and not bad_e:
            break
        zero_h |= bad_h
        zero_e |= bad_e
    else:
        return None
    den = det << eM  # every corrected multiplier is new[r] / den
    lam_n, m_n, nu_n = new[:n_k], new[n_k:n_k + n_h], new[n_k + n_h:]
    # the dual in a few exact sums over the common denominator (proofs/02 2.3)
    y_int, ey = to_integers(y)
    dual = (-2 * Q(sum(a * int(y_int[t]) for a, t in zip(lam_n, kept_idx) if a), den << ey)
            - Q(sum(a * a for a in lam_n), den * den))
    for a, j in zip(m_n, hinge_idx):
        if a:
            m = Q(a, den)
            dual -= (0 if hard[j] else (m / Q(sw[j])) ** 2) + 2 * m * Q(c[j])
    dual -= Q(sum(a * a for a in nu_n), den * den)  # conjugates of relu(v)^2: nu^2
    drops = Q(sum(int(y_int[t]) ** 2 for t in np.flatnonzero(dropped > 0)), 1 << (2 * ey))
    if charge is not None:  # free entries' constants, kept entries' conjugate excess
        mu_c, C_c = charge
        drops += sum((Q(C_c[t]) for t in np.flatnonzero((keep == 0) & (dropped == 0))), Q(0))
        dual -= sum((conjugate_excess(Q(a, den), Q(mu_c[t]), Q(C_c[t])) for a, t in zip(lam_n, kept_idx)), Q(0))
    value = float(_down(float(drops + dual)))
    if not keep_multipliers:
        return value, None
    zero = Q(0)
    lam_q, m_q, nu_q = [zero] * len(lam), [zero] * len(mu), [zero] * len(nu)
    for a, t in zip(lam_n, kept_idx):
        lam_q[t] = Q(a, den)
    for a, j in zip(m_n, hinge_idx):
        m_q[j] = Q(a, den)
    for a, t in zip(nu_n, env_idx):
        nu_q[t] = Q(a, den)
    return value, (lam_q, m_q, nu_q)
