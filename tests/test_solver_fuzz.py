"""Robustness of the exact solver (``SparseCoder`` / ``fista``) on random shapes and layouts, against independent references.

Problems: any ``M, N`` from 1 to 10 (``M > N``, ``M = 1``, ``N = 1`` included),
duplicate columns, float32 / Fortran-order / non-contiguous arrays, ``lam`` from
0 to above ``lam_max``. Properties: ``converged`` is True exactly when every
per-sample duality gap is within ``tol``; a certified objective is within 1e-6
relative of an independent reference (scipy's NNLS, exact, where the problem
reduces to one; L-BFGS-B otherwise, where the certified objective may only be
lower and never below the reference minus the gap); the codes satisfy the KKT
conditions checked in numpy; ``lam >= lam_max`` gives zero codes; a sample
solved alone gets the objective it gets in a batch; the optimum as a warm start
stays the optimum; a warm start of the wrong shape gets a one-line error.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize, nnls
from scipy.linalg import solve_triangular

from gapbound.inference import SparseCoder, fista

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
TOL = 1e-10


def objective(D: np.ndarray, x: np.ndarray, lam: float, s: np.ndarray) -> float:
    return 0.5 * float(np.sum((x - D @ s) ** 2)) + lam * float(s.sum())


def reference(D: np.ndarray, x: np.ndarray, lam: float) -> tuple[float, bool]:
    """(objective at an independent solution, whether that solution is exact) of ``min P(s), s >= 0``.

    ``lam = 0``: NNLS on ``D``. Full column rank: ``P(s) = 0.5 ||R s - y||^2 + const`` with
    ``G = R'R`` and ``R'y = D'x - lam``, NNLS on ``R`` (both exact active-set solves). Else
    L-BFGS-B with tight tolerances (an upper bound on the optimum).
    """
    N = D.shape[1]
    if lam == 0.0:
        return objective(D, x, 0.0, nnls(D, x, maxiter=50 * N + 50)[0]), True
    G = D.T @ D
    if np.linalg.matrix_rank(D) == N and np.linalg.cond(G) < 1e8:
        R = np.linalg.cholesky(G).T
        y = solve_triangular(R.T, D.T @ x - lam, lower=True)
        return objective(D, x, lam, nnls(R, y, maxiter=50 * N + 50)[0]), True
    fun = lambda s: (objective(D, x, lam, s), D.T @ (D @ s - x) + lam)  # noqa: E731
    out = minimize(fun, np.zeros(N), jac=True, method="L-BFGS-B", bounds=[(0, None)] * N,
                   options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000})
    return objective(D, x, lam, out.x), False


@st.composite
def problems(draw):
    """``(D, X, lam_frac, layout)`` with unit-norm-ish columns, some duplicated, and a layout to hand them over in."""
    M, N, n = draw(st.integers(1, 10)), draw(st.integers(1, 10)), draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(M, N))
    D /= np.linalg.norm(D, axis=0)
    if N > 1 and draw(st.booleans()):  # a duplicate column
        D[:, draw(st.integers(1, N - 1))] = D[:, 0]
    X = rng.normal(size=(n, M)) + (D @ np.abs(rng.normal(size=(N, n)))).T
    lam_frac = draw(st.sampled_from([0.0, 1e-3, 0.05, 0.3, 0.9, 1.0, 1.5]))
    layout = draw(st.sampled_from(["c64", "f64", "strided64", "f32", "torch64"]))
    return D, X, lam_frac, layout


def handed(A: np.ndarray, layout: str):
    """``A`` in the given memory layout / dtype (same values, up to float32 rounding)."""
    if layout == "f64":
        return np.asfortranarray(A)
    if layout == "strided64":  # a non-contiguous view
        big = np.zeros((A.shape[0], 2 * A.shape[1]))
        big[:, ::2] = A
        return big[:, ::2]
    if layout == "f32":
        return A.astype(np.float32)
    if layout == "torch64":
        return torch.as_tensor(A)
    return np.ascontiguousarray(A)


def as64(A) -> np.ndarray:
    return A.double().numpy() if isinstance(A, torch.Tensor) else np.asarray(A, dtype=np.float64)


@FUZZ
@given(problems())
def test_certified_codes_match_an_independent_reference(problem):
    D0, X0, lam_frac, layout = problem
    D, X = handed(D0, layout), handed(X0, layout)
    D64, X64 = as64(D), as64(X)  # the values the solver sees
    lam_max = float(np.max(X64 @ D64))
    lam = max(lam_frac * lam_max, 0.0)
    coder = SparseCoder(D, lam, tol=TOL)
    res = coder.solve(X)
    S, gap = res.codes.double().cpu().numpy(), res.duality_gap.double().numpy()
    assert S.shape == (X64.shape[0], D64.shape[1]) and np.isfinite(S).all() and (S >= 0).all()
    assert np.isfinite(gap).all() and (gap >= 0).all()
    assert bool(res.converged) == bool((gap <= TOL).all())  # converged exactly when every certificate passes
    # float32 input is solved in float32 where the dictionary is float32: certificates are floored there
    exact_dtype = layout != "f32"
    if exact_dtype:  # lam = 0 included: NNLS with a nonzero residual (regression: was certified or not by rounding)
        assert res.converged
    for i in range(X64.shape[0]):
        P = objective(D64, X64[i], lam, S[i])
        assert abs(P - float(res.objective[i])) <= 1e-9 * max(1.0, P)  # the reported objective is the codes'
        ref, exact = reference(D64, X64[i], lam)
        if gap[i] <= TOL:
            assert P <= ref + 1e-6 * max(1.0, abs(ref))  # never above an independent solution
            assert ref >= P - gap[i] - 1e-9 * max(1.0, abs(ref))  # the certificate is a valid lower bound
            if exact:
                assert abs(P - ref) <= 1e-6 * max(1.0, abs(ref))
            r = D64.T @ (X64[i] - D64 @ S[i])  # KKT in numpy: r_j <= lam, = lam on the support
            scale = np.sqrt(2 * max(gap[i], 1e-300) + 1e-20) * np.linalg.norm(D64, axis=0) + 1e-7 * max(1.0, lam_max)
            assert (r <= lam + scale).all()
    if lam_frac >= 1.5 or (lam_frac >= 1.0 and lam_max <= 0):  # lam above every sample's lam_max: zero codes
        assert (S == 0).all() and res.converged


@FUZZ
@given(problems(), st.integers(0, 4))
def test_batch_of_one_equals_batch(problem, row):
    D, X, lam_frac, _ = problem
    lam = lam_frac * max(float(np.max(X @ D)), 0.0)
    coder = SparseCoder(D, lam, tol=TOL)
    batch = coder.solve(X)
    i = row % X.shape[0]
    alone = coder.solve(X[i:i + 1])
    assert bool(alone.converged) == bool(batch.duality_gap[i] <= TOL)
    if alone.converged:
        assert abs(float(alone.objective[0]) - float(batch.objective[i])) <= 2 * TOL + 1e-9 * abs(float(batch.objective[i]))
    # the batch's optimum as a warm start stays the optimum, certified where the cold solve was
    warm = coder.solve(X, init=batch.codes.numpy())
    assert bool(warm.converged) == bool((warm.duality_gap <= TOL).all())
    if batch.converged:
        assert warm.converged
        assert np.allclose(warm.objective.numpy(), batch.objective.numpy(), rtol=1e-9, atol=2 * TOL)
    # the same through the one-call entry point
    one = fista(D, X, lam, tol=TOL)
    assert bool(one.converged) == bool(batch.converged)
    if batch.converged:
        assert np.allclose(one.objective.numpy(), batch.objective.numpy(), rtol=1e-9, atol=2 * TOL)


@pytest.mark.parametrize("shape", [(3, 5), (4, 6), (4,), (4, 5, 1), (0, 5)])
@pytest.mark.parametrize("kind", ["numpy", "torch", "float32"])
def test_warm_start_of_the_wrong_shape_gets_a_one_line_error(shape, kind):
    rng = np.random.default_rng(0)
    D, X = rng.normal(size=(3, 5)), rng.normal(size=(4, 3))
    init = np.ones(shape)
    init = torch.as_tensor(init) if kind == "torch" else init.astype(np.float32) if kind == "float32" else init
    with pytest.raises(ValueError, match="init must have shape") as err:
        SparseCoder(D, 0.1).solve(X, init=init)
    assert "\n" not in str(err.value)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.integers(1, 12), st.integers(1, 40), st.sampled_from([1, 3, 70]), st.sampled_from([1e-3, 0.05, 0.3]),
       st.sampled_from(["optimum", "junk", "wide", "zeros"]), st.sampled_from(["c64", "f64", "strided64", "f32", "torch64"]),
       st.integers(0, 2**31 - 1))
def test_warm_starts_in_any_layout_end_at_the_cold_optimum(M, N, n, lam_frac, start, layout, seed):
    """Warm starts of every kind and layout (in place on the lean path, compacted on the parallel one
    for 70 samples where threads allow, the general path for torch) reach the cold start's objective."""
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(M, N))
    D /= np.linalg.norm(D, axis=0)
    X = rng.normal(size=(n, M)) + (D @ (np.abs(rng.normal(size=(N, n))) * (rng.random((N, n)) < 0.3))).T
    lam = lam_frac * max(float(np.max(X @ D)), 1e-12)
    coder = SparseCoder(D, lam, tol=TOL)
    cold = coder.solve(X)
    S = cold.codes.numpy()
    init = {"optimum": S, "junk": S + (rng.random(S.shape) < 0.2) * (S.max() + 1.0),
            "wide": np.abs(rng.normal(size=S.shape)), "zeros": np.zeros_like(S)}[start]
    warm = coder.solve(X, init=handed(init, layout))
    assert bool(warm.converged) == bool((warm.duality_gap <= TOL).all()) and bool(warm.converged) == bool(cold.converged)
    assert np.allclose(warm.objective.numpy(), cold.objective.numpy(), rtol=1e-9, atol=2 * TOL)


