"""Encoders trained on a witness set (:func:`gapbound.training.witness.fit_encoder`): the denominators of the
tightness ratios, so each promise of the docstring is checked: exact thresholds that the encoder's own forward
pass reproduces, per-latent best rows for the separable classes, the best TopK encoder among the starts, and
best iterates that never lose to their start."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gapbound.models.activations import topk_relu
from gapbound.theory import witness_codes
from gapbound.theory.jumprelu import best_threshold
from gapbound.training.witness import fit_encoder


def _problem(seed: int, M: int = 4, N: int = 8):
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(M, N))
    D /= np.linalg.norm(D, axis=0)
    codes = witness_codes(N, 2, "pairs")
    return D, codes, torch.from_numpy(codes @ D.T), torch.from_numpy(codes)


def _rows(seed: int, M: int, N: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(N, M + 1))


def _per_latent(rows: np.ndarray, X: torch.Tensor, S: torch.Tensor, activation: str, k: int | None = None):
    Z = X @ torch.from_numpy(rows[:, :-1]).T + torch.from_numpy(rows[:, -1])
    if activation == "relu":
        return ((torch.relu(Z) - S) ** 2).sum(0)
    if activation == "jumprelu":
        return torch.tensor([float(best_threshold(z, y)[0]) for z, y in zip(Z.T.numpy(), S.T.numpy())], dtype=Z.dtype)
    return ((topk_relu(Z, k) - S) ** 2).sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_thresholds_are_the_exact_minimum_and_the_forward_pass_agrees(seed):
    """No threshold on a fine grid (nor at any data value) beats the search, and the encoder fit_encoder returns
    reproduces those errors through its own forward pass (a threshold *at* a data value did not: the pass
    rounded the sample the other way, 25.30 instead of 21.91 on a development dictionary)."""
    D, codes, X, S = _problem(seed)
    rows = _rows(seed, *D.shape)
    Z = X @ torch.from_numpy(rows[:, :-1]).T + torch.from_numpy(rows[:, -1])
    err = _per_latent(rows, X, S, "jumprelu")
    grid = torch.cat([torch.linspace(0, float(Z.max()) + 1, 2001, dtype=Z.dtype), Z.flatten().clamp_min(0)])
    for i in range(Z.shape[1]):
        errs = ((Z[:, i:i + 1] * (Z[:, i:i + 1] > grid) - S[:, i:i + 1]) ** 2).sum(0)
        assert float(err[i]) <= float(errs.min()) + 1e-12
    _, enc = fit_encoder(D, codes, "jumprelu", restarts=1, steps=0, init=rows)
    with torch.no_grad():
        assert torch.allclose(((enc(X) - S) ** 2).sum(0), err, rtol=0, atol=1e-12)


@pytest.mark.parametrize("activation", ["relu", "jumprelu"])
def test_separable_classes_take_each_latents_best_row(activation):
    """ReLU and JumpReLU rows decouple: from two starts (no training) the encoder is the per-latent best."""
    D, codes, X, S = _problem(3)
    a, b = _rows(10, *D.shape), _rows(11, *D.shape)
    err, _ = fit_encoder(D, codes, activation, restarts=2, steps=0, init=[a, b])
    ea, eb = _per_latent(a, X, S, activation), _per_latent(b, X, S, activation)
    assert err == pytest.approx(float(torch.minimum(ea, eb).sum()), abs=1e-9)
    assert err < min(float(ea.sum()), float(eb.sum()))  # these two starts each win some latents


def test_topk_takes_the_best_start_whole():
    """TopK rows interact through the ranking: the encoder is the best start, not a mix of rows."""
    D, codes, X, S = _problem(4)
    starts = [_rows(s, *D.shape) for s in (20, 21, 22)]
    err, _ = fit_encoder(D, codes, "topk", k=2, restarts=3, steps=0, init=starts)
    assert err == pytest.approx(min(float(_per_latent(r, X, S, "topk", 2)) for r in starts), abs=1e-9)


@pytest.mark.parametrize("activation,k", [("relu", None), ("jumprelu", None), ("topk", 2)])
def test_training_never_returns_worse_than_its_start(activation, k):
    """The best iterate includes the start: training from given rows cannot end above them."""
    D, codes, X, S = _problem(5)
    start = _rows(30, *D.shape)
    err, _ = fit_encoder(D, codes, activation, k=k, restarts=1, steps=100, init=start)
    assert err <= float(_per_latent(start, X, S, activation, k).sum()) + 1e-9


def test_bad_input_is_refused():
    D, codes, _, _ = _problem(6)
    with pytest.raises(ValueError, match="activation"):
        fit_encoder(D, codes, "gelu")
    with pytest.raises((ValueError, TypeError), match="k"):
        fit_encoder(D, codes, "topk")
    with pytest.raises(ValueError, match="init"):
        fit_encoder(D, codes, "relu", init=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="restarts"):
        fit_encoder(D, codes, "relu", restarts=1, init=[_rows(0, *D.shape), _rows(1, *D.shape)])
