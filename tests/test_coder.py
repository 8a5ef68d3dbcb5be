"""SparseCoder: same codes as fista, set-up formed once and kept, numpy/torch in and out, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gapbound.inference import SparseCoder, cvxpy_encode, fista


def _problem(M: int = 12, N: int = 40, n: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(M, N))
    D /= np.linalg.norm(D, axis=0)
    S = np.abs(rng.normal(size=(n, N))) * (rng.random((n, N)) < 0.2)
    return D, S @ D.T + 0.05 * rng.normal(size=(n, M))


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_coder_matches_fista_and_cvxpy_in_any_batch_split(backend):
    D, X = _problem()
    coder = SparseCoder(D, 0.05, backend=backend, tol=1e-10)
    whole = coder.solve(X)
    ones = [coder.solve(X[i : i + 1]) for i in range(X.shape[0])]
    ref = cvxpy_encode(D, X, 0.05)
    assert whole.converged and all(r.converged for r in ones)
    one_obj = torch.cat([r.objective for r in ones])
    assert torch.allclose(whole.objective, one_obj, rtol=1e-9, atol=1e-12)
    assert torch.allclose(whole.objective, fista(D, X, 0.05, tol=1e-10, backend=backend).objective, rtol=1e-9, atol=1e-12)
    assert float(whole.objective.sum()) <= float(ref.objective.sum()) + 1e-9
    assert (whole.duality_gap <= 1e-10).all()


def test_coder_keeps_its_precomputation_across_calls():
    D, X = _problem()
    coder = SparseCoder(D, 0.05, tol=1e-10)
    coder.solve(X[:3])
    G, L = coder.atoms.G64, coder.atoms.lipschitz
    assert G is not None
    coder.solve(X[3:])
    assert coder.atoms.G64 is G and coder.atoms.lipschitz == L


def test_transform_returns_the_input_kind_and_warm_start_never_hurts():
    D, X = _problem()
    coder = SparseCoder(D, 0.05, tol=1e-10)
    codes = coder.transform(X)
    assert isinstance(codes, np.ndarray) and codes.shape == (16, 40) and (codes >= 0).all()
    t = coder.transform(torch.as_tensor(X))
    assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.as_tensor(codes), atol=1e-9)
    noisy = np.abs(np.random.default_rng(1).normal(size=codes.shape))  # a poor start everywhere
    warm = coder.solve(X, init=noisy)
    assert warm.converged and torch.allclose(warm.objective, coder.solve(X).objective, rtol=1e-9, atol=1e-12)
    assert "SparseCoder(M=12, N=40" in repr(coder) and coder.n_atoms == 40 and coder.n_features == 12


@pytest.mark.parametrize(
    "D, lam, kw, err, match",
    [
        (np.array([[1.0, 0.0], [0.0, 0.0]]), 0.1, {}, ValueError, "zero columns"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), 0.1, {}, ValueError, "NaN or infinite"),
        (np.eye(2), -0.1, {}, ValueError, "lam must be >= 0"),
        (np.eye(2, dtype=np.complex128), 0.1, {}, TypeError, "D must be real"),
        (np.eye(2, dtype=np.int64), 0.1, {}, TypeError, "D must be a floating-point array"),
        (np.eye(2), 0.1, {"backend": "gpu"}, ValueError, "backend must be one of"),
        (np.eye(2), 0.1, {"tol": -1.0}, ValueError, "tol must be >= 0"),
    ],
)
def test_coder_refuses_bad_construction(D, lam, kw, err, match):
    with pytest.raises(err, match=match):
        SparseCoder(D, lam, **kw)


def test_coder_refuses_bad_data():
    coder = SparseCoder(np.eye(3), 0.1)
    with pytest.raises(ValueError, match="matching the dictionary's rows"):
        coder.transform(np.ones((2, 4)))
    with pytest.raises(TypeError, match="X must be real"):
        coder.transform(np.ones((2, 3), dtype=np.complex128))
    with pytest.raises(TypeError, match="X must be a floating-point array"):
        coder.transform(np.ones((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="NaN or infinite"):
        coder.transform(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="init must have shape"):
        coder.solve(np.ones((2, 3)), init=np.ones((2, 2)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available (the batched torch active set is the GPU path)")
def test_coder_on_cuda_matches_cpu():
    D, X = _problem(M=32, N=128, n=64)
    gpu = SparseCoder(torch.as_tensor(D, device="cuda"), 0.05, tol=1e-9)
    assert gpu.backend == "torch"
    res = gpu.solve(torch.as_tensor(X, device="cuda"))
    cpu = SparseCoder(D, 0.05, tol=1e-9).solve(X)
    assert res.converged and res.codes.device.type == "cuda"
    assert torch.allclose(res.objective.cpu(), cpu.objective, rtol=1e-8, atol=1e-10)


def test_single_samples_form_only_the_gram_rows_they_need():
    """A sample under a wide dictionary forms the Gram rows of its working sets only; the rows are kept,
    are exact, and the codes equal those of a solve with the whole Gram matrix."""
    D, X = _problem(M=64, N=1024, n=3, seed=2)
    coder = SparseCoder(D, 0.05, tol=1e-10, backend="numba")
    first = coder.solve(X[:1])
    G, have, _ = coder.atoms.gram_rows()
    formed = int(have.sum())
    assert 0 < formed < 1024 and not coder.atoms.gram_complete
    rows = have.nonzero().flatten()
    assert torch.allclose(G[rows], torch.as_tensor(D).T[rows] @ torch.as_tensor(D), rtol=0, atol=1e-12)
    coder.solve(X[1:2])
    assert int(have.sum()) >= formed  # kept across calls
    full = fista(D, X[:1], 0.05, tol=1e-10, backend="torch")  # the batched path uses the whole Gram matrix
    assert first.converged and torch.allclose(first.objective, full.objective, rtol=1e-9, atol=1e-12)
    assert torch.allclose(coder.atoms.G64, torch.as_tensor(D).T @ torch.as_tensor(D), rtol=0, atol=1e-12)


def test_lean_path_hands_uncertified_samples_to_the_general_path(monkeypatch):
    """The lean path (numpy in, compiled kernel called directly) with too few rounds to certify: the
    general path finishes from its codes, and the result equals an unhurried solve."""
    import gapbound.inference.coder as coder_mod

    D, X = _problem(M=32, N=128, n=24, seed=3)
    full = SparseCoder(D, 0.01, tol=1e-10).solve(X)
    monkeypatch.setattr(coder_mod, "_LEAN_ROUNDS", 1)
    short = SparseCoder(D, 0.01, tol=1e-10)
    res = short.solve(X)
    assert res.converged and (res.duality_gap <= 1e-10).all()
    assert torch.allclose(res.objective, full.objective, rtol=1e-9, atol=1e-12)
    # float32 numpy and torch input give the same optimum (lean and general paths)
    for Xk in (X.astype(np.float32), torch.as_tensor(X)):
        other = SparseCoder(D, 0.01, tol=1e-10).solve(Xk)
        ref = SparseCoder(D, 0.01, tol=1e-10).solve(np.asarray(Xk, dtype=np.float64))
        assert other.converged and torch.allclose(other.objective, ref.objective, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("start", ["optimum", "few_wide", "most_wide", "junk"])
def test_lean_warm_starts_reach_the_cold_optimum(start):
    """Warm starts on the lean path (support seeding, the race with a cold round, wide rows cut to the
    rank or restarted) end at the cold start's optimum, certified."""
    from gapbound.inference.starts import compact_start, start_rows

    D, X = _problem(M=16, N=64, n=20, seed=4)
    coder = SparseCoder(D, 0.02, tol=1e-10)
    cold = coder.solve(X)
    rng = np.random.default_rng(5)
    S = cold.codes.numpy().copy()
    if start == "few_wide":
        S[:5] = np.abs(rng.normal(size=(5, 64)))
    elif start == "most_wide":
        S[:15] = np.abs(rng.normal(size=(15, 64)))
    elif start == "junk":
        S = np.abs(rng.normal(size=S.shape)) * (rng.random(S.shape) < 0.15)
    res = coder.solve(X, init=S)
    assert res.converged and torch.allclose(res.objective, cold.objective, rtol=1e-9, atol=1e-12)
    idx, vals, finite = compact_start(S, 16)
    assert finite and not compact_start(np.where(S > 0, np.nan, S), 16)[2]
    wide = (S > 0).sum(1) > 16
    restart = 2 * wide.sum() >= len(S)
    use, finite_rows = start_rows(S, 16)
    assert finite_rows and not start_rows(np.where(S > 0, np.inf, S), 16)[1]
    for i in range(len(S)):  # the compaction keeps what active_set.compact keeps
        kept = set(idx[i][vals[i] > 0].tolist())
        want = set() if (wide[i] and restart) else set(np.argsort(-S[i])[: min(16, (S[i] > 0).sum())].tolist())
        assert kept == want
        assert use[i] == bool(want)  # the in-place read seeds exactly the rows the compaction keeps


