"""Exact rational re-verification of every certificate class, and planted faults that the checks must catch.

Each fault is planted by replacing one step of the certificate pipeline (the way a
bug would change it); the exact verifier (:func:`gapbound.theory.exact.verify_exact`)
must report it. Without a fault it must report nothing.
"""

from __future__ import annotations

import numpy as np
import pytest

from gapbound.theory import bounds, drops, duality, lower_bound, relu, witness_codes
from gapbound.theory.exact import verify_exact


def _dictionary(seed: int, M: int = 3, N: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(M, N))
    return D / np.linalg.norm(D, axis=0)


def _rational_dictionary(M: int = 3, N: int = 5) -> np.ndarray:
    """Small-denominator rationals: the witness inputs D s are exact in float64."""
    return np.array([[1, 0, 1, 1, 2], [0, 1, 1, -1, 1], [1, 1, 0, 2, -1]], dtype=float)[:M, :N] / 4


CASES = [("linear-gated", 0), ("relu", 0), ("relu", 1), ("linear-gated", "rational"), ("relu", "rational")]


def _run(cls: str, seed, design: str = "pairs", K: int = 2, **kw):
    D = _rational_dictionary() if seed == "rational" else _dictionary(seed)
    codes = witness_codes(D.shape[1], K, design)
    res = lower_bound(D, codes, cls, keep_certificates=True, **kw)
    return D, codes, res


@pytest.mark.parametrize("cls,seed", CASES)
def test_every_certificate_verifies_exactly(cls, seed):
    """certified float bound <= exact dual value <= exact optimum, for every subproblem; every drop set covered."""
    D, codes, res = _run(cls, seed)
    rep = verify_exact(D, codes, res)
    assert rep.ok, rep.failures[:5]
    # every subproblem's exact optimum was found, or its value is at most its exact drop cost, or (degenerate
    # rational dictionary only) its multipliers were corrected to g = 0 exactly, so f >= dual holds for every u
    assert rep.n_optimum_checked + rep.n_optimum_trivial + rep.n_optimum_unresolved == rep.n_subproblems
    assert rep.n_optimum_unresolved == rep.n_unresolved_with_exact_g
    assert rep.n_optimum_unresolved == 0 or seed == "rational"
    assert rep.n_optimum_checked >= rep.n_subproblems // 3, rep
    assert rep.n_rows_covered == D.shape[1]
    assert res.bound > 0
    # the ReLU dropped-entry constraint is hard (no penalty): the bound is the class optimum on every dictionary,
    # the degenerate rational one included (the penalty weight 1e4 left rows 0 and 2 below it)
    assert res.optimal, res.truncated_rows


def test_exactly_K_design_verifies_exactly():
    D, codes, res = _run("relu", 2, design="exact", K=3)
    rep = verify_exact(D, codes, res)
    assert rep.ok, rep.failures[:5]


def test_jumprelu_certificates_verify_exactly():
    """JumpReLU branch and bound: every node's relaxation (threshold as a variable, box |theta| <= t1), its
    components and exact optimum, and every separation proof of a pruned node, in rational arithmetic."""
    D, codes, res = _run("jumprelu", 0)
    rep = verify_exact(D, codes, res)
    assert rep.ok, rep.failures[:5]
    assert rep.n_optimum_checked + rep.n_optimum_trivial + rep.n_optimum_unresolved == rep.n_subproblems
    assert rep.n_optimum_unresolved == rep.n_unresolved_with_exact_g
    assert rep.n_optimum_checked >= rep.n_subproblems // 3
    assert rep.n_separation_proofs > 0  # pruned nodes: gate patterns no JumpReLU row realises
    assert res.optimal, res.truncated_rows


# ------------------------------------------------------------------ planted faults


def _sign_flip(lam, y, mu, sw, c, conj, excess=None):
    t = ORIGINAL_DUAL_TERMS(lam, y, mu, sw, c, conj, excess)
    n = lam.shape[1]
    t[:, n:2 * n] *= -1  # the -lam^2 column becomes +lam^2
    return t


def _skip_last(n, k, ysq, best):
    return ORIGINAL_COMBINATIONS(n, k, ysq, best)[:-1]


def _skip_dropped_child(states, branch):
    kids = ORIGINAL_CHILDREN(states, branch)
    kids[1::2] = kids[0::2]  # the 'dropped' child of every branching is replaced by its 'kept' sibling
    return kids


ORIGINAL_DUAL_TERMS = duality.dual_terms
ORIGINAL_COMBINATIONS = drops._combinations
ORIGINAL_CHILDREN = relu._children
ORIGINAL_INPUTS = bounds.witness_inputs

FAULTS = {
    "sign flip in a dual term (+|lam|^2)": (duality, "dual_terms", _sign_flip, "dual"),
    "dropped rounding term (dual sum error = 0)": (duality, "_sum_error", lambda t: 0.0 * t[:, 0], "dual"),
    "wrong drop cost (kept instead of dropped)": (duality, "drop_cost", lambda dropped, y: (1 - dropped) @ (y * y),
                                                  "drop cost"),
    "perturbed witness input (+1e-9)": (bounds, "witness_inputs", lambda D, S: ORIGINAL_INPUTS(D, S) + 1e-9,
                                        "witness inputs"),
    "skipped subproblem (last drop set of each size)": (drops, "_combinations", _skip_last, "neither certified"),
    "skipped branch (the 'dropped' child of each ReLU node)": (relu, "_children", _skip_dropped_child,
                                                               "neither certified"),
}
# the drop enumeration serves the free gate, the branch and bound the ReLU class
NOT_USED = {("relu", "skipped subproblem (last drop set of each size)"),
            ("linear-gated", "skipped branch (the 'dropped' child of each ReLU node)")}


