"""Executable checks of the certified amortisation gap (gapbound.theory, gapbound.theory.cli).

Property tests over random dictionaries: (1) validity, trained encoders never
beat the certified bound; (2) positivity; (3) per-sample inference reaches ~0
on the same codes; (4) where the hypotheses fail the bound is 0 and a linear
encoder reaches ~0. Bad input fails with clear errors.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gapbound.theory.cli import main as certify_main
from gapbound.synthetic.data import random_dictionary
from gapbound.inference import solve
from gapbound.theory.duality import _envelope, envelope_conjugate
from gapbound.training.witness import fit_encoder
from gapbound.theory import (
    certify,
    exact_decode,
    lower_bound,
    spark_exceeds,
    support_search_decode,
    witness_codes,
    witness_inputs,
)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
SETTINGS = dict(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
sizes = st.tuples(st.integers(6, 9), st.integers(0, 10_000)).flatmap(
    lambda t: st.tuples(st.just(t[0]), st.integers(3, t[0] - 2), st.just(t[1]))
)


def _dict(M: int, N: int, seed: int) -> torch.Tensor:
    return random_dictionary(M, N, seed, dtype=torch.float64)


# ---------------------------------------------------------------- witness sets


def test_witness_pairs_structure():
    c = witness_codes(6, 2)
    assert c.shape == (2 * 6 + 15, 6)
    assert set(np.unique(c)) == {0.0, 1.0, 2.0}
    nnz = (c > 0).sum(1)
    assert nnz.min() == 1 and nnz.max() == 2


@pytest.mark.parametrize("N,K", [(8, 2), (9, 3), (16, 3)])
def test_witness_exact_has_exactly_K_and_covers_pairs(N, K):
    c = witness_codes(N, K, "exact")
    assert ((c > 0).sum(1) == K).all()
    co = (c > 0).astype(int).T @ (c > 0).astype(int)
    assert (co[~np.eye(N, dtype=bool)] > 0).all(), "every pair must co-occur"
    # every source's amplitude is varied inside some support (forces w.d_i = 1 and b = 0)
    assert all((c[:, i] == 2).any() for i in range(N))


def test_witness_band_partners_for_large_N():
    c = witness_codes(64, 2, max_partners=16)
    assert len(c) < 2 * 64 + 64 * 9


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "D,K,err",
    [
        (np.full((3, 5), np.nan), 2, ValueError),
        (np.hstack([np.eye(3), np.zeros((3, 1))]), 2, ValueError),
        (np.random.default_rng(0).normal(size=(3, 5)), 6, ValueError),
        (np.random.default_rng(0).normal(size=(3, 5)), 0, ValueError),
        (np.random.default_rng(0).normal(size=(3, 5)), 2.5, TypeError),
        ("not a matrix", 2, TypeError),
        (np.ones(5), 2, ValueError),
        (np.random.default_rng(0).normal(size=(3, 5)) + 1j, 2, TypeError),
        (np.arange(15).reshape(3, 5) + 1, 2, TypeError),
        (torch.ones(3, 5, dtype=torch.int64), 2, TypeError),
        (np.full((3, 5), np.inf), 2, ValueError),
    ],
)
def test_certify_bad_input(D, K, err):
    with pytest.raises(err):
        certify(D, K)


def test_lower_bound_bad_arguments():
    D = _dict(4, 6, 0)
    with pytest.raises(ValueError, match="encoder_class"):
        lower_bound(D, witness_codes(6, 2), encoder_class="sigmoid")
    with pytest.raises(ValueError, match="codes"):
        lower_bound(D, np.ones((3, 5)))
    with pytest.raises(ValueError, match="non-negative"):
        lower_bound(D, -np.ones((3, 6)))
    with pytest.raises(ValueError, match="design"):
        witness_codes(6, 2, design="random")


def test_cli_bad_input_is_clean(capsys):
    assert certify_main(["--N", "6", "--M", "4", "--K", "9"]) == 2
    assert "K" in capsys.readouterr().err


# ---------------------------------------------------------------- the properties


@pytest.mark.parametrize("device", DEVICES)
@settings(**SETTINGS)
@given(sizes)
def test_validity_trained_encoders_never_beat_bound(device, size):
    """(1) SAEs trained directly on the witness error stay above the certified bounds."""
    N, M, seed = size
    D = _dict(M, N, seed)
    codes = witness_codes(N, 2)
    gated = lower_bound(D, codes, "linear-gated").bound
    relu = lower_bound(D, codes, "relu")
    for act, k in (("relu", None), ("topk", 2), ("jumprelu", None)):
        # first restart warm-started at the bound's own minimiser: the strongest honest attempt
        err, _ = fit_encoder(D, codes, act, k=k, restarts=2, steps=300, seed=seed, init=relu.weights, device=device)
        assert err >= gated, (act, err, gated)
        if act == "relu":
            assert err >= relu.bound, (err, relu.bound)
    assert relu.bound >= gated - 1e-9  # the ReLU class is smaller, its bound can only be larger


@settings(max_examples=3, deadline=None)
@given(st.tuples(st.integers(5, 7), st.integers(0, 10_000)).flatmap(
    lambda t: st.tuples(st.just(t[0]), st.integers(3, t[0] - 2), st.just(t[1]))))
def test_jumprelu_bound_valid_and_ordered(size):
    """JumpReLU class: trained JumpReLU SAEs (exact threshold search) and the JumpReLU encoder built from the
    bound's own rows never go below it; it lies between the free-gate and the ReLU (theta = 0) bounds."""
    N, M, seed = size
    D = _dict(M, N, seed)
    codes = witness_codes(N, 2)
    gated = lower_bound(D, codes, "linear-gated").bound
    relu = lower_bound(D, codes, "relu").bound
    jump = lower_bound(D, codes, "jumprelu")
    assert gated * (1 - 1e-9) <= jump.bound <= relu * (1 + 1e-9)
    err, enc = fit_encoder(D, codes, "jumprelu", restarts=2, steps=300, seed=seed, init=jump.weights)
    assert err >= jump.bound, (err, jump.bound)
    # the bound's own minimising rows, with each latent's best threshold, form a JumpReLU encoder
    Z = np.hstack([witness_inputs(D, codes), np.ones((len(codes), 1))]) @ jump.weights.T
    own = sum(min(((Z[:, i] * (Z[:, i] > th) - codes[:, i]) ** 2).sum() for th in np.r_[0.0, np.maximum(Z[:, i], 0)])
              for i in range(N))
    assert own >= jump.bound
    assert all(r.threshold_interval is not None and 0 <= r.threshold_interval[0] <= r.threshold_interval[1]
               for r in jump.rows)