@pytest.mark.parametrize("bad", ["nan_one_row", "inf_one_entry", "overflow"])
@pytest.mark.parametrize("n", [5, 80])  # serial kernel call; 80 samples go the parallel way where threads allow
def test_lean_path_non_finite_rows_get_the_general_error(bad, n):
    """The lean path forms ||x||^2 inside the compiled call: one NaN or inf anywhere in the batch gets the
    general path's one-line error; a row whose ||x||^2 overflows is never reported certified."""
    D, X = _problem(M=8, N=32, n=n, seed=6)
    X = X.copy()
    if bad == "nan_one_row":
        X[n // 2] = np.nan
    elif bad == "inf_one_entry":
        X[n - 1, 3] = np.inf
    else:
        X[n // 2] = 1e200  # finite entries, ||x||^2 overflows
    coder = SparseCoder(D, 0.05, tol=1e-10)
    if bad == "overflow":  # finite input the general path accepts: never a certified number for that row
        res = coder.solve(X)
        assert not res.converged and not torch.isfinite(res.duality_gap[n // 2])
        return
    with pytest.raises(ValueError, match="NaN or infinite"):
        coder.solve(X)


@pytest.mark.parametrize("M,N", [(4, 8), (8, 32), (16, 48)])
@pytest.mark.parametrize("lam", [1e-3, 0.05, 0.3])
def test_lean_path_tiny_problems_match_the_batched_solver(M, N, lam):
    """Tiny dictionaries (the shapes where the lean path's call overhead matters): codes certified and at
    the batched torch solver's optimum, within 1e-9 relative."""
    D, X = _problem(M=M, N=N, n=40, seed=M + N)
    lean = SparseCoder(D, lam, tol=1e-11).solve(X)
    ref = SparseCoder(torch.as_tensor(D), lam, tol=1e-11, backend="torch").solve(torch.as_tensor(X))
    assert lean.converged and (lean.duality_gap <= 1e-11).all()
    assert torch.allclose(lean.objective, ref.objective, rtol=1e-9, atol=1e-12)


def test_tidy_start_lowers_the_objective_and_reports_it_exactly():
    """A warm start's coordinate-descent tidy (before the race) never raises the objective, reports the
    objective of the codes it keeps (checked against a direct evaluation), and drops the atoms it zeroes."""
    from gapbound.inference.starts import tidy_start

    D, X = _problem(M=16, N=64, n=6, seed=8)
    G, C, lam = D.T @ D, X @ D, 0.05
    rng = np.random.default_rng(9)
    for i in range(len(X)):
        W = np.sort(rng.choice(64, size=20, replace=False)).astype(np.int64)
        s = np.abs(rng.normal(size=20))
        P0 = 0.5 * np.sum((X[i] - D[:, W] @ s) ** 2) + lam * s.sum()
        Wt, st = W.copy(), s.copy()
        k, P = tidy_start(G, C[i], Wt, st, 20, float(X[i] @ X[i]), lam, np.empty(20), np.empty((20, 20)), 4)
        direct = 0.5 * np.sum((X[i] - D[:, Wt[:k]] @ st[:k]) ** 2) + lam * st[:k].sum()
        assert P <= P0 + 1e-12 and abs(P - direct) <= 1e-10 * max(1.0, abs(direct))
        assert (st[:k] > 0).all() and set(Wt[:k].tolist()) <= set(W.tolist())


@pytest.mark.parametrize("M,N,lam", [(16, 64, 0.02), (64, 256, 0.2)])  # optima narrower than the rank with the junk
def test_junk_laden_starts_return_the_certified_cold_optimum(M, N, lam):
    """The optimum plus wrong atoms (the start that wins the race and is tidied), and wrong atoms only
    (the start that loses it), both end at the cold optimum with valid certificates; the start's FLOPs
    (kernel count) stay below the cold start's when it is the optimum plus junk."""
    from gapbound.inference.compiled import run_numpy
    from gapbound.inference.starts import compact_start

    D, X = _problem(M=M, N=N, n=24, seed=10)
    coder = SparseCoder(D, lam, tol=1e-10)
    cold = coder.solve(X)
    rng = np.random.default_rng(11)
    S = cold.codes.numpy()
    starts = {"optimum + junk": S + (rng.random(S.shape) < 0.05) * 0.1 * S.max(),
              "junk": np.abs(rng.normal(size=S.shape)) * (rng.random(S.shape) < 0.1) * S.max()}
    G, have, DT, D64, cap, max_add, n_first = coder._lean
    idx0, vals0 = np.zeros((1, 0), np.int64), np.zeros((1, 0))  # a cold start: no positions
    DtX, xx, rows = X @ D64, (X * X).sum(1), np.arange(len(X))
    flops = {}
    for name, S0 in starts.items():
        res = coder.solve(X, init=S0)
        assert res.converged and (res.duality_gap <= 1e-10).all()
        assert torch.allclose(res.objective, cold.objective, rtol=1e-9, atol=1e-12)
        idx, vals, _ = compact_start(S0, min(cap, M))
        out = run_numpy(G, have, DT, DtX, xx, rows, idx, vals, coder.lam, coder.tol, cap, max_add, 256, 4, n_first)
        flops[name] = out[3].sum()
    base = run_numpy(G, have, DT, DtX, xx, rows, idx0, vals0, coder.lam, coder.tol, cap, max_add, 256, 4, n_first)[3].sum()
    assert flops["optimum + junk"] < base


def test_in_place_starts_race_like_compact_ones():
    """The lean kernel reads a dense start in place (one lookup per sample unless it races): a good start
    spends the FLOPs the compact start spends (the race found and won), fewer than a cold start, a start
    with no row seeding spends what a cold start spends, and all reach the cold optimum certified."""
    from gapbound.inference.coder import _kernel_lean
    from gapbound.inference.compiled import run_numpy
    from gapbound.inference.starts import compact_start

    D, X = _problem(M=32, N=128, n=16, seed=12)
    coder = SparseCoder(D, 0.05, tol=1e-10)
    cold = coder.solve(X)
    G, have, DT, D64, cap, max_add, n_first = coder._lean
    idx0, vals0 = np.zeros((1, 0), np.int64), np.zeros((1, 0))  # a cold start: no positions
    DtX, xx, rows = X @ D64, (X * X).sum(1), np.arange(len(X))

    def lean(init):
        n, N = X.shape[0], D.shape[1]
        S, P, gap, flops = np.zeros((n, N)), np.empty(n), np.empty(n), np.zeros(n, np.int64)
        ok = _kernel_lean(G, have, DT, X, DtX, init, min(cap, 32), coder.lam, coder.tol, cap, max_add, 256, 4, n_first,
                          S, P, gap, flops)
        assert ok and np.allclose(P, cold.objective.numpy(), rtol=1e-9, atol=1e-12)
        return flops.sum()

    S = cold.codes.numpy()
    base = run_numpy(G, have, DT, DtX, xx, rows, idx0, vals0, coder.lam, coder.tol, cap, max_add, 256, 4, n_first)[3].sum()
    idx, vals, _ = compact_start(S, min(cap, 32))
    compact = run_numpy(G, have, DT, DtX, xx, rows, idx, vals, coder.lam, coder.tol, cap, max_add, 256, 4, n_first)[3].sum()
    assert lean(np.zeros((0, 0))) == base and lean(np.zeros_like(S)) == base
    assert lean(np.ascontiguousarray(S)) == compact < base
    assert not _kernel_lean(G, have, DT, X, DtX, np.where(S > 0, np.nan, S), 32, coder.lam, coder.tol, cap, max_add, 256, 4,
                            n_first, *(np.empty((len(X), 128)), np.empty(len(X)), np.empty(len(X)), np.zeros(len(X), np.int64)))


@pytest.mark.parametrize(
    "init, err, match",
    [
        (np.full((2, 3), np.nan), ValueError, "init contains NaN or infinite"),
        (np.full((2, 3), np.inf), ValueError, "init contains NaN or infinite"),
        (np.ones((2, 3), dtype=np.complex128), TypeError, "init must be real"),
        (np.ones((2, 3), dtype=np.int64), TypeError, "init must be a floating-point array"),
        (np.ones(3), ValueError, "init must have shape"),
    ],
)
def test_bad_warm_starts_get_one_line_errors(init, err, match):
    """A warm start is validated like X (the lean path hands anything it cannot take to the general path)."""
    with pytest.raises(err, match=match):
        SparseCoder(np.eye(3), 0.1).solve(np.ones((2, 3)), init=init)


@pytest.mark.parametrize("kind", ["gaussian", "coherent"])
def test_gap_safe_screening_discards_only_atoms_zero_at_the_optimum(kind):
    """Atoms screened at any iterate (each round of the active set, FISTA iterates, zeros) are zero at the
    certified optimum; a planted fault (the radius shrunk 100x, unsafe) is caught by the same check."""
    from gapbound.inference.screening import gap_safe_screen

    D, X = _problem(M=16, N=64, n=24, seed=12)
    if kind == "coherent":
        D = D + 2.0 * D[:, :1]
        D /= np.linalg.norm(D, axis=0)
    lam = 0.05
    opt = SparseCoder(D, lam, tol=1e-12).solve(X)
    assert opt.converged
    active = opt.codes.numpy() > 1e-9
    iterates = [np.zeros((24, 64))] + [fista(D, X, lam, max_iter=it, tol=0.0, polish=False).codes.numpy()
                                        for it in (1, 5, 20, 100, 400)]
    screened_any, caught = False, False
    for S in iterates + [opt.codes.numpy()]:
        safe = gap_safe_screen(D, X, S, lam).numpy()
        assert not (safe & active).any()
        screened_any = screened_any or safe.any()
        caught = caught or (gap_safe_screen(D, X, S, lam, radius_scale=0.01).numpy() & active).any()
    assert screened_any and caught
    with pytest.raises(ValueError, match="lam must be >= 0"):
        gap_safe_screen(D, X, iterates[0], -1.0)
