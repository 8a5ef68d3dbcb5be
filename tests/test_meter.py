"""Gap meter: certificates, agreement with the simulation, SAEs from files and shard stores, the CLI, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from gapbound.synthetic.data import SyntheticConfig, make_problem
from gapbound.inference import objective, solve
from gapbound.meter import main, measure_gap
from gapbound.models import SAE, Dictionary, load_sae, save_sae
from gapbound.training import Autoencoder, TrainConfig, tensor_batches, train


@pytest.fixture(scope="module")
def known_d():
    """A short-trained SAE on the paper's known-D problem (N=16, M=8, K=3)."""
    p = make_problem(SyntheticConfig(N=16, M=8, K=3, n_train=512, n_test=256, seed=0))
    torch.manual_seed(0)
    model = Autoencoder(SAE(8, 16), Dictionary(8, 16, weight=p.D, trainable=False))
    train(model, tensor_batches(p.X_train), TrainConfig(steps=300, lr=3e-3, l1=1e-4, progress=False))
    return p, model.encoder.eval()


def test_meter_gap_is_certified_and_matches_the_simulation(known_d):
    p, enc = known_d
    lam = 1e-3
    rep = measure_gap(enc, p.D, p.X_test, lam=lam)
    s = rep.summary()
    assert rep.certified and s["certified"]
    assert (rep.lasso_gap >= 0).all() and (rep.sq_err_l1 <= rep.sq_err_sae + 1e-12).all()
    assert s["gap_mean"] > 0  # a short-trained SAE is far from per-sample optimal
    # The simulation's SAE+ITO measure: objective of the SAE codes minus that of ITO from them.
    D, X = p.D.double(), p.X_test.double()
    with torch.no_grad():
        codes = enc(p.X_test).double()
    ito = solve(D, X, lam, method="fista", init=codes, tol=1e-12, max_iter=20000)
    sim_gap = (objective(D, X, codes, lam) - ito.objective).numpy()
    np.testing.assert_allclose(rep.lasso_gap, sim_gap, rtol=1e-6, atol=rep.tol_lasso + 1e-12)
    assert np.all(rep.lasso_gap <= sim_gap + rep.lasso_certificate + ito.duality_gap.numpy() + 1e-12)


