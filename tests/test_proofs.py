"""Every mechanical step of proofs/ runs as a test, and every check catches at least one planted fault.

A fault is planted by replacing one library function with a wrong version (the way a
bug would change it) or by feeding the check a wrong input; the check must raise.
"""

from __future__ import annotations

import numpy as np
import pytest

import gapbound.theory
from gapbound.theory import duality
from proofs import check_certificates, check_existence, check_row_qp


# ------------------------------------------------------------------ the checks pass on the library


@pytest.mark.parametrize("M,N,K,design", [(2, 3, 2, "exact"), (2, 4, 3, "exact"), (1, 3, 2, "exact"), (2, 4, 2, "pairs")])
def test_existence_WD_equals_I_contradiction(M, N, K, design):
    check_existence.check(M=M, N=N, K=K, design=design)


def test_row_problem_duality_conjugates_kkt_gates():
    check_row_qp.check()


def test_certificates_verify_exactly():
    check_certificates.check(classes=("linear-gated", "relu"))


# ------------------------------------------------------------------ planted faults


def test_existence_catches_witness_set_without_raised_amplitudes(monkeypatch):
    """Fault: the library's exactly-K witness set loses its amplitude-2 codes; W D is then not pinned down."""
    real = gapbound.theory.witness_codes
    monkeypatch.setattr(gapbound.theory, "witness_codes", lambda N, K, design: (c := real(N, K, design))[(c <= 1).all(1)])
    with pytest.raises(AssertionError, match="does not pin down"):
        check_existence.check(M=2, N=3, K=2)


def test_existence_catches_a_false_claim():
    """With M >= N the contradiction itself fails (det(W D) is not identically 0), not a precondition."""
    with pytest.raises(AssertionError, match="det"):
        check_existence.check(M=3, N=3, K=2)


_REAL_DUAL_TERMS = duality.dual_terms


def _flip_lam_sq(lam, y, mu, sw, c, conj, excess=None):
    t = _REAL_DUAL_TERMS(lam, y, mu, sw, c, conj, excess)
    n = np.shape(lam)[1]
    t[:, n:2 * n] = -t[:, n:2 * n]  # -lam^2 becomes +lam^2
    return t


def test_weak_duality_check_catches_sign_flip(monkeypatch):
    monkeypatch.setattr(duality, "dual_terms", _flip_lam_sq)
    with pytest.raises(AssertionError):
        check_row_qp.check_weak_duality()
    with pytest.raises(AssertionError):
        check_row_qp.check_kkt()


def test_conjugate_check_catches_wrong_conjugate(monkeypatch):
    """Fault: the inactive term's conjugate halved (nu^2 / 2; it would overstate the dual)."""
    monkeypatch.setattr(duality, "envelope_conjugate", lambda nu: nu * nu / 2)
    with pytest.raises(AssertionError, match="conjugate wrong"):
        check_row_qp.check_conjugates()


def test_kkt_check_catches_wrong_multiplier(monkeypatch):
    """Fault: nu = e'(z) instead of e'(z) / 2 (stationarity then fails at the exact optimum)."""
    real = duality.multipliers

    def doubled(*args):
        lam, mu, nu = real(*args)
        return lam, mu, 2 * nu

    monkeypatch.setattr(duality, "multipliers", doubled)
    with pytest.raises(AssertionError, match="stationarity"):
        check_row_qp.check_kkt()


def test_certificate_check_catches_sign_flip(monkeypatch):
    monkeypatch.setattr(duality, "dual_terms", _flip_lam_sq)
    with pytest.raises(AssertionError, match="dual"):
        check_certificates.check(classes=("relu",))


def test_jumprelu_gate_check_catches_lowered_offset(monkeypatch):
    """Fault: the active entries' hinge offset lowered by 1/8 (the hinge then exceeds the drop cost y^2)."""
    from gapbound.theory import jumprelu

    real = jumprelu._JumpReluRow.parts

    def lowered(self, states):
        out = list(real(self, states))
        out[4] = out[4].copy()
        out[4][:, 2 * self.n:3 * self.n] -= 0.125 * (self.y > 0)
        return tuple(out)

    monkeypatch.setattr(jumprelu._JumpReluRow, "parts", lowered)
    with pytest.raises(AssertionError, match="above the gate cost"):
        check_row_qp.check_jumprelu_gates()
