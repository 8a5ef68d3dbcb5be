"""Solvers of gapbound.inference against cvxpy and scikit-learn, certificates, warm starts, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gapbound.synthetic.data import SyntheticConfig, make_problem
from gapbound.utils.flops import count_flops
from gapbound.inference import (
    SOLVERS,
    cvxpy_encode,
    duality_gap,
    fista,
    fista_l1_ball,
    objective,
    project_capped_simplex,
    solve,
    warm_start,
)
from gapbound.inference.active_set import compact, lawson_hanson, run_active_set
from gapbound.inference.problem import Problem

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def problems(draw):
    """A random non-negative LASSO: Gaussian unit-column dictionary, data from sparse codes plus noise."""
    M = draw(st.integers(2, 8))
    N = draw(st.integers(2, 16))
    n = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    lam = draw(st.floats(1e-3, 1.0))
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(M, N))
    D /= np.linalg.norm(D, axis=0)
    S = np.abs(rng.normal(size=(n, N))) * (rng.random((n, N)) < 0.3)
    X = S @ D.T + 0.1 * rng.normal(size=(n, M))
    return D, X, lam


def _total(res) -> float:
    return float(res.objective.sum())


@pytest.mark.parametrize("backend", ["numba", "torch"])
@SETTINGS
@given(prob=problems())
def test_fista_matches_cvxpy_and_sklearn(backend, prob):
    D, X, lam = prob
    f = fista(D, X, lam, tol=1e-11, max_iter=20000, backend=backend)
    ref = cvxpy_encode(D, X, lam)
    lars = solve(D, X, lam, method="sklearn_lars")
    assert f.converged
    assert (f.codes >= 0).all() and f.codes.shape == (X.shape[0], D.shape[1])
    # sparse_encode's alpha is lam in 0.5||x - Ds||^2 + lam||s||_1: its optimum is ours. A
    # reference is itself only as exact as its own certificate, hence that slack.
    for other in (ref, lars):
        slack = 1e-6 * max(abs(_total(other)), 1e-8) + float(other.duality_gap.sum())
        assert abs(_total(f) - _total(other)) <= slack
    # FISTA is never worse than the references beyond its own certificate.
    assert _total(f) <= _total(ref) + float(f.duality_gap.sum()) + 1e-12


@SETTINGS
@given(problems(), st.integers(0, 2**31 - 1))
def test_duality_gap_bounds_suboptimality(prob, seed):
    D, X, lam = prob
    opt = cvxpy_encode(D, X, lam)
    S = np.abs(np.random.default_rng(seed).normal(size=(X.shape[0], D.shape[1])))
    S[np.random.default_rng(seed + 1).random(S.shape) < 0.5] = 0.0
    Dt, Xt, St = (torch.as_tensor(a) for a in (D, X, S))
    gap = duality_gap(Dt, Xt, St, lam)
    subopt = objective(Dt, Xt, St, lam) - opt.objective
    # cvxpy's optimum is itself within ~1e-9, hence the slack.
    assert (gap >= subopt - 1e-7 * (1 + opt.objective.abs())).all()
    assert (gap >= 0).all()
    f = fista(D, X, lam, tol=1e-9, max_iter=5000)
    assert (f.duality_gap >= f.objective - opt.objective - 1e-7 * (1 + opt.objective.abs())).all()


@pytest.mark.parametrize("method", ["fista", "ista", "lca"])
def test_iterative_solvers_reach_tolerance(method, device):
    p = make_problem(SyntheticConfig(N=16, M=8, K=3, n_train=64, n_test=1, seed=3))
    D, X = p.D.double().to(device), p.X_train.double().to(device)
    ref = fista(D, X, 0.05, tol=1e-12, max_iter=20000)
    res = solve(D, X, 0.05, method=method, tol=1e-7, max_iter=50000)
    assert res.converged and res.codes.device.type == torch.device(device).type
    assert (res.codes >= 0).all()
    assert (res.duality_gap <= 1e-7).all()
    assert (res.objective - ref.objective).abs().max() <= 1e-7 + float(ref.duality_gap.max())


@SETTINGS
@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_lawson_hanson_steps_are_descent_and_exact_on_the_support(m, k, n, seed):
    """The active-set core on 0.5 s'Gs - q's, s >= 0 (an NNLS): from zero and from a warm start it never
    increases the objective and ends exact on the atoms it keeps; with every atom's sign right (the
    scipy NNLS optimum has no zero) it reaches that optimum. Atoms it drops come back through the
    KKT rounds of the solver around it (tested end to end against cvxpy above)."""
    from scipy.optimize import nnls

    rng = np.random.default_rng(seed)
    A, b = rng.normal(size=(n, m, k)), rng.normal(size=(n, m))
    G = torch.as_tensor(np.einsum("nmk,nml->nkl", A, A))
    q = torch.as_tensor(np.einsum("nmk,nm->nk", A, b))
    free = torch.ones(n, k, dtype=torch.bool)
    f = lambda s: 0.5 * np.einsum("nk,nkl,nl->n", s, G.numpy(), s) - np.einsum("nk,nk->n", q.numpy(), s)  # noqa: E731
    ref = np.stack([nnls(A[i], b[i])[0] for i in range(n)])
    for start in (torch.zeros(n, k, dtype=torch.float64), torch.as_tensor(np.abs(rng.normal(size=(n, k))))):
        s = lawson_hanson(G, q, start, free, rank=m).numpy()
        assert (s >= 0).all()
        assert (f(s) <= f(start.numpy()) + 1e-9 * (1 + np.abs(f(start.numpy())))).all()
        if k <= m:  # full rank: zero gradient on the kept atoms, and the optimum when no sign is wrong
            grad = np.einsum("nkl,nl->nk", G.numpy(), s) - q.numpy()
            np.testing.assert_allclose(np.where(s > 0, grad, 0.0), 0.0, atol=1e-8 * (1 + np.abs(q.numpy()).max()))
            whole = (ref > 1e-9).all(1)
            np.testing.assert_allclose(f(s)[whole], f(ref)[whole], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_active_set_alone_solves_a_cold_start_with_sparse_certificates(backend):
    """Large problems start with the active set (sparse certificates); it alone reaches the tolerance."""
    p = make_problem(SyntheticConfig(N=512, M=128, K=8, n_train=256, n_test=1, seed=5))
    D, X = p.D.double(), p.X_train.double()
    res = fista(D, X, 0.1, tol=1e-9, max_iter=1, backend=backend)
    assert res.converged and res.n_iter == 0
    dense = duality_gap(D, X, res.codes, 0.1)
    assert torch.allclose(res.duality_gap, dense, rtol=1e-6, atol=1e-11)
    ref = solve(D, X, 0.1, method="sklearn_cd", tol=1e-9)
    assert _total(res) <= _total(ref) + 1e-9


@pytest.mark.parametrize("n_wide", [1, 6])
def test_compact_working_sets_truncate_or_restart_wide_codes(n_wide):
    """Codes wider than the rank enter the active set as their M largest codes when few rows are
    wide, and restart from zero when most are; either way the correlations describe those codes."""
    p = make_problem(SyntheticConfig(N=16, M=8, K=3, n_train=8, n_test=1, seed=3))
    prob = Problem.build(p.D.double(), p.X_train.double(), 0.1)
    S = torch.zeros(8, 16, dtype=torch.float64)
    S[:, :3] = torch.rand(8, 3, dtype=torch.float64) + 0.1
    S[:n_wide] = torch.rand(n_wide, 16, dtype=torch.float64) + 0.1  # all 16 atoms on, rank 8
    rows = torch.arange(8)
    _, _, C = prob.certify(S, rows)
    idx, vals = compact(prob, S, C, rows)
    kept = torch.zeros_like(S).scatter_(1, idx, vals)
    restart = 2 * n_wide >= 8
    for i in range(8):
        if i >= n_wide:  # narrow rows are unchanged
            assert torch.equal(kept[i], S[i])
        elif restart:
            assert (kept[i] == 0).all()
        else:  # the 8 largest codes survive
            assert torch.equal(kept[i] > 0, S[i] >= S[i].topk(8).values[-1])
    assert torch.allclose(C, prob.certify(kept, rows)[2], rtol=1e-12, atol=1e-12)


def test_active_set_chunks_rows_without_changing_the_result():
    """The batched Lawson-Hanson solves run in row chunks (memory reuse); chunk boundaries must not matter."""
    p = make_problem(SyntheticConfig(N=512, M=128, K=8, n_train=96, n_test=1, seed=7))
    prob = Problem.build(p.D.double(), p.X_train.double(), 0.1, backend="torch")
    rows = torch.arange(96)
    start = (torch.zeros(96, 1, dtype=torch.long), torch.zeros(96, 1, dtype=torch.float64))
    whole = run_active_set(prob, *start, None, rows, 1e-10, max_outer=16)
    # a few rows per chunk, and a ragged last one
    chunked = run_active_set(prob, *start, None, rows, 1e-10, max_outer=16, chunk_elems=7 * 16)
    assert (whole[2] <= 1e-10).all() and (chunked[2] <= 1e-10).all()
    # Same supports; values equal up to the rounding of batched LAPACK calls of other sizes.
    assert torch.equal(whole[0] > 0, chunked[0] > 0)
    assert torch.allclose(whole[0], chunked[0], rtol=0, atol=1e-12)


def _degenerate(M: int, N: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A dictionary with two duplicated atoms (dependent working sets) and data using them."""
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(M, N))
    D /= np.linalg.norm(D, axis=0)
    D[:, 1], D[:, 3] = D[:, 0], D[:, 2]
    S = np.abs(rng.normal(size=(n, N))) * (rng.random((n, N)) < 0.3)
    return D, S @ D.T + 0.05 * rng.normal(size=(n, M))


