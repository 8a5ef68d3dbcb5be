"""Which pass/drop patterns a JumpReLU row can realise: strict separation of witness inputs, with exact proofs.

A JumpReLU row passes entry ``t`` iff ``w.x_t + b > theta``: with ``a_t = [x_t, 1]`` and
``v = (w, b - theta)``, iff ``v.a_t > 0``. A pattern (pass set ``P``, drop set ``D``) is realised by some
row iff ``v.a_t >= 1`` on ``P`` and ``v.a_t <= 0`` on ``D`` is feasible (scale ``v``). By Farkas' lemma it is
not iff some ``lam, mu >= 0`` with ``sum lam = 1`` have ``sum_P lam_t a_t = sum_D mu_t a_t`` (a point of
``conv(P)`` equals a point of ``conv(D)``): then ``sum lam_t v.a_t`` would be both ``> 0`` and ``<= 0``.
The branch and bound of :mod:`gapbound.theory.jumprelu` prunes nodes whose decided entries are not
realisable with such a proof, re-checked exactly by :func:`check_proof` (``proofs/02_witness_bound.md`` 2.6).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.optimize import linprog

from .rational import rational_solve


@dataclass
class SeparationProof:
    """``sum_P lam_t a_t = sum_D mu_t a_t`` with ``lam, mu >= 0``, ``sum lam = 1`` (exact ``Fraction`` values).

    ``passing``/``dropped``: indices (into the row's witness entries, ``tag["active"]``) of the support,
    ``Ap``/``Ad``: their rows ``a_t = [x_t, 1]`` (float64), ``tag``: the row.
    """

    passing: list[int]
    dropped: list[int]
    Ap: np.ndarray
    Ad: np.ndarray
    lam: list[Fraction]
    mu: list[Fraction]
    tag: dict


def farkas_weights(Ap: np.ndarray, Ad: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Float ``(lam, mu)`` at a vertex of ``{lam, mu >= 0: Ap^T lam = Ad^T mu, sum lam = 1}``; ``None`` if empty
    (then the pattern is realisable)."""
    if len(Ap) == 0 or len(Ad) == 0:
        return None
    A_eq = np.vstack([np.hstack([Ap.T, -Ad.T]), np.concatenate([np.ones(len(Ap)), np.zeros(len(Ad))])[None]])
    b_eq = np.concatenate([np.zeros(Ap.shape[1]), [1.0]])
    res = linprog(np.zeros(len(Ap) + len(Ad)), A_eq=A_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    if res.status != 0:
        return None
    return res.x[: len(Ap)], res.x[len(Ap):]


def separating_direction(Ap: np.ndarray, Ad: np.ndarray) -> np.ndarray | None:
    """A ``v`` with ``Ap v >= 1`` and ``Ad v <= 0`` (float LP), or ``None`` when none is found."""
    if len(Ap) == 0:
        return np.zeros(Ad.shape[1] if len(Ad) else 0)
    A_ub = np.vstack([-Ap, Ad]) if len(Ad) else -Ap
    b_ub = np.concatenate([-np.ones(len(Ap)), np.zeros(len(Ad))])
    res = linprog(np.zeros(Ap.shape[1]), A_ub=A_ub, b_ub=b_ub, bounds=(None, None), method="highs")
    return res.x if res.status == 0 else None


def exact_proof(Ap: np.ndarray, Ad: np.ndarray, lam: np.ndarray, mu: np.ndarray,
                tol: float = 1e-12) -> tuple[list[int], list[int], list[Fraction], list[Fraction]] | None:
    """Exact weights on the support of float Farkas weights, or ``None`` (then no proof: the node is kept).

    Solves ``sum_P lam a = sum_D mu a``, ``sum lam = 1`` in rational arithmetic on the support (free
    variables 0) and accepts only non-negative solutions.
    """
    sp = [int(i) for i in np.flatnonzero(lam > tol)]
    sd = [int(i) for i in np.flatnonzero(mu > tol)]
    if not sp:
        return None
    p = Ap.shape[1]
    cols = [[Fraction(float(v)) for v in Ap[i]] for i in sp] + [[-Fraction(float(v)) for v in Ad[i]] for i in sd]
    A = [[col[k] for col in cols] for k in range(p)] + [[Fraction(1)] * len(sp) + [Fraction(0)] * len(sd)]
    x = rational_solve(A, [Fraction(0)] * p + [Fraction(1)])
    if x is None or any(v < 0 for v in x):
        return None
    return sp, sd, x[: len(sp)], x[len(sp):]


def check_proof(Ap: list, Ad: list, lam: list[Fraction], mu: list[Fraction]) -> str | None:
    """Exact check of a separation proof on rational rows ``Ap`` (support of ``P``) and ``Ad``; ``None`` if valid."""
    if len(lam) != len(Ap) or len(mu) != len(Ad):
        return "proof weights do not match its rows"
    if any(v < 0 for v in lam) or any(v < 0 for v in mu) or sum(lam, Fraction(0)) != 1:
        return "proof weights negative or not summing to 1"
    p = len(Ap[0])
    for k in range(p):
        if sum((l * a[k] for l, a in zip(lam, Ap)), Fraction(0)) != sum((m * a[k] for m, a in zip(mu, Ad)), Fraction(0)):
            return "sum_P lam a != sum_D mu a"
    return None