def test_jumprelu_budget_is_deprecated_and_ignored():
    """The former relaxation's refinement budget no longer changes the bound; passing it warns, a bad value errs."""
    D, codes = _dict(3, 6, 2), witness_codes(6, 2)
    plain = lower_bound(D, codes, "jumprelu").bound
    with pytest.warns(FutureWarning, match="jumprelu_budget is ignored"):
        assert lower_bound(D, codes, "jumprelu", jumprelu_budget=12).bound == plain
    with pytest.raises(ValueError, match="jumprelu_budget"):
        lower_bound(D, codes, "jumprelu", jumprelu_budget=-1)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-5.0, 8.0), min_size=1, max_size=20))
def test_inactive_term_and_its_conjugate(zs):
    """The ReLU class's inactive term is relu(z)^2, and nu = e'/2 with the library's conjugate is Fenchel-Young tight."""
    z = np.array(zs)
    val, nu, curv = _envelope(z)
    assert np.array_equal(val, np.maximum(z, 0.0) ** 2) and (curv >= 0).all() and (nu >= 0).all()
    # Fenchel-Young at every other point: e(w) >= 2 nu w - e*(2 nu), with equality at w = z
    conj = envelope_conjugate(nu)
    assert np.allclose(val, 2 * nu * z - conj, atol=1e-9 * (1 + np.abs(val)))
    w = np.linspace(-5, 8, 101)[:, None]
    assert (_envelope(w)[0] >= 2 * nu * w - conj - 1e-9 * (1 + w**2)).all()


@settings(**SETTINGS)
@given(sizes)
def test_bound_strictly_positive(size):
    """(2) generic D with M < N: every row's active codes are inconsistent, the bound is > 0."""
    N, M, seed = size
    res = certify(_dict(M, N, seed), 2, check_uniqueness=False)
    assert res.lower_bound > 0
    assert all(r.bound > 0 for r in res.rows)


