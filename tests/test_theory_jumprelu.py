"""The JumpReLU branch and bound: valid against trained encoders, optimal where it says so (an actual JumpReLU
encoder, evaluated by the SAE forward pass, reaches the bound), and planted faults in its certificates caught."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from gapbound.theory import lower_bound, witness_codes
from gapbound.theory import jumprelu as jr
from gapbound.theory.exact import verify_exact
from gapbound.theory.separation import check_proof
from gapbound.training.witness import fit_encoder


def _dictionary(seed: int, M: int, N: int) -> np.ndarray:
    D = np.random.default_rng(seed).normal(size=(M, N))
    return D / np.linalg.norm(D, axis=0)


@pytest.mark.parametrize("seed,M,N", [(1, 3, 6), pytest.param(2, 4, 8, marks=pytest.mark.slow)])
def test_valid_and_optimal_against_actual_encoders(seed, M, N):
    D, codes = _dictionary(seed, M, N), witness_codes(N, 2, "pairs")
    res = lower_bound(D, codes, "jumprelu")
    trained, _ = fit_encoder(D, codes, "jumprelu", restarts=2, steps=300, seed=seed)
    own, _ = fit_encoder(D, codes, "jumprelu", restarts=1, steps=0, seed=seed, init=res.weights)  # no training
    assert res.bound <= trained and res.bound <= own
    relu = lower_bound(D, codes, "relu").bound
    assert lower_bound(D, codes, "linear-gated").bound <= res.bound <= relu * (1 + 1e-9)
    if res.optimal:  # the bound is the class optimum: the rows it returns, as an SAE, reach it
        assert own <= res.bound * (1 + 1e-5) + 1e-9
    else:
        assert res.truncated_rows
    # most rows close exactly (the rest: reported, with the reason)
    assert sum(r.truncated is None for r in res.rows) >= N // 2


def test_row_cost_and_threshold():
    z = np.array([[0.5, 2.0, 1.0, -1.0]])
    y = np.array([0.0, 2.0, 1.0, 0.0])
    cost, theta = jr.best_threshold(z, y)
    assert theta[0] == 0.5 and cost[0] == 0.0  # drops the inactive 0.5, passes 2.0 and 1.0
    lo, hi = jr.threshold_interval(z, theta)
    assert lo[0] == 0.5 and hi[0] == 1.0  # any threshold in [0.5, 1.0) gates alike; 1.0 itself drops the 1.0


def test_threshold_interval_gates_alike_inside_and_differs_at_its_end():
    rng = np.random.default_rng(0)
    for _ in range(200):
        z = np.round(rng.normal(size=(1, 7)), 1)  # ties and zeros included
        y = np.where(rng.random(7) < 0.5, np.abs(np.round(rng.normal(size=7), 1)), 0.0)
        cost, theta = jr.best_threshold(z, y)
        lo, hi = jr.threshold_interval(z, theta)
        top = hi[0] if np.isfinite(hi[0]) else lo[0] + 1.0
        for th in np.linspace(lo[0], top, 9)[:-1]:
            assert np.array_equal(z > th, z > theta[0])
        if np.isfinite(hi[0]):
            assert not np.array_equal(z > hi[0], z > theta[0])


# ------------------------------------------------------------------ planted faults


def _certified():
    D, codes = _dictionary(0, 3, 5), witness_codes(5, 2, "pairs")
    return D, codes, lower_bound(D, codes, "jumprelu", keep_certificates=True)


def test_fault_hinge_offset_too_small(monkeypatch):
    """A free active entry's hinge ``relu(z - y - max(0, t1 - 2y))^2`` with its offset lowered by 0.1 is not below
    the entry's drop cost on the interval: the relaxation check must catch it."""
    original = jr._JumpReluRow.parts

    def parts(self, states):
        out = list(original(self, states))
        C = out[4].copy()
        C[:, 2 * self.n:3 * self.n] -= 0.1 * (self.y > 0)
        out[4] = C
        return tuple(out)

    monkeypatch.setattr(jr._JumpReluRow, "parts", parts)
    D, codes, res = _certified()
    rep = verify_exact(D, codes, res, check_optimum=False)
    assert any("not the jumprelu relaxation" in f for f in rep.failures)