@SETTINGS
@given(prob=problems(), seed=st.integers(0, 2**31 - 1), duplicate=st.booleans())
def test_compiled_active_set_alone_is_exact(prob, seed, duplicate):
    """The compiled active set certifies random problems by itself (no FISTA iteration), from zero
    or from random warm starts, also with a duplicated atom; FISTA's finish agrees with it."""
    D, X, lam = prob
    if duplicate and D.shape[1] > 1:
        D = D.copy()
        D[:, 1] = D[:, 0]
    rng = np.random.default_rng(seed)
    init = np.abs(rng.normal(size=(X.shape[0], D.shape[1]))) * (rng.random((X.shape[0], D.shape[1])) < 0.5)
    for start in (None, init):
        alone = fista(D, X, lam, init=start, tol=1e-10, max_iter=1)
        assert alone.converged and alone.n_iter == 0 and (alone.codes >= 0).all()
        assert torch.allclose(duality_gap(torch.as_tensor(D), torch.as_tensor(X), alone.codes, lam), alone.duality_gap,
                              rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("start", ["cold", "warm", "duplicates"])
def test_active_set_backends_reach_the_same_optimum(backend, start):
    """Compiled and batched active sets, alone (no FISTA iteration) or finished by FISTA, reach
    cvxpy's optimum; the compiled one alone, even from poor warm starts and with duplicate atoms."""
    if start == "duplicates":
        D, X = _degenerate(20, 60, 64, seed=0)
        D, X, init = torch.as_tensor(D), torch.as_tensor(X), None
    else:
        p = make_problem(SyntheticConfig(N=48, M=12, K=4, n_train=64, n_test=1, seed=8))
        D, X = p.D.double(), p.X_train.double()
        # A warm start on the true support plus noise atoms, not optimal on its own support.
        init = None if start == "cold" else (p.S_train + 0.3 * (torch.rand_like(p.S_train) < 0.15)).double()
    lam = 0.05
    alone = fista(D, X, lam, init=init, tol=1e-10, max_iter=1, backend=backend)
    res = fista(D, X, lam, init=init, tol=1e-10, max_iter=20000, backend=backend)
    ref = cvxpy_encode(D, X, lam)
    assert res.converged and (res.codes >= 0).all()
    assert abs(_total(res) - _total(ref)) <= 1e-6 * _total(ref) + float(ref.duality_gap.sum())
    if backend == "numba":
        assert alone.converged and alone.n_iter == 0
        assert torch.allclose(alone.objective, res.objective, rtol=1e-9, atol=1e-10)
    assert torch.allclose(duality_gap(D, X, res.codes, lam), res.duality_gap, rtol=1e-6, atol=1e-12)


def test_polish_beats_plain_fista_and_freezes_samples():
    p = make_problem(SyntheticConfig(N=16, M=8, K=3, n_train=256, n_test=1, seed=1))
    plain = fista(p.D.double(), p.X_train.double(), 0.01, tol=1e-10, max_iter=20000, polish=False)
    polished = fista(p.D.double(), p.X_train.double(), 0.01, tol=1e-10, max_iter=20000)
    assert plain.converged and polished.converged
    assert polished.n_iter < plain.n_iter
    assert abs(_total(plain) - _total(polished)) <= 1e-8 * _total(plain)


def test_float32_iterates_keep_float64_certificates():
    p = make_problem(SyntheticConfig(N=16, M=8, K=3, n_train=32, n_test=1, seed=2))
    res = fista(p.D, p.X_train, 0.1, tol=1e-5)
    assert res.codes.dtype == torch.float32 and res.duality_gap.dtype == torch.float64
    recomputed = duality_gap(p.D.double(), p.X_train.double(), res.codes.double(), 0.1)
    assert torch.allclose(res.duality_gap, recomputed, rtol=1e-9, atol=1e-15)


def test_warm_start_from_optimum_and_from_encoder():
    p = make_problem(SyntheticConfig(N=16, M=8, K=3, n_train=128, n_test=1, seed=4))
    D, X = p.D.double(), p.X_train.double()
    cold = fista(D, X, 0.05, tol=1e-10, max_iter=20000)
    hot = fista(D, X, 0.05, init=cold.codes, tol=1e-10, check_every=1)
    assert hot.n_iter <= 1 and torch.allclose(hot.objective, cold.objective, rtol=1e-10, atol=1e-12)
    torch.manual_seed(0)
    enc = torch.nn.Sequential(torch.nn.Linear(8, 16, dtype=torch.float64), torch.nn.ReLU())
    ito = warm_start(enc, D, X, 0.05, tol=1e-10, max_iter=20000)
    assert ito.converged
    assert torch.allclose(ito.objective, cold.objective, rtol=1e-8, atol=1e-10)


def test_adam_exp_baseline_decreases_objective_towards_optimum():
    p = make_problem(SyntheticConfig(N=16, M=8, K=3, n_train=64, n_test=1, seed=5))
    D, X = p.D.double(), p.X_train.double()
    opt = fista(D, X, 0.05, tol=1e-12, max_iter=20000)
    init = torch.full((64, 16), 0.1, dtype=torch.float64)
    short = solve(D, X, 0.05, method="adam_exp", init=init, max_iter=300)
    res = solve(D, X, 0.05, method="adam_exp", init=init, max_iter=3000)
    assert (res.codes > 0).all() and res.n_iter == 3000
    start = objective(D, X, init, 0.05)
    assert (res.objective < start).all() and res.objective.sum() < short.objective.sum()
    # s = exp(u) only approaches zero geometrically, so it converges slowly: within 20% after 3000 steps.
    assert float((res.objective.sum() - opt.objective.sum()) / opt.objective.sum()) < 0.2
    assert (res.duality_gap >= res.objective - opt.objective - 1e-9).all()


def test_flops_are_counted_including_cholesky():
    p = make_problem(SyntheticConfig(N=16, M=8, K=3, n_train=64, n_test=1, seed=6))
    D, X = p.D.double(), p.X_train.double()
    # plain FISTA (with the active-set finish a tol of 0 is met where the certificate is exact to rounding)
    flops, res = count_flops(fista, D, X, 0.05, max_iter=10, tol=0.0, check_every=10, polish=False)
    # ten Gram-form gradient products of 2 n N^2 each at least
    assert flops >= 10 * 2 * 64 * 16 * 16
    A = torch.eye(4, dtype=torch.float64).expand(3, 4, 4).contiguous()
    assert count_flops(torch.linalg.cholesky_ex, A)[0] == 3 * 4**3 // 3
    # Sparse certificates (wide dictionaries): 2 nnz N FLOPs for D^T D s, however sparse s is.
    Dw = torch.randn(128, 512, dtype=torch.float64)
    prob = Problem.build(Dw / Dw.norm(dim=0), torch.randn(6, 128, dtype=torch.float64), 0.1)
    idx = torch.stack([torch.randperm(512)[:5] for _ in range(6)])
    _ = (prob.DtX64, prob.G64, prob.xx64)  # set-up products, not counted below
    assert count_flops(prob.certify_support, idx, torch.rand(6, 5, dtype=torch.float64))[0] == 2 * 6 * 5 * 512
    # The compiled active set reports its own FLOPs: at least one correlation update 2 N per code.
    X = (torch.rand(6, 512, dtype=torch.float64) * (torch.rand(6, 512) < 0.01)) @ prob.D64.T
    flops, res = count_flops(fista, prob.D64, X, 0.1, tol=1e-9, max_iter=1)
    products = 2 * 6 * 128 * 512 + 2 * 512 * 128 * 512  # D^T X and the Gram matrix
    assert res.converged and flops >= products + 2 * 512 * int((res.codes > 0).sum()) > products


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.floats(0.0, 3.0))
def test_l1_ball_matches_cvxpy(prob, radius):
    import cvxpy as cp

    D, X, _ = prob
    r = np.full(X.shape[0], radius)
    res = fista_l1_ball(D, X, r, tol=1e-10, max_iter=20000)
    assert (res.codes.sum(1) <= torch.as_tensor(r) + 1e-9).all() and (res.codes >= 0).all()
    S = cp.Variable((X.shape[0], D.shape[1]), nonneg=True)
    cp.Problem(cp.Minimize(0.5 * cp.sum_squares(X - S @ D.T)), [cp.sum(S, axis=1) <= radius]).solve(solver="CLARABEL")
    # cvxpy's answer may violate the constraint within its tolerance: evaluate it at its projection
    # onto the feasible set, so ref is the objective of a truly feasible point (>= the optimum).
    feasible = project_capped_simplex(torch.as_tensor(S.value, dtype=torch.float64), torch.as_tensor(r)).numpy()
    ref = 0.5 * ((X - feasible @ D.T) ** 2).sum(1)
    ours, cert = res.objective.numpy(), res.duality_gap.numpy()
    # Never worse than cvxpy beyond 1e-6 relative, and cvxpy can't beat our certified lower bound.
    assert np.all(ours <= ref + 1e-6 * np.maximum(ref, 1e-6))
    assert np.all(ours - cert <= ref + 1e-9)


