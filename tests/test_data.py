"""Invariants of the generative model: exact sparsity, non-negativity, unit norms, seeding, streaming."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from gapbound.synthetic.data import CodeStream, SyntheticConfig, make_generator, make_problem, random_dictionary, sample_codes


@settings(max_examples=25, deadline=None)
@given(N=st.integers(2, 64), data=st.data(), n=st.integers(1, 200), seed=st.integers(0, 2**31))
def test_codes_exactly_k_sparse_nonnegative(N, data, n, seed):
    K = data.draw(st.integers(1, N))
    S = sample_codes(n, N, K, make_generator(seed))
    assert S.shape == (n, N)
    assert ((S > 0).sum(1) == K).all()
    assert (S >= 0).all()


@settings(max_examples=20, deadline=None)
@given(M=st.integers(1, 40), N=st.integers(1, 80), seed=st.integers(0, 10_000))
def test_dictionary_unit_norm_and_seeded(M, N, seed):
    D = random_dictionary(M, N, seed)
    assert D.shape == (M, N)
    torch.testing.assert_close(D.norm(dim=0), torch.ones(N), atol=1e-5, rtol=0)
    assert torch.equal(D, random_dictionary(M, N, seed))
    if M * N > 1:
        assert not torch.equal(D, random_dictionary(M, N, seed + 1))


def test_problem_is_seeded_and_consistent():
    cfg = SyntheticConfig(seed=3)
    a, b = make_problem(cfg), make_problem(cfg)
    for x, y in zip((a.D, a.S_train, a.S_test), (b.D, b.S_train, b.S_test)):
        assert torch.equal(x, y)
    torch.testing.assert_close(a.X_train, a.S_train @ a.D.T)
    assert not torch.equal(a.S_train, a.S_test), "train and test must be different draws"
    c = make_problem(SyntheticConfig(seed=4))
    assert not torch.equal(a.D, c.D)


def test_amplitudes_are_half_normal():
    S = sample_codes(20_000, 16, 3, make_generator(0))
    amp = S[S > 0]
    # E|g| = sqrt(2/pi) ~ 0.798, E g^2 = 1 for g ~ N(0, 1)
    assert abs(amp.mean().item() - (2 / torch.pi) ** 0.5) < 0.02
    assert abs((amp**2).mean().item() - 1.0) < 0.03
    # supports are uniform: every source active with probability K/N
    freq = (S > 0).float().mean(0)
    assert torch.allclose(freq, torch.full((16,), 3 / 16), atol=0.015)


@pytest.mark.parametrize("n_samples", [None, 5000])
def test_stream_is_pure_function_of_step(n_samples):
    D = random_dictionary(8, 32, 0)
    s1 = CodeStream(D, 4, 256, seed=5, n_samples=n_samples)
    s2 = CodeStream(D, 4, 256, seed=5, n_samples=n_samples)
    # out-of-order access gives the same batches as in-order access
    later = s2.batch(7)
    for i in range(7):
        s1.batch(i)
    assert torch.equal(s1.batch(7)[0], later[0]) and torch.equal(s1.batch(7)[1], later[1])
    X, S = s1.batch(3)
    torch.testing.assert_close(X, S @ D.T)
    assert ((S > 0).sum(1) == 4).all()
    assert not torch.equal(s1.codes(0), s1.codes(1))


def test_finite_stream_cycles_and_is_batch_size_independent():
    D = random_dictionary(8, 32, 0)
    big = CodeStream(D, 4, 500, seed=1, n_samples=1000)
    small = CodeStream(D, 4, 250, seed=1, n_samples=1000)
    assert torch.equal(big.codes(0)[250:], small.codes(1))
    assert torch.equal(big.codes(0), big.codes(2)), "a 1000-sample set cycles after two 500-row batches"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(N=4, M=2, K=5), "K"),
        (dict(N=16, M=0, K=3), "M"),
        (dict(N=0, M=8, K=1), "N"),
        (dict(N=16, M=8, K=0), "K"),
        (dict(n_train=0), "n_train"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_config_gives_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticConfig(**kwargs)


def test_bad_types_give_type_errors():
    with pytest.raises(TypeError, match="N must be an integer"):
        SyntheticConfig(N=16.5)
    with pytest.raises(ValueError, match="batch_size"):
        CodeStream(random_dictionary(4, 8), 2, 0)
