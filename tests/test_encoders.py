"""Encoders are linear-gated and validate their input; the dictionary keeps unit-norm columns."""

from __future__ import annotations

import pytest
import torch

from gapbound.models import SAE, Dictionary, MLPEncoder, make_encoder


@pytest.mark.parametrize("activation, kw", [("relu", {}), ("topk", {"k": 3}), ("jumprelu", {"threshold": 0.1})])
def test_sae_is_linear_gated(device, activation, kw):
    torch.manual_seed(0)
    sae = SAE(8, 16, activation=activation, **kw).to(device)
    x = torch.randn(64, 8, device=device)
    z, out = sae.preactivation(x), sae(x)
    # every output coordinate is its pre-activation or exactly zero
    assert torch.all((out == z) | (out == 0))
    assert (out >= 0).all()
    if activation == "topk":
        assert ((out != 0).sum(1) <= 3).all()


def test_jumprelu_threshold_gets_gradient():
    torch.manual_seed(0)
    sae = SAE(4, 8, activation="jumprelu", threshold=0.5)
    x = torch.randn(512, 4)
    z = sae.preactivation(x)
    theta = sae.log_threshold.exp()
    assert torch.equal(sae(x), z * (z > theta))
    sae(x).sum().backward()
    assert sae.log_threshold.grad is not None and sae.log_threshold.grad.abs().sum() > 0


def test_new_sae_draws_the_same_random_numbers_as_its_encoder_alone():
    """The decoder's tied initialisation draws nothing, so seeded training runs keep their numbers."""
    torch.manual_seed(3)
    SAE(8, 16)
    after_sae = torch.rand(4)
    torch.manual_seed(3)
    torch.nn.Linear(8, 16)
    assert torch.equal(after_sae, torch.rand(4))


def test_mlp_shapes_and_nonnegativity(device):
    mlp = MLPEncoder(8, 16, 32).to(device)
    out = mlp(torch.randn(5, 8, device=device))
    assert out.shape == (5, 16) and (out >= 0).all()


def test_dictionary_unit_norm_after_normalise():
    d = Dictionary(8, 16)
    torch.testing.assert_close(d.weight.norm(dim=0), torch.ones(16))
    with torch.no_grad():
        d.weight.mul_(3.0)
    d.normalise_()
    torch.testing.assert_close(d.weight.norm(dim=0), torch.ones(16))
    D = torch.randn(8, 16)
    fixed = Dictionary(8, 16, weight=D, trainable=False)
    assert not fixed.weight.requires_grad
    torch.testing.assert_close(fixed.weight, D / D.norm(dim=0))


@pytest.mark.parametrize(
    "call, err, match",
    [
        (lambda: SAE(8, 16, activation="gelu"), ValueError, "activation"),
        (lambda: SAE(8, 16, activation="topk"), ValueError, "k must be given"),
        (lambda: SAE(8, 16, activation="topk", k=17), ValueError, "k must be <= 16"),
        (lambda: SAE(8, 16, rescale_acts_by_decoder_norm=True), ValueError, "topk"),
        (lambda: SAE(8, 16, input_norm="batch_norm"), ValueError, "input_norm"),
        (lambda: SAE(0, 16), ValueError, "M must be >= 1"),
        (lambda: MLPEncoder(8, 16, 0), ValueError, "hidden"),
        (lambda: SAE(8, 16)(torch.randn(4, 7)), ValueError, r"x must have shape \(n, 8\)"),
        (lambda: SAE(8, 16).decode(torch.randn(4, 7)), ValueError, r"codes must have shape \(n, 16\)"),
        (lambda: SAE(8, 16, "gated").gate(torch.randn(4, 16)), ValueError, "encode"),
        (lambda: SAE(8, 16).set_decoder(torch.zeros(8, 16)), ValueError, "zero columns"),
        (lambda: SAE(8, 16).fold_input_normalisation(scale=0.0), ValueError, "scale"),
        (lambda: SAE(8, 16, input_norm="layer_norm").fold_input_normalisation(), ValueError, "per sample"),
        (lambda: Dictionary(8, 16)(torch.randn(4, 15)), ValueError, "codes must have shape"),
        (lambda: Dictionary(2, 3, weight=torch.zeros(2, 3)), ValueError, "zero columns"),
        (lambda: Dictionary(2, 3, weight=torch.full((2, 3), float("nan"))), ValueError, "NaN"),
        (lambda: make_encoder("rnn", 8, 16), ValueError, "encoder kind"),
    ],
)
def test_bad_input(call, err, match):
    with pytest.raises(err, match=match):
        call()