def test_fault_threshold_box_too_small(monkeypatch):
    """The |u| bound uses |theta| <= box; a box below t1 must be caught."""
    original = jr._certify_recorded

    def halved(problem, keep, sw, u, needed, **kw):
        kw["box"] = kw["box"] / 2
        return original(problem, keep, sw, u, needed, **kw)

    monkeypatch.setattr(jr, "_certify_recorded", halved)
    D, codes, res = _certified()
    rep = verify_exact(D, codes, res, check_optimum=False)
    assert any("not the jumprelu relaxation" in f for f in rep.failures)


def _proofs(res) -> list:
    return [c for c in res.certificates if isinstance(c, jr.SeparationProof)]


def test_fault_separation_proofs():
    """A pruned node's proof with one weight moved by 2^-40 (the exact identity fails), or about points other
    than the witness inputs (rows moved by 1e-9): each caught."""
    D, codes, res = _certified()
    assert _proofs(res) and verify_exact(D, codes, res, check_optimum=False).ok
    p = _proofs(res)[0]
    exact_rows = [[Fraction(v) for v in r] for r in p.Ap], [[Fraction(v) for v in r] for r in p.Ad]
    assert check_proof(*exact_rows, p.lam, p.mu) is None
    mu = p.mu
    p.mu = [mu[0] + Fraction(1, 2**40)] + list(mu[1:])  # lam still sums to 1: only the identity can fail
    rep = verify_exact(D, codes, res, check_optimum=False)
    assert any("separation proof invalid" in f for f in rep.failures)
    p.mu, p.Ap = mu, p.Ap + 1e-9
    rep = verify_exact(D, codes, res, check_optimum=False)
    assert any("witness inputs" in f for f in rep.failures)


def test_bound_equals_independent_search_on_a_tiny_dictionary():
    """M = 2, N = 4 (14 codes, 3 parameters per row): random search plus Nelder-Mead over (w, b), each row's error
    with its best threshold, finds exactly the bound's row values (the bound is the class optimum there)."""
    from scipy.optimize import minimize

    from gapbound.theory.bounds import normalise_scale
    from gapbound.theory.witness import witness_inputs

    D, codes = _dictionary(100, 2, 4), witness_codes(4, 2, "pairs")
    res = lower_bound(D, codes, "jumprelu")
    Dn, _ = normalise_scale(D)
    A = np.hstack([witness_inputs(Dn, codes), np.ones((len(codes), 1))])
    rng = np.random.default_rng(7)
    for row in res.rows:
        y = codes[:, row.row]
        U = rng.normal(size=(40000, 3)) * rng.lognormal(0.0, 1.5, size=(40000, 1))
        cost = jr.jumprelu_row_cost(U @ A.T, y)

        def f(u):
            return float(jr.jumprelu_row_cost((A @ u)[None], y)[0])

        found = min([cost.min()] + [minimize(f, u0, method="Nelder-Mead",
                                             options=dict(xatol=1e-12, fatol=1e-14, maxiter=3000)).fun
                                    for u0 in U[np.argsort(cost)[:8]]])
        assert row.bound <= found + 1e-12
        assert found <= row.bound * (1 + 1e-6) + 1e-12, (row.row, row.bound, found)


def test_leaves_cover_every_pattern_and_threshold():
    """The certified nodes and separation proofs cover every (gate pattern, threshold) of every row (exact)."""
    D, codes, res = _certified()
    rep = verify_exact(D, codes, res, check_optimum=False)
    assert rep.ok, rep.failures
    assert rep.n_rows_covered == len(res.rows)


def test_fault_child_dropped(monkeypatch):
    """A search that never explores the second child of its first branching leaves a region no certified node
    covers (the bound it reports may even look fine): the coverage check must catch it. Dropping one row's
    certificates after the fact is caught too."""
    D, codes, res = _certified()
    nodes = [c for c in res.certificates if not isinstance(c, jr.SeparationProof) and c.tag["row"] == 0]
    res.certificates = [c for c in res.certificates if not any(c is x for x in nodes)]
    assert res.rows[0].bound > 0
    assert any(f.startswith("row 0: no certified node covers") for f in verify_exact(D, codes, res, False).failures)

    original = jr._JumpReluRow.children
    calls = []

    def children(self, states, branch):
        kids = original(self, states, branch)
        if not calls:  # the first batch's children: every second one replaced by its sibling
            kids[1::2] = kids[0::2]
        calls.append(1)
        return kids

    monkeypatch.setattr(jr._JumpReluRow, "children", children)
    res = lower_bound(D, codes, "jumprelu", keep_certificates=True)
    rep = verify_exact(D, codes, res, check_optimum=False)
    assert any("no certified node covers" in f for f in rep.failures), rep.failures