@pytest.mark.slow  # compiling the parallel kernel costs ~40 CPU s on a fresh cache (the default suite runs one thread)
@pytest.mark.parametrize("start", ["optimum", "junk", "nan"])
def test_parallel_lean_path_takes_compact_starts(start):
    """With two threads a batch of 70 runs the parallel kernel, which takes its starts compacted: the same
    optimum from any start, and a non-finite start gets the general path's error."""
    rng = np.random.default_rng(3)
    D = rng.normal(size=(12, 40))
    D /= np.linalg.norm(D, axis=0)
    X = rng.normal(size=(70, 12))
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        coder = SparseCoder(D, 0.1, tol=TOL)
        cold = coder.solve(X)
        S = cold.codes.numpy()
        init = {"optimum": S, "junk": S + (rng.random(S.shape) < 0.2), "nan": np.where(S > 0, np.nan, S)}[start]
        if start == "nan":
            with pytest.raises(ValueError, match="init contains NaN or infinite"):
                coder.solve(X, init=init)
            return
        warm = coder.solve(X, init=init)
    finally:
        torch.set_num_threads(saved)
    assert cold.converged and warm.converged
    assert np.allclose(warm.objective.numpy(), cold.objective.numpy(), rtol=1e-9, atol=2 * TOL)


@pytest.mark.parametrize("M,N", [(8, 4), (16, 8), (4, 16)])
@pytest.mark.parametrize("path", ["lean", "general"])
def test_nnls_with_a_nonzero_residual_is_certified(M, N, path):
    """Regression: at lam = 0 a support correlation of +1e-17 scaled the dual point to zero and the gap to the
    whole objective, so non-negative least squares was certified or not by rounding (M = 16, N = 8: 0 of 32,
    then 1000 FISTA iterations). Correlations within rounding of lam now count as feasible: certified, at
    scipy's NNLS objective, through the lean kernel and the general (torch) path, and the public duality_gap agrees."""
    from gapbound.inference import duality_gap

    rng = np.random.default_rng(M + N)
    D = rng.normal(size=(M, N))
    D /= np.linalg.norm(D, axis=0)
    X = rng.normal(size=(32, M))
    res = SparseCoder(D if path == "lean" else torch.as_tensor(D), 0.0, tol=TOL).solve(X if path == "lean" else torch.as_tensor(X))
    assert res.converged and res.n_iter == 0
    for i in range(32):
        assert abs(float(res.objective[i]) - reference(D, X[i], 0.0)[0]) <= 1e-9 * max(1.0, float(res.objective[i]))
    gap = duality_gap(torch.as_tensor(D), torch.as_tensor(X), res.codes.double(), 0.0)
    assert (gap <= TOL).all()
    # the slack is rounding-level: codes a visible step off the optimum are not certified
    off = res.codes.double() * 1.001
    assert (duality_gap(torch.as_tensor(D), torch.as_tensor(X), off, 0.0)[res.codes.sum(1) > 0] > TOL).all()