def test_meter_through_saelens_layout_and_cli(tmp_path, known_d, capsys):
    p, enc = known_d
    b = torch.linspace(-0.5, 0.5, 8)
    sae = SAE.from_weights(enc.linear.weight.T.detach(), enc.linear.bias.detach(), p.D.T.contiguous(), b,
                           apply_b_dec_to_input=True)  # encode(x + b) = enc(x): the same SAE on shifted activations
    save_sae(tmp_path / "sae", sae)
    X = (p.X_test + b).numpy()
    np.save(tmp_path / "acts.npy", X)
    assert main([str(tmp_path / "sae"), str(tmp_path / "acts.npy"), "--json", "--lam", "0.001"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["certified"] is True and printed["not_certified_because"] is None
    # The decoder bias is removed before comparing, so the gap equals the bias-free one.
    direct = measure_gap(enc, p.D, p.X_test, lam=1e-3).summary()
    assert printed["gap_mean"] == pytest.approx(direct["gap_mean"], rel=1e-4)
    assert printed["gap_mean"] >= 0 and printed["certificate_max"] <= printed["tol_lasso"]
    # the same numbers from (n, ctx, d) contexts, as a shard store holds them
    np.save(tmp_path / "ctx.npy", X.reshape(64, 4, 8))
    assert main([str(tmp_path / "sae"), str(tmp_path / "ctx.npy"), "--json", "--lam", "0.001"]) == 0
    assert json.loads(capsys.readouterr().out)["gap_mean"] == pytest.approx(printed["gap_mean"], rel=1e-9)


def test_meter_reads_a_shard_store(tmp_path, known_d, capsys):
    from gapbound.lm.shards import ShardStore

    p, enc = known_d
    sae = SAE.from_weights(enc.linear.weight.T.detach(), enc.linear.bias.detach(), p.D.T.contiguous(), torch.zeros(8),
                           apply_b_dec_to_input=False)
    sae.save(tmp_path / "sae")
    X = p.X_test.numpy().reshape(32, 8, 8)
    store = ShardStore.create(tmp_path / "store", d_model=8, context_length=8, dtype="float32", fingerprint={"test": 1})
    store.append_shard(X[:20], np.zeros((20, 8), np.int32))
    store.append_shard(X[20:], np.zeros((12, 8), np.int32))
    assert main([str(tmp_path / "sae"), str(tmp_path / "store"), "--json", "--lam", "0.001", "--max-samples", "200"]) == 0
    got = json.loads(capsys.readouterr().out)
    ref = measure_gap(sae, X=p.X_test[:200], lam=1e-3).summary()
    assert got["n_samples"] == 200 and got["gap_mean"] == pytest.approx(ref["gap_mean"], rel=1e-9)


def test_sae_form_uses_its_own_decoder_and_normalisation(known_d):
    p, enc = known_d
    sae = SAE.from_weights(enc.linear.weight.T.detach(), enc.linear.bias.detach(), p.D.T.contiguous(), torch.zeros(8),
                           apply_b_dec_to_input=False, input_norm="constant_norm_rescale")
    X = p.X_test[:64]
    rep = measure_gap(sae, X, lam=1e-3)
    Xn = X * (8**0.5 / X.norm(dim=1, keepdim=True))
    ref = measure_gap(enc, p.D, Xn, lam=1e-3)
    np.testing.assert_allclose(rep.lasso_sae, ref.lasso_sae, rtol=1e-6)
    np.testing.assert_allclose(rep.lasso_gap, ref.lasso_gap, rtol=1e-5, atol=rep.tol_lasso)
    with pytest.raises(ValueError, match="b_dec comes from the SAE"):
        measure_gap(sae, X=X, b_dec=torch.zeros(8))


def test_meter_matched_l1_agrees_with_projected_fista(known_d):
    """The meter's matched-L1 errors and projected FISTA's reach the same optimum, each within its own certificate."""
    from gapbound.inference import fista_l1_ball

    p, enc = known_d
    rep = measure_gap(enc, p.D, p.X_test, lam=1e-3, rtol=1e-9)
    assert rep.certified and (rep.l1_certificate <= rep.tol_l1).all()
    with torch.no_grad():
        S0 = enc(p.X_test).double().clamp_min(0.0)
    ref = fista_l1_ball(p.D.double(), p.X_test.double(), S0.sum(1), init=S0, tol=1e-9, max_iter=20000)
    half_sq = 0.5 * rep.sq_err_l1
    assert np.all(np.abs(half_sq - ref.objective.numpy()) <= rep.l1_certificate + ref.duality_gap.numpy() + 1e-12)
    assert np.all(rep.sq_err_l1 < rep.sq_err_sae)  # a short-trained SAE is not optimal at its own L1 either


def test_lasso_only(known_d):
    p, enc = known_d
    full = measure_gap(enc, p.D, p.X_test[:64], lam=1e-3)
    fast = measure_gap(enc, p.D, p.X_test[:64], lam=1e-3, matched_l1=False)
    np.testing.assert_array_equal(fast.lasso_gap, full.lasso_gap)
    s = fast.summary()
    assert fast.l1_certificate is None and s["sq_err_matched_l1_mean"] is None and s["certified"] and s["seconds"] > 0
    json.dumps(s, allow_nan=False)


def test_implied_lam_default(known_d):
    p, enc = known_d
    rep = measure_gap(enc, p.D, p.X_test[:64])
    assert rep.lam_source == "implied" and rep.lam > 0 and rep.certified


def test_bad_inputs(tmp_path, known_d, capsys):
    p, enc = known_d
    with pytest.raises(ValueError, match="zero columns"):
        measure_gap(enc, torch.zeros(8, 16), p.X_test)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        measure_gap(enc, p.D, p.X_test, lam=-1.0)
    with pytest.raises(ValueError, match="b_dec"):
        measure_gap(enc, p.D, p.X_test, b_dec=torch.zeros(3))
    with pytest.raises(ValueError, match="encoder output must have shape"):
        measure_gap(lambda x: x, p.D, p.X_test)
    with pytest.raises(ValueError, match="matching the dictionary's rows"):
        measure_gap(enc, p.D, torch.zeros(5, 7))
    with pytest.raises(TypeError, match="callable"):
        measure_gap(3, p.D, p.X_test)
    # the CLI: one line and exit status 2
    assert main([str(tmp_path / "missing"), str(tmp_path / "nothing.npy")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    sae = SAE(8, 16)
    sae.save(tmp_path / "sae")
    np.save(tmp_path / "wrong.npy", np.zeros((4, 7), np.float32))
    assert main([str(tmp_path / "sae"), str(tmp_path / "wrong.npy")]) == 2
    assert "d=7 but the SAE reads d_in=8" in capsys.readouterr().err
    assert main([str(tmp_path / "sae"), str(tmp_path / "nothing.npy")]) == 2
    assert "do not exist" in capsys.readouterr().err


def test_damaged_files_and_bad_activations_end_in_one_line(tmp_path, capsys):
    """Issue 15: damaged SAE weights, .npz / garbage / complex / empty activations, an --out folder: one line, exit 2."""
    sae = SAE(6, 4)
    sae.save(tmp_path / "sae")
    np.save(tmp_path / "acts.npy", np.ones((4, 6), np.float32))
    weights = tmp_path / "sae" / "sae_weights.safetensors"
    good = weights.read_bytes()

    def refused(*argv: str, match: str) -> None:
        assert main([*map(str, argv)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and match in err, err

    weights.write_bytes(good[: len(good) // 2])
    refused(tmp_path / "sae", tmp_path / "acts.npy", match="sae_weights.safetensors is not a readable safetensors file")
    weights.write_bytes(b"garbage" * 10)
    refused(tmp_path / "sae", tmp_path / "acts.npy", match="truncated or corrupted")
    weights.write_bytes(good)
    np.savez(tmp_path / "x.npz", a=np.ones((3, 6)))
    refused(tmp_path / "sae", tmp_path / "x.npz", match="x.npz are an .npz archive")
    (tmp_path / "g.npy").write_bytes(b"garbage")
    refused(tmp_path / "sae", tmp_path / "g.npy", match="g.npy are not a readable .npy array")
    np.save(tmp_path / "c.npy", np.ones((4, 6), complex))
    refused(tmp_path / "sae", tmp_path / "c.npy", match="must be real floating point")
    np.save(tmp_path / "e.npy", np.zeros((0, 6), np.float32))
    refused(tmp_path / "sae", tmp_path / "e.npy", match="hold no samples")
    refused(tmp_path / "sae", tmp_path / "acts.npy", "--out", tmp_path, match="is a folder; give a file")
    refused(tmp_path / "sae", tmp_path / "acts.npy", "--out", tmp_path / "no" / "gap.npz", match="does not exist")
    # a good run writes --out atomically (no temporary file left) and reads back
    assert main([str(tmp_path / "sae"), str(tmp_path / "acts.npy"), "--out", str(tmp_path / "gap.npz"), "--json"]) == 0
    capsys.readouterr()
    assert json.loads(str(np.load(tmp_path / "gap.npz")["summary"]))["n_samples"] == 4
    assert not list(tmp_path.glob(".gap.npz.*"))


def test_damaged_dictionary_learning_weights(tmp_path, capsys):
    from gapbound.models.dictionary_learning import DL_WEIGHTS_FILE

    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "config.json").write_text(json.dumps({"trainer": {"dict_class": "AutoEncoder", "activation_dim": 6,
                                                                          "dict_size": 4}}))
    (tmp_path / "dl" / DL_WEIGHTS_FILE).write_bytes(b"\x80\x02garbage")
    with pytest.raises(ValueError, match="not a readable torch file"):
        load_sae(tmp_path / "dl")


def test_complex_and_empty_activations_refused_in_the_api(known_d):
    p, enc = known_d
    with pytest.raises(TypeError, match="complex"):
        measure_gap(enc, p.D, p.X_test.to(torch.complex64))
    with pytest.raises(ValueError, match="no samples"):
        measure_gap(enc, p.D, p.X_test[:0])
