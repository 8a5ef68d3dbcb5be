"""The training loop: learning, dead-latent resampling, checkpoint/resume equivalence, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gapbound.synthetic.data import CodeStream, SyntheticConfig, make_generator, make_problem, random_dictionary, sample_codes
from gapbound.models.encoders import SAE, Dictionary, MLPEncoder, make_encoder
from gapbound.synthetic.metrics import dictionary_mcc, mcc
from gapbound.models.coding import SparseCoding
from gapbound.training.loop import Autoencoder, Supervised, TrainConfig, stream_batches, tensor_batches, train


def _problem():
    return make_problem(SyntheticConfig(n_train=256, n_test=256, seed=1))


def _autoencoder(p, seed=0):
    torch.manual_seed(seed)
    return Autoencoder(SAE(8, 16), Dictionary(8, 16))


def test_resume_gives_identical_result(tmp_path):
    p = _problem()
    batches = tensor_batches(p.X_train, batch_size=64, seed=0)
    base = dict(steps=300, lr=1e-3, resample_every=100, progress=False, eval_every=50)
    ref = _autoencoder(p)
    ref_res = train(ref, batches, TrainConfig(**base), evaluate=lambda m: {"mcc": mcc(p.S_test, m.encode(p.X_test))})

    ckpt = tmp_path / "ck.pt"
    cfg = TrainConfig(**base, checkpoint_every=120, checkpoint_path=str(ckpt))
    # "interrupt" after the checkpoint at step 120 by training a fresh model to a shorter horizon on the same file
    first = _autoencoder(p)
    short = TrainConfig(**{**base, "steps": 300}, checkpoint_every=120, checkpoint_path=str(ckpt))
    state = {}

    class Stop(Exception):
        pass

    def evaluate(m):
        state.setdefault("calls", 0)
        state["calls"] += 1
        if state["calls"] > 3:  # steps 0, 50, 100, then die at 150 (after the step-120 checkpoint)
            raise Stop
        return {"mcc": mcc(p.S_test, m.encode(p.X_test))}

    with pytest.raises(Stop):
        train(first, batches, short, evaluate=evaluate)
    assert torch.load(ckpt, weights_only=False)["step"] == 120
    resumed = _autoencoder(p, seed=123)  # different init: everything must come from the checkpoint
    res = train(resumed, batches, cfg, evaluate=lambda m: {"mcc": mcc(p.S_test, m.encode(p.X_test))})
    for a, b in zip(ref.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert [h["step"] for h in res.history] == [h["step"] for h in ref_res.history]
    assert res.history[-1]["mcc"] == pytest.approx(ref_res.history[-1]["mcc"])


def test_checkpoint_with_other_config_is_rejected(tmp_path):
    p = _problem()
    ckpt = str(tmp_path / "ck.pt")
    batches = tensor_batches(p.X_train)
    train(_autoencoder(p), batches, TrainConfig(steps=5, progress=False, checkpoint_path=ckpt))
    with pytest.raises(ValueError, match="different TrainConfig"):
        train(_autoencoder(p), batches, TrainConfig(steps=6, progress=False, checkpoint_path=ckpt))
    # display options are not part of a run's identity: resuming with a progress bar is fine
    train(_autoencoder(p), batches, TrainConfig(steps=5, progress=True, checkpoint_path=ckpt))


@pytest.mark.parametrize("encoder", ["sae", "mlp"])
def test_dead_latents_are_resampled(encoder):
    p = _problem()
    torch.manual_seed(0)
    model = Autoencoder(make_encoder(encoder, 8, 16, hidden=32), Dictionary(8, 16))
    with torch.no_grad():
        model.encoder.linear.bias[:4] = -100.0  # four latents can never fire
    assert not (model.encoder(p.X_train)[:, :4] > 0).any()
    res = train(model, tensor_batches(p.X_train), TrainConfig(steps=20, resample_every=10, progress=False, lr=1e-3))
    assert res.resampled >= 4
    assert (model.encoder(p.X_train)[:, :4] > 0).any(0).all(), "resampled latents fire again"


def test_flops_and_history_are_cumulative():
    p = _problem()
    res = train(_autoencoder(p), tensor_batches(p.X_train), TrainConfig(steps=40, eval_every=10, progress=False),
                evaluate=lambda m: {"mcc": 0.0})
    assert res.step_flops > 0
    assert [h["train_flops"] for h in res.history] == [k * res.step_flops for k in (0, 10, 20, 30, 40)]


def test_supervised_and_sparse_coding_learn():
    p = _problem()
    torch.manual_seed(0)
    sup = Supervised(SAE(8, 16))
    before = mcc(p.S_test, sup.encode(p.X_test).detach())
    train(sup, tensor_batches(p.X_train, p.S_train), TrainConfig(steps=300, lr=3e-3, progress=False))
    assert mcc(p.S_test, sup.encode(p.X_test).detach()) > before + 0.2

    # sparse coding started at the true dictionary: per-sample inference recovers the codes and D stays put
    sc = SparseCoding(Dictionary(8, 16, weight=p.D), 256)
    train(sc, tensor_batches(p.X_train, batch_size=64), TrainConfig(steps=200, lr=1e-4, l1=1e-2, progress=False))
    assert (sc.codes >= 0).all()
    assert mcc(p.S_train, sc.codes) > 0.9
    assert dictionary_mcc(p.D, sc.dictionary.weight.detach()) > 0.95


def test_bad_input():
    p = _problem()
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=-1)
    with pytest.raises(ValueError, match="true codes"):
        train(Supervised(SAE(8, 16)), tensor_batches(p.X_train), TrainConfig(steps=1, progress=False))
    with pytest.raises(ValueError, match="same number of rows"):
        tensor_batches(p.X_train, p.S_train[:10])
    bad = _autoencoder(p)
    with pytest.raises(FloatingPointError, match="lower lr"):
        train(bad, lambda i: (p.X_train * np.nan, None, None), TrainConfig(steps=2, progress=False))


def test_supervised_mlp_keeps_output_units_alive_on_sparse_targets():
    # 2 % of target entries are non-zero: with the exact ReLU loss most output units of an MLP
    # die within a few hundred Adam steps (measured: 174 of 300, MCC 0.36); the gate surrogate
    # keeps a gradient on every active entry.
    D = random_dictionary(60, 300, 0)
    stream = CodeStream(D, 6, 256, seed=0)
    S_test = sample_codes(512, 300, 6, make_generator(0, 2))
    torch.manual_seed(0)
    enc = MLPEncoder(60, 300, 256)
    train(Supervised(enc), stream_batches(stream), TrainConfig(steps=300, lr=1e-3, progress=False, resample_every=0))
    with torch.no_grad():
        codes = enc(S_test @ D.T)
    assert int(((codes > 0).sum(0) == 0).sum()) <= 10
    assert mcc(S_test, codes) > 0.75
