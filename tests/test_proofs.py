"""Every mechanical step of proofs/ runs as a test (each script's check() raises on failure)."""

from __future__ import annotations

import pytest

from proofs import check_existence, check_rational_bound, check_row_qp


@pytest.mark.parametrize("M,N,K", [(2, 3, 2), (2, 4, 3), (1, 3, 2)])
def test_existence_WD_equals_I_contradiction(M, N, K):
    check_existence.check(M=M, N=N, K=K)


def test_row_problem_duality_and_kkt():
    check_row_qp.check()


def test_exact_rational_bound_matches_certified():
    check_rational_bound.check()


def test_existence_check_detects_a_wrong_claim():
    """The check is not vacuous: with M >= N the determinant of W D is not identically 0."""
    with pytest.raises(AssertionError):
        check_existence.check(M=3, N=3, K=2)
