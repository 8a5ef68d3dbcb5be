"""Gap meter and SAELens layout: round trips, certificates, agreement with the simulation, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from gapbound.synthetic.data import SyntheticConfig, make_problem
from gapbound.models.encoders import SAE, Dictionary
from gapbound.inference import objective, solve
from gapbound.meter import main, measure_gap
from gapbound.models.saelens import SAELensSAE, load_sae, save_sae
from gapbound.training.loop import Autoencoder, TrainConfig, tensor_batches, train


@pytest.fixture(scope="module")
def known_d():
    """A short-trained SAE on the paper's known-D problem (N=16, M=8, K=3)."""
    p = make_problem(SyntheticConfig(N=16, M=8, K=3, n_train=512, n_test=256, seed=0))
    torch.manual_seed(0)
    model = Autoencoder(SAE(8, 16), Dictionary(8, 16, weight=p.D, trainable=False))
    train(model, tensor_batches(p.X_train), TrainConfig(steps=300, lr=3e-3, l1=1e-4, progress=False))
    return p, model.encoder.eval()


@pytest.mark.parametrize("activation, kw", [("relu", {}), ("topk", {"k": 3}), ("jumprelu", {"threshold": 0.05})])
def test_saelens_round_trip(tmp_path, activation, kw):
    torch.manual_seed(1)
    enc = SAE(8, 16, activation=activation, **kw)
    D = torch.randn(8, 16)
    b = torch.randn(8)
    save_sae(tmp_path / "sae", enc, D / D.norm(dim=0), b_dec=b, hook_name="blocks.0.hook_resid_pre")
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["d_in"] == 8 and cfg["d_sae"] == 16 and cfg["hook_name"] == "blocks.0.hook_resid_pre"
    sae = load_sae(tmp_path / "sae")
    assert sae.W_enc.shape == (8, 16) and sae.W_dec.shape == (16, 8)
    X = torch.randn(20, 8)
    with torch.no_grad():
        assert torch.allclose(sae.encode(X), enc(X), atol=1e-6)
        assert torch.allclose(sae.dictionary, D / D.norm(dim=0), atol=1e-7)
        assert torch.allclose(sae.decode(sae.encode(X)), sae.encode(X) @ sae.dictionary.T + b, atol=1e-5)
    save_sae(tmp_path / "again", sae)  # an SAELensSAE saves as is
    again = load_sae(tmp_path / "again")
    with torch.no_grad():
        assert torch.equal(again.encode(X), sae.encode(X))


def test_apply_b_dec_to_input_follows_saelens(tmp_path):
    W_enc, b_enc, W_dec, b_dec = torch.randn(4, 6), torch.randn(6), torch.randn(6, 4), torch.randn(4)
    sae = SAELensSAE(W_enc, b_enc, W_dec, b_dec, apply_b_dec_to_input=True)
    X = torch.randn(5, 4)
    with torch.no_grad():
        assert torch.allclose(sae.encode(X), torch.relu((X - b_dec) @ W_enc + b_enc))
    save_sae(tmp_path, sae)
    assert json.loads((tmp_path / "cfg.json").read_text())["apply_b_dec_to_input"] is True
    with torch.no_grad():
        assert torch.allclose(load_sae(tmp_path).encode(X), sae.encode(X))


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
    sae = SAELensSAE.from_gapbound(enc, p.D, b_dec=b)
    sae.apply_b_dec_to_input = True  # encode(x + b) = enc(x): the same SAE on shifted activations
    save_sae(tmp_path / "sae", sae)
    X = (p.X_test + b).numpy()
    np.save(tmp_path / "acts.npy", X)
    summary = main([str(tmp_path / "sae"), str(tmp_path / "acts.npy"), "--json", "--lam", "0.001"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["gap_mean"] == pytest.approx(summary["gap_mean"]) and printed["certified"] is True
    # The decoder bias is removed before comparing, so the gap equals the bias-free one.
    direct = measure_gap(enc, p.D, p.X_test, lam=1e-3).summary()
    assert printed["gap_mean"] == pytest.approx(direct["gap_mean"], rel=1e-4)
    assert printed["gap_mean"] >= 0 and printed["certificate_max"] <= printed["tol_lasso"]


def test_implied_lam_default(known_d):
    p, enc = known_d
    rep = measure_gap(enc, p.D, p.X_test[:64])
    assert rep.lam_source == "implied" and rep.lam > 0 and rep.certified


def test_bad_inputs(tmp_path, known_d):
    p, enc = known_d
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_sae(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        load_sae(tmp_path / "empty")
    d = tmp_path / "partial"
    d.mkdir()
    (d / "cfg.json").write_text(json.dumps({"d_in": 8, "d_sae": 16}))
    save_file({"W_enc": torch.zeros(8, 16), "b_enc": torch.zeros(16)}, str(d / "sae_weights.safetensors"))
    with pytest.raises(ValueError, match="lacks tensors"):
        load_sae(d)
    save_sae(tmp_path / "norm", enc, p.D, normalize_activations="expected_average_only_in")
    with pytest.raises(ValueError, match="normalize_activations"):
        load_sae(tmp_path / "norm")
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
    with pytest.raises(ValueError, match="W_dec must have shape"):
        SAELensSAE(torch.zeros(4, 6), torch.zeros(6), torch.zeros(4, 6), torch.zeros(4))
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing"), str(tmp_path / "nothing.npy")])