def test_capped_simplex_projection_is_a_projection():
    g = torch.Generator().manual_seed(0)
    Z = torch.randn(50, 7, generator=g, dtype=torch.float64) * 2
    r = torch.rand(50, generator=g, dtype=torch.float64) * 3
    P = project_capped_simplex(Z, r)
    assert (P >= 0).all() and (P.sum(1) <= r + 1e-12).all()
    # Optimality: <Z - P, Y - P> <= 0 for feasible Y (random feasible points).
    for _ in range(20):
        Y = project_capped_simplex(torch.randn(50, 7, generator=g, dtype=torch.float64), r)
        assert (((Z - P) * (Y - P)).sum(1) <= 1e-10).all()


@pytest.mark.parametrize(
    "D, X, lam, match",
    [
        (np.array([[1.0, 0.0], [0.0, 0.0]]), np.ones((2, 2)), 0.1, "zero columns"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), np.ones((2, 2)), 0.1, "NaN or infinite"),
        (np.eye(2), np.ones((2, 2)), -0.1, "lam must be >= 0"),
        (np.eye(2), np.ones((2, 3)), 0.1, "matching the dictionary's rows"),
        (np.eye(2), np.ones(2), 0.1, "2-D"),
    ],
)
def test_bad_input_raises_clear_errors(D, X, lam, match):
    for method in ("fista", "ista", "lca", "adam_exp", "sklearn_cd"):
        with pytest.raises(ValueError, match=match):
            solve(D, X, lam, method=method)


