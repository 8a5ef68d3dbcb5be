"""The TopK class bound (``encoder_class="topk"``): exact re-verification, planted faults, no counterexample.

``proofs/02_witness_bound.md`` 2.5. Each fault replaces one step of the pipeline the way a bug would; the
exact verifier (:func:`gapbound.theory.exact.verify_exact`) or the charging check (``proofs/check_topk.py``)
must name it.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from gapbound.models.activations import topk_relu
from gapbound.theory import bounds, duality, lower_bound, relu, topk, witness_codes
from gapbound.theory.exact import verify_exact
from gapbound.training.witness import fit_encoder
from proofs import check_topk

RATIONAL_D = np.array([[1, 0, 1, 1, 2], [0, 1, 1, -1, 1], [1, 1, 0, 2, -1]], dtype=float) / 4


def _dictionary(seed, M: int = 3, N: int = 5) -> np.ndarray:
    if seed == "rational":
        return RATIONAL_D
    D = np.random.default_rng(seed).normal(size=(M, N))
    return D / np.linalg.norm(D, axis=0)


@pytest.mark.parametrize("seed", ["rational", 0, 2])  # dictionaries whose best charge is not zero
def test_topk_certificates_verify_exactly(seed):
    """certified <= exact dual value <= exact optimum per node, every drop set covered, weights within budget."""
    D = _dictionary(seed)
    codes = witness_codes(5, 2, "pairs")
    res = lower_bound(D, codes, "topk", keep_certificates=True)
    rep = verify_exact(D, codes, res)
    assert rep.ok, rep.failures[:5]
    assert rep.n_rows_covered == 5 and rep.n_optimum_unresolved == rep.n_unresolved_with_exact_g
    charged = [(c, z) for c in res.certificates for z in range(len(c.keep)) if c.charge is not None]
    assert charged and rep.n_optimum_skipped == len(charged)  # every row of the pairs design carries a charge
    assert rep.n_optimum_checked + rep.n_optimum_trivial + rep.n_optimum_skipped >= rep.n_subproblems // 2
    # the charged nodes' optimum (linear pieces: not computed exactly) by a conic solver, in float
    for cert, z in charged:
        opt = _node_optimum(cert, z)
        assert cert.value[z] <= opt + 1e-6 * (1 + abs(opt)), (cert.value[z], opt)
    # between the free gate and the ReLU optimum (weights <= 1 on a subset of ReLU's inactive terms)
    gated, relu_b = lower_bound(D, codes, "linear-gated").bound, lower_bound(D, codes, "relu").bound
    assert gated < res.bound <= relu_b * (1 + 1e-9)
    assert res.topk_k == 2 and not res.optimal
    assert all("relaxation" in why for _, why in res.truncated_rows)


def _node_optimum(cert, z: int) -> float:
    """The charged node relaxation's minimum by cvxpy (``proofs/02_witness_bound.md`` 2.5.2): a kept entry's
    envelope of ``min(P1, P2)`` is ``min over 0 <= s <= mu/2 of (z - y - s)^2 + 2 (C / mu) s``."""
    import cvxpy as cp

    Aa, y, (mu, C) = cert.Aa, cert.y, cert.charge
    u = cp.Variable(Aa.shape[1])
    keep, drop = cert.keep[z] > 0, cert.dropped[z] > 0
    free = ~keep & ~drop
    terms, cons = [float((y[drop] ** 2).sum() + C[free].sum())], []
    for t in np.flatnonzero(keep):
        if mu[t] > 0:
            s = cp.Variable()
            terms.append(cp.square(Aa[t] @ u - y[t] - s) + 2 * C[t] / mu[t] * s)
            cons += [s >= 0, s <= mu[t] / 2]
        else:
            terms.append(cp.square(Aa[t] @ u - y[t]))
    c = cert.c if cert.c.ndim == 1 else cert.c[z]
    for j, w in enumerate(cert.sw[z]):
        if np.isinf(w):
            cons.append(cert.L[j] @ u <= c[j])
        elif w < 0:
            terms.append(-w * cp.pos(cert.L[j] @ u - c[j]))
        elif w > 0:
            terms.append(w**2 * cp.square(cp.pos(cert.L[j] @ u - c[j])))
    prob = cp.Problem(cp.Minimize(cp.sum(cp.hstack(terms))), cons)
    prob.solve(solver="CLARABEL")
    return float(prob.value)


def test_exactly_K_design_verifies_exactly():
    """Exactly-K codes (m = k): no sample weights, only the charged active entries."""
    D = _dictionary(2)
    codes = witness_codes(5, 3, "exact")
    res = lower_bound(D, codes, "topk", keep_certificates=True, topk_k=3)
    rep = verify_exact(D, codes, res)
    assert rep.ok, rep.failures[:5]
    assert res.bound >= lower_bound(D, codes, "linear-gated").bound * (1 - 1e-9)  # equal up to rounding


def test_no_counterexample_trained_and_random_topk_encoders():
    """TopK(k) encoders, with and without ReLU, trained on the witness error (warm and cold) or random, for
    k = 2 and 3, never beat the bound computed for k = 2 (valid for every k >= 2)."""
    M, N = 4, 8
    D = _dictionary(5, M, N)
    codes = witness_codes(N, 2, "pairs")
    res = lower_bound(D, codes, "topk")
    for k in (2, 3):
        for init in (res.weights, None):
            err, _ = fit_encoder(D, codes, "topk", k=k, restarts=1, steps=200, seed=k, init=init)
            assert err >= res.bound, (k, err, res.bound)
    X, S = torch.from_numpy(codes @ D.T), torch.from_numpy(codes)
    rng = np.random.default_rng(0)
    W = torch.from_numpy(rng.normal(size=(1000, N, M)))
    b = torch.from_numpy(rng.normal(size=(1000, 1, N)))
    W[0], b[0] = torch.from_numpy(res.weights[:, :M]), torch.from_numpy(res.weights[:, M])
    Z = torch.einsum("rnm,tm->rtn", W, X) + b
    for k in (2, 3):
        plain = torch.zeros_like(Z).scatter(-1, Z.topk(k, dim=-1).indices, Z.topk(k, dim=-1).values)
        for out in (topk_relu(Z, k), plain):
            assert float(((out - S) ** 2).sum((1, 2)).min()) >= res.bound


def test_charging_check_passes_and_catches_a_larger_budget(monkeypatch):
    check_topk.check()
    original = topk.sample_budgets
    monkeypatch.setattr(topk, "sample_budgets", lambda codes, k: original(codes, k) + 1)
    with pytest.raises(AssertionError, match="charged bound"):
        check_topk.check_charging(ks=(1,))


@pytest.mark.parametrize("fault", [{"cap_factor": Fraction(22, 5)}, {"mu_share": Fraction(9, 10)},
                                   {"delta": Fraction(5, 2), "amplitudes": (1,)},
                                   {"cap_factor": Fraction(22, 5), "extra": 1}])
def test_hinge_charge_check_catches_each_loosened_condition(fault):
    """proofs/02 2.5.1 (derived, not built): caps 4.4 delta, sum mu < sum lam and delta > 2 min y each have
    counterexamples; the stated conditions hold at other deltas and at the boundary delta = 2 min y."""
    with pytest.raises(AssertionError, match="hinge charge"):
        check_topk.check_hinge_charge(**fault)
    check_topk.check_hinge_charge(Fraction(2), amplitudes=(1,))


# ------------------------------------------------------------------ planted faults


def _sign_flip(lam, y, mu, sw, c, conj, excess=None):
    t = ORIGINAL["dual_terms"](lam, y, mu, sw, c, conj, excess)
    t[:, lam.shape[1]:2 * lam.shape[1]] *= -1  # -lam^2 becomes +lam^2
    return t


def _skip_dropped_child(states, branch):
    kids = ORIGINAL["_children"](states, branch)
    kids[1::2] = kids[0::2]
    return kids


class _ShiftedWeightedRow(topk._TopKRow):
    """The weighted inactive terms relu(z + 1/2)^2 instead of relu(z)^2 (above what the charging proves)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.c[2 * len(self.y):] = -0.5


