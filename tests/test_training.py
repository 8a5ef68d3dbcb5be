"""The training loop: learning, dead-latent resampling, checkpoint/resume equivalence, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gapbound.synthetic.data import CodeStream, SyntheticConfig, make_generator, make_problem, random_dictionary, sample_codes
from gapbound.models import SAE, Dictionary, MLPEncoder, make_encoder
from gapbound.synthetic.metrics import dictionary_mcc, mcc
from gapbound.models.coding import SparseCoding
from gapbound.training import Autoencoder, Supervised, TrainConfig, l1_to_lam, lam_to_l1, resample_dead, stream_batches, tensor_batches, train


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
    # the interrupted invocation's seconds are carried over (recorded at its step-120 checkpoint)
    assert ref_res.seconds_before == 0.0 and res.seconds_before > 0.0
    assert torch.load(ckpt, weights_only=False)["train_s"] > res.seconds_before


def test_resumed_seconds_unknown_for_checkpoints_without_the_record(tmp_path):
    """A checkpoint written before seconds were recorded gives None (unknown), never 0 (a wrong number)."""
    p = _problem()
    ckpt = tmp_path / "ck.pt"
    batches = tensor_batches(p.X_train, batch_size=64, seed=0)
    base = dict(steps=20, progress=False, checkpoint_path=str(ckpt))
    train(_autoencoder(p), batches, TrainConfig(**base))
    state = torch.load(ckpt, weights_only=False)
    state.pop("train_s")
    state["step"] = 10
    torch.save(state, ckpt)
    res = train(_autoencoder(p), batches, TrainConfig(**base))
    assert res.seconds_before is None and torch.load(ckpt, weights_only=False)["train_s"] is None


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


def test_l1_to_lam_gives_the_training_loss_minimiser():
    """A per-sample solve at ``lam = l1_to_lam(l1, M)`` satisfies the KKT conditions of the training loss."""
    from gapbound.inference import solve

    p = _problem()
    l1, M = 0.05, p.D.shape[0]
    D, x = p.D.double(), p.X_test[:32].double()
    s = solve(D, x, l1_to_lam(l1, M), method="fista", tol=1e-12, max_iter=20_000).codes.double().requires_grad_(True)
    torch.nn.functional.mse_loss(s @ D.T, x, reduction="none").mean(1).sum().backward()  # per-sample MSE over M dims
    g = s.grad + l1  # gradient of mse + l1 ||s||_1 on the non-negative orthant
    active = s.detach() > 0
    assert active.any()
    assert g[active].abs().max() < 1e-8 and g[~active].min() > -1e-8
    # with another lam (e.g. the l1 itself) the conditions fail: the conversion is not vacuous
    s2 = solve(D, x, l1, method="fista", tol=1e-12, max_iter=20_000).codes.double().requires_grad_(True)
    torch.nn.functional.mse_loss(s2 @ D.T, x, reduction="none").mean(1).sum().backward()
    g2 = s2.grad + l1
    assert g2[s2.detach() > 0].abs().max() > 1e-4
    assert lam_to_l1(l1_to_lam(l1, M), M) == pytest.approx(l1)


def test_resample_dead_rewrites_only_dead_latents():
    torch.manual_seed(0)
    enc, dic = SAE(8, 16), Dictionary(8, 16)
    before_w, before_d = enc.linear.weight.detach().clone(), dic.weight.detach().clone()
    dead = torch.zeros(16, dtype=torch.bool)
    dead[[2, 5]] = True
    x = torch.randn(64, 8)
    loss = torch.zeros(64)
    loss[7] = 1.0  # only row 7 has loss: both dead latents point at it
    touched = resample_dead(dead, x, loss, make_generator(0, 1), encoder=enc, dictionary=dic)
    assert {id(p) for p, _ in touched} == {id(enc.linear.weight), id(enc.linear.bias), id(dic.weight)}
    torch.testing.assert_close(enc.linear.weight[~dead], before_w[~dead], atol=0, rtol=0)
    torch.testing.assert_close(dic.weight[:, ~dead], before_d[:, ~dead], atol=0, rtol=0)
    unit = x[7] / x[7].norm()
    for j in (2, 5):
        torch.testing.assert_close(dic.weight[:, j], unit)
        torch.testing.assert_close(enc.linear.weight[j] / enc.linear.weight[j].norm(), unit)
        assert enc.linear.bias[j] == 0
    # a frozen dictionary (known D) is left alone
    frozen = Dictionary(8, 16, weight=random_dictionary(8, 16), trainable=False)
    assert all(p is not frozen.weight for p, _ in resample_dead(dead, x, loss, make_generator(0, 1), enc, frozen))


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04truncated"])
def test_damaged_checkpoint_is_named_not_a_raw_torch_error(tmp_path, content):
    p = _problem()
    ckpt = tmp_path / "ck.pt"
    ckpt.write_bytes(content)
    cfg = TrainConfig(steps=10, progress=False, checkpoint_every=5, checkpoint_path=str(ckpt))
    with pytest.raises(ValueError, match=f"checkpoint {ckpt} is damaged.*--overwrite"):
        train(_autoencoder(p), tensor_batches(p.X_train, batch_size=64, seed=0), cfg)