@pytest.mark.parametrize("cls,fault", [(c, f) for c in ("linear-gated", "relu") for f in FAULTS if (c, f) not in NOT_USED])
def test_planted_fault_is_caught(cls, fault, monkeypatch):
    module, name, faulty, message = FAULTS[fault]
    monkeypatch.setattr(module, name, faulty)
    caught = []
    for seed in (0, 1, 2):
        D, codes, res = _run(cls, seed)
        rep = verify_exact(D, codes, res, check_optimum=False)
        caught += [f for f in rep.failures if message in f]
    assert caught, f"{fault} was not caught"


@pytest.mark.parametrize("cls", ["relu", "jumprelu"])
def test_corrupted_polished_multipliers_are_caught(cls):
    """Certificates keep the better of the multipliers read off Newton's point and their correction towards
    g = 0 (``duality._polish``, which must keep them valid); a corrupted multiplier of either kind is caught:
    a negative hinge multiplier, or a residual multiplier on an entry that is not kept."""
    D, codes, res = _run(cls, 0)
    certs = [c for c in res.certificates if isinstance(c, duality.Certificate) and c.mu.size and (c.keep == 0).any()]
    assert certs
    c = certs[0]
    z = int(np.flatnonzero((c.keep == 0).any(1))[0])
    t = int(np.flatnonzero(c.keep[z] == 0)[0])
    mu, lam = c.mu.copy(), c.lam.copy()
    c.mu[z, 0] = -0.5
    assert any("negative multiplier" in f for f in verify_exact(D, codes, res, check_optimum=False).failures)
    c.mu[:] = mu
    c.lam[z, t] = 0.25
    assert any("not kept" in f for f in verify_exact(D, codes, res, check_optimum=False).failures)
    c.lam[:] = lam
    assert verify_exact(D, codes, res, check_optimum=False).ok


def test_rank_deficient_kept_sets_use_exact_multipliers():
    """The rational dictionary has exactly rank-deficient kept sets: their certificates are exact corrections
    (g = 0 in rational arithmetic), raising the ReLU bound above the drop-cost fallback; a corrupted
    corrected multiplier is caught."""
    D, codes, res = _run("relu", "rational")
    exact = [(c, z) for c in res.certificates for z in c.exact]
    assert exact and res.bound > 13.0  # 4.24 with the drop-cost fallback, 6.24 with the penalised constraint
    c, z = exact[0]
    lam, m, nu = c.exact[z]
    t = next(i for i, v in enumerate(lam) if v != 0)
    c.exact[z] = ([v + (i == t) * v / 1000 for i, v in enumerate(lam)], m, nu)
    rep = verify_exact(D, codes, res, check_optimum=False)
    assert any("g exactly 0" in f for f in rep.failures)


def test_integer_solve_matches_exact_gauss_jordan():
    """``rational.integer_solve`` (a square part chosen by float pivoting, the other equations checked exactly,
    the full elimination as fallback) against ``Fraction`` Gauss-Jordan on random over-determined integer
    systems: consistent ones, inconsistent ones (one right-hand side moved by 1), rank-deficient ones, and
    ones whose first rows are singular (the fallback); 68-bit entries as in the multiplier correction."""
    from fractions import Fraction

    from gapbound.theory.rational import integer_solve, rational_solve

    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 7))
        m = n + int(rng.integers(0, 6))
        scale = 2**68 if trial % 3 == 0 else 4
        B = [[int(rng.integers(-2**31, 2**31)) * (scale >> 31 or 1) + int(rng.integers(-4, 4)) for _ in range(n)]
             for _ in range(m)]
        if trial % 5 == 1 and n > 1:  # a repeated column: rank-deficient, integer_solve must refuse
            for r in B:
                r[-1] = r[0]
        if trial % 5 == 2 and m > n:  # the first rows repeat one row: a square part of them is singular
            B[:n] = [list(B[0]) for _ in range(n)]
        x = [int(v) for v in rng.integers(-9, 9, size=n)]
        b = [sum(a * c for a, c in zip(row, x)) for row in B]
        if trial % 4 == 3:
            b[int(rng.integers(0, m))] += 1
        got = integer_solve(B, b)
        ref = rational_solve([[Fraction(v) for v in r] for r in B], [Fraction(v) for v in b])
        full_rank = np.linalg.matrix_rank(np.array(B, dtype=float)) == n
        if ref is None or not full_rank:
            assert got is None or not full_rank and all(
                sum(Fraction(a) * Fraction(v, got[1]) for a, v in zip(r, got[0])) == c for r, c in zip(B, b))
        else:
            num, den = got
            assert den > 0 and [Fraction(v, den) for v in num] == ref