@settings(**SETTINGS)
@given(sizes)
def test_per_sample_inference_reaches_zero(size):
    """(3) exact decoding and FISTA drive the witness error to ~0, far below the bound."""
    N, M, seed = size
    D = _dict(M, N, seed)
    codes = witness_codes(N, 2)
    bound = lower_bound(D, codes).bound
    dec = exact_decode(D, codes, K=2, check_uniqueness=True)
    assert dec.unique_sparse is spark_exceeds(D, 4)
    assert dec.error < 1e-10 * bound
    # FISTA solves the L1 problem: it can only be expected to recover codes whose L1 solution is
    # certified unique (strict dual certificate); those must reach ~0, the bound does not apply per code
    sel = dec.l1_certified
    assume(sel.sum() >= len(codes) // 2)
    X = torch.from_numpy(witness_inputs(D, codes[sel]))
    ito = solve(D, X, 1e-6, method="fista", max_iter=20000, tol=1e-14)
    err = float(((ito.codes.double() - torch.from_numpy(codes[sel])) ** 2).sum())
    assert err < 1e-3 * bound


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("N", [4, 6])
def test_gap_vanishes_full_rank(N, device):
    """(4) M >= N with full column rank: bound 0 with the reason, and pinv(D) reaches ~0."""
    D = _dict(N + 1, N, 3)
    res = certify(D, 2)
    assert res.lower_bound == 0.0 and not res.hypotheses_hold
    assert "full column rank" in res.reason
    codes = torch.from_numpy(res.witness_codes).to(device)
    X = codes @ D.to(device).T
    W = torch.linalg.pinv(D.to(device))
    assert float(((torch.relu(X @ W.T) - codes) ** 2).sum()) < 1e-20


def test_gap_vanishes_K1():
    """K = 1: singleton codes; reported as outside the theorem, and the free-gate bound is 0 anyway."""
    D = _dict(4, 8, 0)
    res = certify(D, 1)
    assert res.lower_bound == 0.0 and not res.hypotheses_hold and "K = 1" in res.reason
    assert lower_bound(D, witness_codes(8, 1)).bound < 1e-9


def test_bound_survives_column_scaling_of_codes():
    """Scaling all codes by c scales every encoder's optimum by c^2 (rescale W's bias): so does the bound."""
    D = _dict(4, 7, 11)
    codes = witness_codes(7, 2)
    b1 = lower_bound(D, codes).bound
    b3 = lower_bound(D, 3 * codes).bound
    assert b3 == pytest.approx(9 * b1, rel=1e-6)


def test_support_search_recovers_where_l1_fails():
    D = _dict(5, 8, 1)  # a dictionary where basis pursuit misses one witness code
    codes = witness_codes(8, 2)
    dec = exact_decode(D, codes, K=2, check_uniqueness=False)
    assert dec.bp_error > 1e-3
    assert np.abs(support_search_decode(D, witness_inputs(D, codes), 2) - codes).max() < 1e-9
    assert certify(D, 2).hypotheses_hold


def test_cli_json(capsys):
    assert certify_main(["--N", "8", "--M", "5", "--K", "3", "--seed", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key, typ in (("lower_bound", float), ("witness_codes", list), ("exact_decoder_error", float),
                     ("hypotheses_hold", bool), ("reason", str), ("encoder_class", str)):
        assert isinstance(out[key], typ), key
    assert out["lower_bound"] > 0 and out["hypotheses_hold"]
    assert len(out["witness_codes"][0]) == 8


def test_cli_dictionary_file(tmp_path, capsys):
    path = tmp_path / "D.npy"
    np.save(path, _dict(6, 6, 0).numpy())
    assert certify_main(["--dictionary", str(path), "--K", "2"]) == 0
    assert "hypotheses hold: False" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("K", [2, 3])
def test_validity_paper_size_many_restarts(K):
    D = _dict(8, 16, 5)
    codes = witness_codes(16, K, "exact")
    gated = lower_bound(D, codes).bound
    relu = lower_bound(D, codes, "relu").bound
    for act, k in (("relu", None), ("topk", K), ("jumprelu", None)):
        err, _ = fit_encoder(D, codes, act, k=k, restarts=6, steps=3000)
        assert err >= gated
        if act == "relu":
            assert err >= relu


def test_witness_error_leaves_the_callers_encoder_alone():
    """witness_error evaluates a float64 copy: a float32 encoder stays float32 (it used to be converted in place)."""
    from gapbound.models import SAE
    from gapbound.theory import witness_error

    D = _dict(4, 6, 0)
    codes = witness_codes(6, 2)
    enc = SAE(4, 6)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    err = witness_error(enc, D, codes)
    assert enc.linear.weight.dtype == torch.float32
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())
    X = torch.from_numpy(witness_inputs(D, codes))
    with torch.no_grad():
        ref = float(((enc.double()(X) - torch.from_numpy(codes)) ** 2).sum())
    assert err == pytest.approx(ref, rel=1e-12)


# ---------------------------------------------------------------- scale, optimality, hypotheses


def test_bound_does_not_depend_on_the_scale_of_D():
    """The class optimum is scale invariant (W absorbs the scale); so is the bound: bitwise for powers of two."""
    D = _dict(4, 7, 3).numpy()
    codes = witness_codes(7, 2)
    ref = lower_bound(D, codes, "relu")
    for s in (2.0**20, 2.0**-20):
        assert lower_bound(D * s, codes, "relu").bound == ref.bound
    for s in (1e6, 1e-6, 3.0):
        res = certify(D * s, 2, encoder_class="relu")
        assert res.hypotheses_hold and res.lower_bound == pytest.approx(ref.bound, rel=1e-8)
    # the returned weights are an encoder for the caller's D: same witness error at every scale
    W = lower_bound(D * 1e-6, codes, "relu").weights
    Z = np.hstack([witness_inputs(D * 1e-6, codes), np.ones((len(codes), 1))]) @ W.T
    assert float(((np.maximum(Z, 0) - codes) ** 2).sum()) == pytest.approx(sum(r.upper for r in ref.rows), rel=1e-6)


def test_optimal_flag_and_truncated_rows():
    """Complete enumerations: optimal, each row within OPTIMAL_RTOL of an actual encoder; a budget cut: not optimal, with the reason."""
    D = _dict(4, 7, 3)
    codes = witness_codes(7, 2)
    full = lower_bound(D, codes, "relu")
    assert full.optimal and not full.truncated_rows
    assert all(r.bound <= r.upper <= r.bound * (1 + 1e-6) for r in full.rows)
    cut = lower_bound(D, codes, "relu", max_subproblems=2)
    assert not cut.optimal and cut.bound <= full.bound
    assert cut.truncated_rows and all("max_subproblems" in why for _, why in cut.truncated_rows)
    # the rows the budget cut are exactly those whose full enumeration needed more than 2 subproblems
    assert {r for r, _ in cut.truncated_rows} <= {r.row for r in full.rows if r.n_subproblems > 2}


def test_hypotheses_report_witness_sparsity_and_paper_condition(capsys):
    res = certify(_dict(8, 16, 0), 8)  # 8 log 2 = 5.5 <= 8
    assert res.witness_sparsity == 2 and res.paper_condition
    assert "2-sparse" in res.reason and "K log(N/K)" in res.reason and "design='exact'" in res.reason
    assert not certify(_dict(4, 16, 0), 3).paper_condition  # 3 log(16/3) = 5.0 > 4
    exact = certify(_dict(8, 12, 0), 3, design="exact")
    assert exact.witness_sparsity == 3 and exact.paper_condition == (3 * np.log(12 / 3) <= 8)
    assert certify_main(["--N", "8", "--M", "5", "--K", "2", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "optimal (the bound is the class optimum on the witness set): True" in out


@pytest.mark.parametrize("arr", [np.arange(15).reshape(3, 5) + 1, np.ones((3, 5)) + 1j, np.full((3, 5), np.nan)])
def test_cli_bad_dictionary_file_is_one_line(tmp_path, capsys, arr):
    path = tmp_path / "D.npy"
    np.save(path, arr)
    assert certify_main(["--dictionary", str(path), "--K", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "D" in err


def test_memory_too_large_refused_up_front(capsys, monkeypatch):
    """Issue 15: sizes that cannot fit are refused before anything is allocated (CLI exit 2, API ValueError)."""
    import time

    t0 = time.perf_counter()
    assert certify_main(["--N", "1000000", "--M", "3", "--K", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert time.perf_counter() - t0 < 5.0
    assert len(err.splitlines()) == 1 and "--N=1000000" in err and "GiB" in err and "available" in err
    # the API makes the same check (ValueError), here with the available memory pinned to 1 MiB
    monkeypatch.setattr("gapbound.theory.witness.available_memory", lambda: 2**20)
    with pytest.raises(ValueError, match="N=64 needs about .* GiB"):
        certify(random_dictionary(8, 64, 0), 3)


def test_witness_memory_estimate_counts_the_codes():
    """The up-front estimate counts the pairs design's codes exactly (band and full) without building them."""
    from gapbound.theory.witness import witness_memory_bytes

    for N in (5, 6, 7, 16, 33):
        for mp in (None, 1, 2, 3, 4, 6, 40):
            assert witness_memory_bytes(N, 8, 2, "pairs", mp)[0] == len(witness_codes(N, 2, "pairs", mp))
        n_lo = witness_memory_bytes(N, 8, 3, "exact")[0]
        assert 0 < n_lo <= len(witness_codes(N, 3, "exact"))