class _QuarterOffsetRow(topk._TopKRow):
    """Free charged entries' hinge offset y + mu/4 instead of y + mu/2 (above the convex envelope of g)."""

    def __init__(self, *args):
        super().__init__(*args)
        n = len(self.y)
        self.c[n:2 * n] = self.y + self.ch.mu / 4


ORIGINAL = {"dual_terms": duality.dual_terms, "_children": relu._children, "witness_inputs": bounds.witness_inputs,
            "sample_budgets": topk.sample_budgets, "weight_roots": topk.weight_roots,
            "_exact_charge": topk._exact_charge, "charge_constant": topk.charge_constant,
            "multipliers": duality.multipliers}


def _inflated_hinges(codes, lam, mu, delta):
    lam, mu, C = ORIGINAL["_exact_charge"](codes, lam, mu, delta)
    return 1.2 * lam, mu, C


def _loose_hinge_multipliers(*args, **kw):
    lam, mu, nu = ORIGINAL["multipliers"](*args, **kw)
    return lam, np.where(args[5] < 0, -args[5], mu), nu  # linear hinges at their full slope, not half of it

FAULTS = {
    "sign flip in a dual term": (duality, "dual_terms", _sign_flip, "dual"),
    "dropped rounding term": (duality, "_sum_error", lambda t: 0.0 * t[:, 0], "dual"),
    "wrong drop cost": (duality, "drop_cost", lambda dropped, y: (1 - dropped) @ (y * y), "drop cost"),
    "perturbed witness input (+1e-9)": (bounds, "witness_inputs", lambda D, S: ORIGINAL["witness_inputs"](D, S) + 1e-9,
                                        "witness inputs"),
    "skipped branch": (relu, "_children", _skip_dropped_child, "neither certified"),
    "sample budget k - m + 1": (topk, "sample_budgets", lambda c, k: ORIGINAL["sample_budgets"](c, k) + 1,
                                "weighted entry"),
    "weights 1.5x over budget": (topk, "weight_roots", lambda w, b: 1.5 * ORIGINAL["weight_roots"](w, b),
                                 "TopK weights sum"),
    "weighted term shifted (relu(z + 1/2)^2)": (topk, "_TopKRow", _ShiftedWeightedRow, "not the topk relaxation"),
    "charge: kept conjugate without its excess": (duality, "conjugate_excess", lambda lam, mu, C: 0 * lam, "dual"),
    "charge: sum lam 1.2x sum mu": (topk, "_exact_charge", _inflated_hinges, "charge"),
    "charge: C + 1/64": (topk, "charge_constant", lambda m, y, d: ORIGINAL["charge_constant"](m, y, d) + 1 / 64,
                         "C above charge_constant"),
    "charge: free offset y + mu/4": (topk, "_TopKRow", _QuarterOffsetRow, "not the topk relaxation"),
    "charge: hinge multiplier = slope": (duality, "multipliers", _loose_hinge_multipliers, "above half its slope"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_planted_fault_is_caught(fault, monkeypatch):
    module, name, faulty, message = FAULTS[fault]
    monkeypatch.setattr(module, name, faulty)
    caught = []
    for seed in (0, 1):
        D = _dictionary(seed)
        codes = witness_codes(5, 2, "pairs")
        res = lower_bound(D, codes, "topk", keep_certificates=True)
        caught += [f for f in verify_exact(D, codes, res, check_optimum=False).failures if message in f]
        if caught:
            break
    assert caught, f"{fault} was not caught"


def test_weights_only_bound_is_the_former_one_and_below_the_hinge_charge():
    """``topk_hinge=False`` runs the weights-only search (its certificates carry no charge); the charged bound's
    search starts from it, so on a dictionary whose charge helps it is higher; bad values are a TypeError."""
    D, codes = _dictionary(0), witness_codes(5, 2, "pairs")
    plain = lower_bound(D, codes, "topk", topk_hinge=False, keep_certificates=True)
    charged = lower_bound(D, codes, "topk")
    assert all(c.charge is None for c in plain.certificates) and verify_exact(D, codes, plain).ok
    assert lower_bound(D, codes, "linear-gated").bound < plain.bound < charged.bound
    with pytest.raises(TypeError, match="topk_hinge"):
        lower_bound(D, codes, "topk", topk_hinge=1)


def test_bad_k_is_a_one_line_error():
    D, codes = _dictionary(0), witness_codes(5, 2, "pairs")
    with pytest.raises(ValueError, match="topk_k=1 is below the witness codes' sparsity 2"):
        lower_bound(D, codes, "topk", topk_k=1)
    with pytest.raises(TypeError, match="topk_k"):
        lower_bound(D, codes, "topk", topk_k=2.5)


def test_certify_and_cli_use_k_equal_K(capsys):
    """``certify(..., encoder_class="topk")`` bounds TopK(k) for k >= K; the CLI prints it and the relaxation reason."""
    from gapbound.theory import certify
    from gapbound.theory.cli import main

    D = _dictionary(3, 4, 8)
    res = certify(D, 3, encoder_class="topk")
    assert res.lower_bound == lower_bound(D, witness_codes(8, 3, "pairs"), "topk", topk_k=3).bound
    assert not res.optimal
    assert main(["--N", "8", "--M", "4", "--K", "2", "--encoder-class", "topk"]) == 0
    out = capsys.readouterr().out
    assert "TopK encoders" in out and "relaxation" in out