def test_bad_options_raise():
    D, X = np.eye(2), np.ones((3, 2))
    with pytest.raises(ValueError, match="method must be one of"):
        solve(D, X, 0.1, method="newton")
    with pytest.raises(ValueError, match="init must have shape"):
        fista(D, X, 0.1, init=np.ones((3, 5)))
    with pytest.raises(TypeError, match="max_iter must be an integer"):
        fista(D, X, 0.1, max_iter=1.5)
    with pytest.raises(ValueError, match="dtype"):
        fista(D, X, 0.1, dtype=torch.int64)
    with pytest.raises(ValueError, match="radius"):
        fista_l1_ball(D, X, [1.0, -1.0, 1.0])
    with pytest.raises(TypeError, match="encoder must be callable"):
        warm_start(3, D, X, 0.1)
    assert {"fista", "ista", "lca", "adam_exp", "sklearn_cd", "sklearn_lars", "cvxpy"} <= set(SOLVERS)


@pytest.mark.parametrize("torch_threads", [1, 2])
def test_compiled_active_set_leaves_thread_settings_alone(torch_threads):
    """The kernel (serial, and parallel over 64+ samples) leaves numba's and torch's thread counts as it found them
    (numba's OpenMP layer shares torch's setting, so restoring one naively changes the other)."""
    import numba

    saved = torch.get_num_threads()
    before = numba.get_num_threads()  # (its first call starts numba's threads, which resets OpenMP's count)
    torch.set_num_threads(torch_threads)
    try:
        for n in (16, 96):
            D, X = _degenerate(12, 30, n, seed=1)
            assert fista(D, X, 0.05, tol=1e-10, backend="numba").converged
            assert numba.get_num_threads() == before and torch.get_num_threads() == torch_threads
    finally:
        torch.set_num_threads(saved)


