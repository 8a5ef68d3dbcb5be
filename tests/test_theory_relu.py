"""The ReLU-class branch and bound: it matches an independent exhaustive enumeration, and it completes at the
issue's sizes (slow; timing lives in ``benchmarks/certify_relu.py``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gapbound.synthetic.data import random_dictionary
from gapbound.theory import lower_bound, witness_codes
from gapbound.theory.bounds import normalise_scale
from gapbound.theory.certificate import default_max_partners
from gapbound.theory.drops import _drop_search
from gapbound.theory.relu import relu_row_cost
from gapbound.theory.witness import witness_inputs


def _rows(D: np.ndarray, codes: np.ndarray):
    Dn, _ = normalise_scale(D)
    A = np.hstack([witness_inputs(Dn, codes), np.ones((len(codes), 1))])
    for i in range(D.shape[1]):
        act, ina = codes[:, i] > 0, codes[:, i] == 0
        yield i, A[act], codes[act, i], A[ina]


@pytest.mark.parametrize("seed,N,M,design,K", [(0, 8, 4, "pairs", 2), (1, 6, 3, "exact", 3), (2, 7, 3, "exact", 3)])
def test_branch_and_bound_equals_exhaustive_drop_enumeration(seed, N, M, design, K):
    """Every row: the branch-and-bound bound equals the certified minimum over *all* drop sets (each a convex
    problem with the hard constraint z <= 0 on dropped entries), and the best row found attains it."""
    D = random_dictionary(M, N, seed).numpy().astype(np.float64)
    codes = witness_codes(N, K, design)
    res = lower_bound(D, codes, "relu")
    assert res.optimal, res.truncated_rows
    for (i, Aa, y, Bi), row in zip(_rows(D, codes), res.rows):
        full = _drop_search(Aa, y, Bi, True, math.inf, 1 << 16)
        assert full.k_done == len(y)  # every drop set enumerated (or pruned by its cost)
        assert row.bound == pytest.approx(full.value, rel=1e-6, abs=1e-9)
        u = np.array(row.weights)
        assert row.upper == pytest.approx(float(relu_row_cost(Aa @ u, y, Bi @ u)), rel=1e-12)
        assert row.bound <= row.upper <= row.bound * (1 + 1e-6) + 1e-12


def test_budget_cut_is_reported_and_still_valid():
    D = random_dictionary(4, 8, 3).numpy().astype(np.float64)
    codes = witness_codes(8, 3, "exact")
    full = lower_bound(D, codes, "relu")
    cut = lower_bound(D, codes, "relu", max_subproblems=3)
    assert full.optimal and not cut.optimal
    assert any("branch and bound stopped" in why for _, why in cut.truncated_rows)
    assert 0 <= cut.bound <= full.bound


@pytest.mark.slow
@pytest.mark.parametrize("N,M,K,design", [(20, 10, 4, "exact"), (32, 16, 3, "pairs")])
def test_issue_sizes_complete_with_optimal(N, M, K, design):
    """Issue 13: ReLU certify completes with optimal=True at N=20, M=10, K=4 (exactly-K codes) and N=32, M=16,
    K=3 (pairs); the bound is attained by the ReLU rows it returns."""
    D = random_dictionary(M, N, 0).numpy().astype(np.float64)
    codes = witness_codes(N, K, design, default_max_partners(N, M, None))
    res = lower_bound(D, codes, "relu")
    assert res.optimal, res.truncated_rows
    upper = sum(r.upper for r in res.rows)
    assert res.bound <= upper <= res.bound * (1 + 1e-6)
