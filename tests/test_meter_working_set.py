"""Working sets per sample (gapbound.inference.working_set): exact against the dense solvers, rigorous float32 screening."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gapbound.inference import duality_gap, fista, fista_l1_ball, objective
from gapbound.inference.working_set import Screen, l1_ball_working_set, lasso_working_set
from gapbound.meter import measure_gap


def frank_wolfe_gap(D: torch.Tensor, X: torch.Tensor, S: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Exact (dense) Frank-Wolfe gap of feasible ``S`` for the matched-L1 problem: ``g.s - tau min(0, min_j g_j)``, ``g = D^T (D s - x)``.

    Written independently of the working sets' certificate, to check it.
    """
    G = (S @ D.T - X) @ D
    return ((G * S).sum(1) - tau * G.min(1).values.clamp_max(0.0)).clamp_min(0.0)


def planted(M: int, N: int, n: int, K: int, noise: float = 0.02, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(M, N, generator=g, dtype=torch.float64)
    D /= D.norm(dim=0)
    idx = torch.rand(n, N, generator=g).argsort(1)[:, :K]
    S = torch.zeros(n, N, dtype=torch.float64).scatter_(1, idx, torch.rand(n, K, generator=g, dtype=torch.float64) + 0.5)
    return D, S @ D.T + noise * torch.randn(n, M, generator=g, dtype=torch.float64), S


@pytest.mark.parametrize("M,N,K,lam", [(64, 512, 5, 0.05), (32, 96, 8, 0.01), (16, 300, 3, 0.2)])
def test_lasso_agrees_with_the_exact_dense_solver(M, N, K, lam):
    D, X, S = planted(M, N, 60, K)
    ref = fista(D, X, lam, tol=1e-12, max_iter=20000)
    for init in (None, S):
        ws = lasso_working_set(D, X, lam, init=init, tol=1e-10)
        assert ws.converged and (ws.duality_gap <= 1e-10).all()
        codes = ws.dense()
        # the reported objective and certificate are those of the returned codes
        torch.testing.assert_close(ws.objective, objective(D, X, codes, lam), rtol=0, atol=1e-12)
        assert (duality_gap(D, X, codes, lam) <= 1e-10 + 1e-12).all()
        assert ((ws.objective - ref.objective).abs() <= ws.duality_gap + ref.duality_gap + 1e-12).all()


def test_per_sample_lam_equals_separate_solves():
    D, X, _ = planted(32, 200, 20, 4)
    lams = torch.linspace(0.01, 0.3, 20, dtype=torch.float64)
    ws = lasso_working_set(D, X, lams, tol=1e-11)
    for i in (0, 7, 19):
        one = lasso_working_set(D, X[i : i + 1], float(lams[i]), tol=1e-11)
        assert abs(float(ws.objective[i] - one.objective[0])) <= 2e-11
    assert torch.equal(ws.multiplier, lams)


def test_matched_l1_agrees_with_projected_fista():
    D, X, S = planted(48, 400, 40, 5)
    tau = 0.7 * S.sum(1)
    ws = l1_ball_working_set(D, X, tau, init=S, tol=1e-10)
    codes = ws.dense()
    assert ws.converged and (codes.sum(1) <= tau * (1 + 1e-12)).all() and (codes >= 0).all()
    # the reported certificate bounds the exact Frank-Wolfe gap of the returned codes
    assert (frank_wolfe_gap(D, X, codes, tau) <= ws.duality_gap + 1e-12).all()
    ref = fista_l1_ball(D, X, tau, init=S, tol=1e-10, max_iter=50000)
    assert ((ws.objective - ref.objective).abs() <= ws.duality_gap + ref.duality_gap + 1e-12).all()


def test_wide_matched_l1_optima_with_slot_compaction(monkeypatch):
    """Supports near the rank (a budget far above the planted codes' L1), slots full and compacted: still exact."""
    import gapbound.inference.working_set as ws

    calls = []

    def counted(*args):
        calls.append(args[-1])
        return ws_compact(*args)

    ws_compact = ws.compact_slots
    monkeypatch.setattr(ws, "compact_slots", counted)
    D, X, S = planted(20, 400, 24, 3, noise=0.2, seed=3)
    tau = 3.0 * S.sum(1)
    res = l1_ball_working_set(D, X, tau, init=S, tol=1e-10, width_cap=28)
    codes = res.dense()
    assert res.converged and calls  # working sets were compacted on the way
    assert (codes >= 0).all() and (codes.sum(1) <= tau * (1 + 1e-12)).all() and res.l0.float().mean() > 10
    assert (frank_wolfe_gap(D, X, codes, tau) <= res.duality_gap + 1e-12).all()
    ref = fista_l1_ball(D, X, tau, init=S, tol=1e-10, max_iter=100000)
    assert ((res.objective - ref.objective).abs() <= res.duality_gap + ref.duality_gap + 1e-12).all()
    # the multiplier: lam = 0 where the budget is not binding, else the L1 is the budget
    slack = codes.sum(1) < tau * (1 - 1e-9)
    assert (res.multiplier[slack] == 0).all()


def test_screen_bound_is_rigorous_and_needed():
    """The float32 screen's bound on the atoms it did not re-evaluate holds; without the margin it would not."""
    g = torch.Generator().manual_seed(1)
    M, N = 256, 2000
    base = torch.randn(M, 1, generator=g, dtype=torch.float64)
    # near-duplicate atoms: correlations differ far below float32 resolution
    D = base + 1e-9 * torch.randn(M, N, generator=g, dtype=torch.float64)
    D = D * torch.linspace(0.5, 2.0, N, dtype=torch.float64)  # unequal norms
    R = base.T.repeat(64, 1) * torch.rand(64, 1, generator=g, dtype=torch.float64) * 100 \
        + 1e-3 * torch.randn(64, M, generator=g, dtype=torch.float64)
    exact = R @ D
    screen = Screen(D)
    for k in (1, 5, 50):
        for n_cand in (0, 3 * k):  # more candidates than float64 re-evaluations: the bound covers them too
            cand, c, bound = screen.correlations(R, k, n_cand)
            assert cand.shape[1] == max(k, n_cand)
            torch.testing.assert_close(c[:, :k], exact.gather(1, cand[:, :k]), rtol=1e-13, atol=0)
            others = exact.scatter(1, cand[:, :k], -math.inf).amax(1)
            assert (others <= bound).all()
    screen.coef = 0.0  # no rounding margin: the float32 order misses atoms
    misses = 0
    for k in (1, 5, 50):
        cand, c, bound = screen.correlations(R, k)
        misses += int((exact.scatter(1, cand, -math.inf).amax(1) > bound).sum())
    assert misses > 0


def test_meter_beyond_the_gram_limit_is_certified_and_exact():
    """N = 5000 atoms (no Gram matrix): the meter's optimum matches the torch-backend exact solver."""
    D, X, S = planted(24, 5000, 12, 3, seed=2)
    D32 = D.float()

    def enc(x: torch.Tensor) -> torch.Tensor:  # a tied TopK encoder: good, not optimal codes
        z = x @ D32
        v, i = z.topk(3, dim=1)
        return torch.zeros_like(z).scatter_(1, i, v.clamp_min(0))

    rep = measure_gap(enc, D32, X.float(), lam=0.05)
    assert rep.certified and rep.summary()["gap_mean"] > 0
    Xf = X.float().double()
    with torch.no_grad():
        init = enc(X.float()).double()
    ref = fista(D32.double(), Xf, 0.05, init=init, tol=1e-10, max_iter=20000, backend="torch")
    assert np.all(np.abs(rep.lasso_opt - ref.objective.numpy()) <= rep.lasso_certificate + ref.duality_gap.numpy() + 1e-9)
    assert (rep.sq_err_l1 <= rep.sq_err_sae + 1e-12).all()


def test_bad_arguments():
    D, X, _ = planted(8, 20, 4, 2)
    with pytest.raises(ValueError, match="lam must be one finite value"):
        lasso_working_set(D, X, torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="tau must be"):
        l1_ball_working_set(D, X, -1.0)
    with pytest.raises(TypeError, match="complex"):
        lasso_working_set(D, X.to(torch.complex128), 0.1)
    with pytest.raises(ValueError, match="idx must hold atom positions"):
        lasso_working_set(D, X, 0.1, idx=torch.full((4, 1), 99), vals=torch.ones(4, 1, dtype=torch.float64))



def test_matched_l1_budget_that_allows_an_exact_fit_is_solved_and_certified():
    """Budgets above some exact reconstruction's L1 norm (M < N: NNLS at lam = 0 is singular): optimum 0.

    Regression: the restricted solve accepted lam = 0 where Lawson-Hanson had given up on the
    singular exact fit, and an untrained SAE's report had Frank-Wolfe gaps of order 1.
    """
    import gapbound

    rng = np.random.default_rng(0)
    D = rng.normal(size=(8, 16))
    D /= np.linalg.norm(D, axis=0)
    S = np.zeros((256, 16))
    for row in S:
        row[rng.choice(16, 3, replace=False)] = np.abs(rng.normal(size=3))
    torch.manual_seed(0)
    report = gapbound.measure_gap(gapbound.SAE(8, 16, activation="relu"), S @ D.T)
    assert float(report.l1_certificate.max()) <= report.tol_l1
    assert report.summary()["certified"]


def test_matched_l1_search_never_trusts_a_solve_that_gave_up(monkeypatch):
    """Planted fault: the restricted LASSO solve gives up once, at lam > 0, leaving codes whose L1 is far off.

    The search along lam must neither move its bracket nor stop on that solve: it still ends at
    the lam (and codes) of the honest search. Regression: a solve that gave up at lam > 0 set
    the bracket's end from its meaningless sum(s), and the search converged outside the bracket
    of the true multiplier.
    """
    from gapbound.inference import working_set_kernel as wsk

    rng = np.random.default_rng(3)
    M, ns, c = 10, 24, 32
    D = rng.normal(size=(M, ns))
    D /= np.linalg.norm(D, axis=0)
    x = D[:, :4] @ (rng.random(4) + 0.5) + 0.05 * rng.normal(size=M)
    G = np.zeros((c, c))
    G[:ns, :ns] = D.T @ D
    b = np.zeros(c)
    b[:ns] = D.T @ x
    tau = 1.5

    def run(l1, lam0):
        sv, fo, L, y = np.zeros(c), np.zeros(c, np.int64), np.zeros((c, c)), np.zeros(c)
        work = [np.empty(c, np.int64), np.empty(c), np.empty(c), np.empty(c, np.int64), np.empty(c),
                np.empty(c, np.int64), np.empty(c), np.zeros(c, np.bool_)]
        _, lam = l1(G, b, sv, ns, fo, 0, L, y, lam0, tau, *work, True)
        return sv, lam

    sv_ref, lam_ref = run(wsk._l1, 0.0)
    assert lam_ref > 0 and abs(sv_ref.sum() - tau) <= 1e-12
    honest = wsk._lasso
    calls = []

    def gives_up_once(G, b, sv, ns, fo, nv, L, y, lam, *rest):
        out = honest(G, b, sv, ns, fo, nv, L, y, lam, *rest)
        calls.append(lam)
        if len(calls) == 1:  # the first solve (lam above the multiplier) gives up with codes 10x too large
            sv *= 10.0
            return 0, False
        return out

    monkeypatch.setattr(wsk, "_lasso", gives_up_once)
    lam_start = 0.5 * (lam_ref + float(b.max()))
    sv, lam = run(wsk._l1.py_func, lam_start)  # the search in Python, calling the faulty solve
    assert calls[0] == lam_start and len(calls) > 1
    assert abs(lam - lam_ref) <= 1e-9 * lam_ref
    np.testing.assert_allclose(sv, sv_ref, atol=1e-9)
