"""MCC and friends: permutation/scale invariance, bounds, perfect recovery, degenerate columns."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from gapbound.synthetic.metrics import correlation_matrix, dictionary_mcc, mcc, nmse, support_scores

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def code_pairs(draw):
    n = draw(st.integers(3, 40))
    N = draw(st.integers(1, 8))
    A = draw(arrays(np.float64, (n, N), elements=finite))
    B = draw(arrays(np.float64, (n, draw(st.integers(1, 10))), elements=finite))
    return A, B


@settings(max_examples=60, deadline=None)
@given(code_pairs())
def test_mcc_in_unit_interval(pair):
    A, B = pair
    v = mcc(A, B)
    assert 0.0 <= v <= 1.0 + 1e-12


@settings(max_examples=60, deadline=None)
@given(code_pairs(), st.randoms(use_true_random=False), st.lists(st.floats(0.01, 100), min_size=10, max_size=10))
def test_mcc_invariant_to_permutation_and_positive_scaling(pair, rnd, scales):
    A, B = pair
    perm = list(range(B.shape[1]))
    rnd.shuffle(perm)
    B2 = B[:, perm] * np.array(scales[: B.shape[1]])
    assert mcc(A, B2) == pytest.approx(mcc(A, B), abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(5, 50), N=st.integers(1, 10), seed=st.integers(0, 1000))
def test_mcc_is_one_on_perfect_recovery(n, N, seed):
    rng = np.random.default_rng(seed)
    S = np.abs(rng.normal(size=(n, N))) * (rng.random((n, N)) < 0.5)
    S[0], S[1] = 1.0, 0.0  # no constant column
    perm = rng.permutation(N)
    assert mcc(S, S[:, perm] * 3.0) == pytest.approx(1.0)
    assert mcc(S, np.hstack([S, rng.normal(size=(n, 3))])) == pytest.approx(1.0), "extra latents never hurt"


def test_constant_columns_count_as_zero():
    rng = np.random.default_rng(0)
    S = rng.normal(size=(100, 4))
    dead = S.copy()
    dead[:, 2] = 0.0
    # three sources perfect, one matched to a dead latent (or nothing)
    assert mcc(S, dead) == pytest.approx(0.75, abs=0.05)
    assert np.all(correlation_matrix(S, dead)[:, 2] == 0)
    assert mcc(S, np.zeros((100, 4))) == 0.0


def test_mcc_is_near_zero_for_independent_codes():
    rng = np.random.default_rng(1)
    assert mcc(rng.normal(size=(20_000, 5)), rng.normal(size=(20_000, 5))) < 0.03


def test_dictionary_mcc_sign_and_permutation():
    rng = np.random.default_rng(2)
    D = rng.normal(size=(8, 16))
    assert dictionary_mcc(D, -2 * D[:, rng.permutation(16)]) == pytest.approx(1.0)
    assert dictionary_mcc(D, rng.normal(size=(8, 16))) < 0.9


def test_support_scores():
    S = np.array([[1.0, 0, 2], [0, 3, 0], [1, 1, 0]])
    perfect = support_scores(S, S * 2, matched=False)
    assert (perfect.precision, perfect.recall, perfect.f1) == (1.0, 1.0, 1.0)
    dense = support_scores(S, np.ones_like(S), matched=False)
    assert dense.recall == 1.0 and dense.precision == pytest.approx(5 / 9)
    assert support_scores(S, np.zeros_like(S), matched=False).f1 == 0.0


def test_nmse():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 4))
    assert nmse(X, X) == 0.0
    assert nmse(X, np.tile(X.mean(0), (50, 1))) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "call, err",
    [
        (lambda: mcc(np.ones((5, 2)), np.ones((4, 2))), ValueError),
        (lambda: mcc(np.ones(5), np.ones((5, 2))), ValueError),
        (lambda: mcc(np.array([[np.nan, 1], [1, 2]]), np.ones((2, 2))), ValueError),
        (lambda: mcc(np.array([["a", "b"]]), np.ones((1, 2))), TypeError),
        (lambda: nmse(np.ones((3, 2)), np.ones((3, 2))), ValueError),
        (lambda: dictionary_mcc(np.ones((3, 2)), np.ones((4, 2))), ValueError),
    ],
)
def test_bad_input(call, err):
    with pytest.raises(err):
        call()


def test_complex_codes_are_refused_not_truncated() -> None:
    S = np.eye(3)
    with pytest.raises(TypeError, match="S_hat must be real"):
        mcc(S, S + 1j * np.eye(3))
