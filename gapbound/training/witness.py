"""Encoders trained directly on a witness set: the strongest honest attempt to beat a certified bound."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..utils.rng import seeded
from ..utils.validation import check_float, check_int, resolve_device
from ..theory.witness import as_dictionary64, check_codes


def fit_encoder(
    D: Any,
    codes: Any,
    activation: str = "relu",
    k: int | None = None,
    restarts: int = 4,
    steps: int = 2000,
    lr: float = 1e-2,
    seed: int = 0,
    init: np.ndarray | None = None,
    device: str | torch.device | None = "cpu",
) -> tuple[float, torch.nn.Module]:
    """Train :class:`gapbound.models.SAE` encoders to minimise the witness-set error directly.

    Full-batch Adam with cosine decay, ``restarts`` random initialisations (the
    first from ``init``, an ``N x (M+1)`` array of rows ``(w_i, b_i)``, when
    given); returns the best error and encoder. JumpReLU thresholds are then
    set per latent by exact one-dimensional search (rows decouple), since their
    straight-through gradient is only an estimate.

    Returns
    -------
    (float, torch.nn.Module)
        Best witness-set error and the encoder reaching it (float64).
    """
    from ..models import SAE

    Dn = as_dictionary64(D)
    M, N = Dn.shape
    check_int("restarts", restarts, minimum=1)
    check_int("steps", steps, minimum=0)
    check_float("lr", lr, minimum=0.0, strict_minimum=True)
    dev = resolve_device(device)
    S_np = check_codes(codes, N)
    X = torch.from_numpy(S_np @ Dn.T).to(dev)
    S = torch.from_numpy(S_np).to(dev)
    best_err, best_enc = math.inf, None
    for r in range(restarts):
        enc = seeded(seed * 1000 + r, lambda: SAE(M, N, activation=activation, k=k, threshold=0.1))
        enc = enc.to(torch.float64).to(dev)
        if init is not None and r == 0:
            with torch.no_grad():
                enc.linear.weight.copy_(torch.as_tensor(init[:, :M]))
                enc.linear.bias.copy_(torch.as_tensor(init[:, M]))
        opt = torch.optim.Adam(enc.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
        for _ in range(steps):
            opt.zero_grad()
            loss = ((enc(X) - S) ** 2).sum()
            loss.backward()
            opt.step()
            sched.step()
        if activation == "jumprelu":
            _set_thresholds(enc, X, S)
        with torch.no_grad():
            err = float(((enc(X) - S) ** 2).sum())
        if err < best_err:
            best_err, best_enc = err, enc
    return best_err, best_enc


@torch.no_grad()
def _set_thresholds(enc: torch.nn.Module, X: torch.Tensor, S: torch.Tensor) -> None:
    """Per latent, the threshold ``theta >= 0`` minimising its own error with ``W, b`` fixed."""
    Z = enc.preactivation(X)
    cands = torch.cat([torch.zeros(1, Z.shape[1], dtype=Z.dtype, device=Z.device), Z.clamp_min(0)], 0)
    best = torch.full((Z.shape[1],), math.inf, dtype=Z.dtype, device=Z.device)
    best_th = enc.log_threshold.exp().clone()
    for c in range(cands.shape[0]):
        th = cands[c]
        err = ((Z * (Z > th) - S) ** 2).sum(0)
        better = err < best
        best = torch.where(better, err, best)
        best_th = torch.where(better, th, best_th)
    enc.log_threshold.copy_(best_th.clamp_min(1e-12).log())