def test_fista_without_polish_is_an_iteration_budget():
    """polish=False, tol=0: exactly max_iter plain FISTA iterations (the frontier's budgets), not an exact solve."""
    p = make_problem(SyntheticConfig(N=16, M=8, K=3, n_train=64, n_test=1, seed=9))
    D, X = p.D.double(), p.X_train.double()
    budget = fista(D, X, 0.01, tol=0.0, max_iter=7, polish=False)
    exact = fista(D, X, 0.01, tol=1e-12)
    assert budget.n_iter == 7 and not budget.converged
    assert exact.n_iter == 0 and exact.converged
    assert _total(budget) > _total(exact)


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("kind", ["coherent", "small_lam"])
def test_supports_wider_than_the_old_cap_are_solved_exactly(backend, kind):
    """Optima with more atoms than the old working-set cap max(32, M/4) (coherent atoms, tiny lam):
    the active set alone certifies them (no FISTA fallback) and matches scikit-learn's LARS."""
    rng = np.random.default_rng(3)
    M, N, n = 64, 256, 6
    if kind == "coherent":  # mutual coherence about 0.9: every atom near one common direction
        common = rng.normal(size=(M, 1))
        D = 0.9 * common / np.linalg.norm(common) + 0.45 * rng.normal(size=(M, N)) / np.sqrt(M)
    else:
        D = rng.normal(size=(M, N))
    D /= np.linalg.norm(D, axis=0)
    S = np.abs(rng.normal(size=(n, N))) * (rng.random((n, N)) < 0.3)
    X = S @ D.T + 0.1 * rng.normal(size=(n, M))
    lam = (1e-2 if kind == "coherent" else 1e-3) * float((X @ D).max())
    # The compiled kernel alone (no FISTA iteration); the batched one after FISTA's first check.
    res = fista(D, X, lam, tol=1e-10, max_iter=1 if backend == "numba" else 100, backend=backend)
    width = int((res.codes > 0).sum(1).max())
    assert width > 32  # wider than the old cap
    assert res.converged and res.n_iter == (0 if backend == "numba" else 20)
    lars = solve(D, X, lam, method="sklearn_lars")
    assert _total(res) <= _total(lars) + 1e-9 * abs(_total(lars))
    # Gaps near 1e-13: the two formulas agree to their rounding, about 1e-16 ||x||^2 (1e-13 here is ample).
    dense = duality_gap(torch.as_tensor(D), torch.as_tensor(X), res.codes, lam)
    assert torch.allclose(dense, res.duality_gap, rtol=0, atol=1e-13 * float((X**2).sum(1).max()))


