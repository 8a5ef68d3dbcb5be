"""proofs/02_witness_bound.md 2.5.2: the linear-hinge charge's relaxation in the row problems.

``proofs/check_topk.check_charged_pieces`` checks :mod:`gapbound.theory.charge`'s own functions (sympy and exact
rationals); each planted fault (a wrong constant, a conjugate without its max term, ``delta > y``, a multiplier
box past ``lam/2``, a kept envelope whose tangent runs too far) must make it fail, and the wrong constant must fail
every check that proves something about the constant.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from gapbound.theory import charge
from gapbound.theory.charge import charge_constant, charged_active_cost
from proofs import check_topk


def _constant_plus_quarter_mu_sq(mu, y, delta):
    """Fault: ``C`` with the wrong sign of ``mu^2 / 4``."""
    return mu * delta - y * mu + mu * mu / 4


def _p1_conjugate_only(lam, y, mu, C):
    """Fault: the kept conjugate without its ``max(0, lam mu - C)`` term (``P1``'s conjugate alone)."""
    return lam * lam + 2 * lam * y


def test_charged_pieces_hold_on_the_library():
    check_topk.check_charged_pieces()


@pytest.mark.parametrize("fault,match", [
    ({"constant": _constant_plus_quarter_mu_sq}, "charge constant"),
    ({"conjugate": _p1_conjugate_only}, "kept conjugate"),
    ({"delta_over_y": Fraction(5, 3)}, "free envelope"),
    ({"rho_over_lam": Fraction(3, 5)}, "linear hinge"),
])
def test_charged_pieces_catch_each_planted_fault(fault, match):
    with pytest.raises(AssertionError, match=match):
        check_topk.check_charged_pieces(**fault)


@pytest.mark.parametrize("check,match", [
    (check_topk.check_dropped_kept, "kept: g"),
    (check_topk.check_kept_conjugate, "kept: g"),
    (check_topk.check_free_envelope, "free envelope"),
    (check_topk.check_u_bound, "C = "),
])
def test_each_check_using_the_constant_catches_a_wrong_one(check, match):
    with pytest.raises(AssertionError, match=match):
        check(constant=_constant_plus_quarter_mu_sq)


def test_the_conditions_are_needed():
    """delta <= y is needed: a counterexample to the free envelope at ``delta > y`` (proofs/02 2.5.2), ``C > 0``
    there, and the |u| bound's check fails on a grid reaching ``delta = 5 y / 3``."""
    y, delta, mu = Fraction(3, 10), Fraction(1, 2), Fraction(1, 10)
    z = Fraction(2, 5)
    env = check_topk._free_envelope(z, y, mu, delta, charge_constant)
    assert env > charged_active_cost(z, y, mu, delta)
    assert charge_constant(mu, y, delta) > 0
    with pytest.raises(AssertionError, match="C = "):
        check_topk.check_u_bound(delta_over_y=Fraction(5, 3))


def _multiplier_tangent_too_long(d, mu, C):
    """Fault: the envelope's tangent piece runs to ``C / mu + mu`` instead of ``C / mu + mu / 2``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        knee = np.where(mu > 0, C / np.where(mu > 0, mu, 1.0), np.inf)
    return d - np.clip(d - knee, 0.0, mu)


def test_kept_envelope_check_catches_a_too_long_tangent(monkeypatch):
    monkeypatch.setattr(charge, "kept_multiplier", _multiplier_tangent_too_long)
    with pytest.raises(AssertionError, match="kept_envelope"):
        check_topk.check_charged_pieces()