@pytest.mark.parametrize(
    "D, X, match, err",
    [
        (np.eye(2, dtype=np.complex128), np.ones((2, 2)), "D must be real", TypeError),
        (np.eye(2), np.ones((2, 2), dtype=np.complex64), "X must be real", TypeError),
        (np.eye(2, dtype=np.int64), np.ones((2, 2)), "D must be a floating-point array", TypeError),
        (np.eye(2), np.ones((2, 2), dtype=np.int32), "X must be a floating-point array", TypeError),
        (torch.eye(2, dtype=torch.int64), torch.ones(2, 2), "D must be a floating-point array", TypeError),
        (np.eye(2), [[1, 2], [3, 4]], "X must be a floating-point array", TypeError),
    ],
)
def test_complex_and_integer_arrays_are_refused(D, X, match, err):
    for method in ("fista", "lca", "sklearn_cd"):
        with pytest.raises(err, match=match):
            solve(D, X, 0.1, method=method)


def test_backend_argument_is_checked():
    D, X = np.eye(2), np.ones((3, 2))
    with pytest.raises(ValueError, match="backend must be one of"):
        fista(D, X, 0.1, backend="cuda")
    wide = np.random.default_rng(0).normal(size=(4, 4097))
    with pytest.raises(ValueError, match="backend='numba' needs a CPU dictionary with at most 4096 atoms"):
        fista(wide, np.ones((1, 4)), 0.1, backend="numba")


@SETTINGS
@given(st.integers(1, 14), st.data())
def test_cholesky_row_deletion_equals_a_fresh_factorisation(m, data):
    """The compiled kernel's Givens update after an atom leaves equals the factor of the smaller set."""
    from gapbound.inference.nnls_kernel import _delete_row

    p = data.draw(st.integers(0, m - 1))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    A = rng.normal(size=(m + 3, m))
    G, q = A.T @ A, rng.normal(size=m)
    L = np.zeros((m + 1, m + 1))
    L[:m, :m] = np.linalg.cholesky(G)
    y = np.zeros(m + 1)
    y[:m] = np.linalg.solve(L[:m, :m], q)
    _delete_row(L, y, m, p, np.empty(m + 1))
    keep = [i for i in range(m) if i != p]
    L_ref = np.linalg.cholesky(G[np.ix_(keep, keep)]) if keep else np.zeros((0, 0))
    np.testing.assert_allclose(np.tril(L[: m - 1, : m - 1]), L_ref, atol=1e-10)
    np.testing.assert_allclose(y[: m - 1], np.linalg.solve(L_ref, q[keep]) if keep else [], atol=1e-9)
