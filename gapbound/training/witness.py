"""Encoders trained directly on a witness set: the strongest honest attempt to beat a certified bound.

The error ``sum_t ||f(D s_t) - s_t||^2`` of a JumpReLU or TopK encoder is piecewise constant in its
gates, so plain gradient descent either gets no signal through them (JumpReLU's step, TopK's
ranking) or only a straight-through estimate. On development dictionary seed 0 (N = 16, M = 8, pairs
design), TopK(2) encoders trained that way from random starts stayed at 130-230, and one warm-started
from the ReLU optimum's rows (43.33) stopped at 38.41. :func:`fit_encoder` therefore trains a smoothed
objective, each gate replaced by ``sigmoid((z - theta) / T)`` with the temperature ``T`` annealed
geometrically towards 0 (``theta``: a trainable per-latent threshold for JumpReLU; for TopK the
per-sample midpoint of the ``k``-th and ``k+1``-th largest pre-activations, the ranking's threshold),
and scores every iterate by the actual encoder's error (hard gates). With the warm starts of
``benchmarks/certify_tightness.py`` the same dictionary's TopK(2) error is 33.54 (session 8, one torch thread).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..utils.rng import seeded
from ..utils.validation import check_float, check_int, resolve_device
from ..theory.jumprelu import best_threshold, threshold_interval
from ..theory.witness import as_dictionary64, check_codes, witness_inputs

# Smoothed gates: temperature from _T_START to _T_END (times the mean non-zero code amplitude), geometric.
_T_START, _T_END = 0.3, 1e-4
# The actual encoder's error is evaluated every this many steps (and at the last step); the best iterate is kept.
_EVAL_EVERY = 25


def _smoothed_output(Z: torch.Tensor, activation: str, k: int | None, theta: torch.Tensor,
                     temp: float) -> torch.Tensor:
    """The training objective's encoder output: each gate a sigmoid of temperature ``temp`` (ReLU: exact)."""
    if activation == "relu" or (activation == "topk" and k >= Z.shape[1]):  # TopK(k >= N) passes every entry
        return torch.relu(Z)
    if activation == "topk":
        top = Z.topk(k + 1, dim=1).values
        theta = 0.5 * (top[:, k - 1] + top[:, k])[:, None]
    return torch.sigmoid((Z - theta) / temp) * torch.relu(Z)


def _jumprelu_errors(Z: torch.Tensor, S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per latent, the JumpReLU error with the best threshold and a threshold reaching it, for fixed ``Z``.

    The search is :func:`gapbound.theory.jumprelu.best_threshold` (exact); its threshold, a data value, is
    moved to the middle of its :func:`~gapbound.theory.jumprelu.threshold_interval` (the same samples pass
    anywhere inside, and the encoder's own forward pass cannot round a sample the other way).
    """
    z, y = Z.T.detach().cpu().numpy(), S.T.detach().cpu().numpy()
    cost, theta = np.array([best_threshold(zi, yi) for zi, yi in zip(z, y)]).T  # one latent at a time: its own y
    lo, hi = threshold_interval(z, theta)
    theta = np.where(np.isfinite(hi), 0.5 * (lo + hi), lo + 1.0)
    return (torch.as_tensor(cost, dtype=Z.dtype, device=Z.device),
            torch.as_tensor(theta, dtype=Z.dtype, device=Z.device))


@torch.no_grad()
def _hard_errors(Z: torch.Tensor, S: torch.Tensor, activation: str,
                 k: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The actual encoder's error per latent (ReLU, JumpReLU with its best thresholds) or in total (TopK, one entry)."""
    if activation == "jumprelu":
        return _jumprelu_errors(Z, S)
    if activation == "relu":
        return ((torch.relu(Z) - S) ** 2).sum(0), None
    from ..models.activations import topk_relu

    return ((topk_relu(Z, k) - S) ** 2).sum().reshape(1), None


def encoder_rows(enc: torch.nn.Module) -> np.ndarray:
    """An SAE encoder's rows ``(w_i, b_i)`` as an ``N x (M+1)`` float64 array: a start for :func:`fit_encoder`."""
    return torch.cat([enc.linear.weight, enc.linear.bias[:, None]], 1).detach().double().cpu().numpy()


def _starts(init: Any, restarts: int, M: int, N: int, activation: str, k: int | None, seed: int) -> list[np.ndarray]:
    """The ``restarts`` starting rows ``N x (M+1)``: the given ``init`` arrays first, then random initialisations."""
    from ..models import SAE

    given = [] if init is None else [init] if isinstance(init, np.ndarray) else list(init)
    if len(given) > restarts:
        raise ValueError(f"init has {len(given)} starting arrays but restarts={restarts}; "
                         "pass restarts >= the number of init arrays")
    rows = []
    for r, W in enumerate(given):
        W = np.asarray(W, dtype=np.float64)
        if W.shape != (N, M + 1):
            raise ValueError(f"init[{r}] must have shape (N, M+1) = ({N}, {M + 1}) (rows w_i, b_i), got {W.shape}")
        rows.append(W)
    for r in range(len(rows), restarts):
        enc = seeded(seed * 1000 + r, lambda: SAE(M, N, activation=activation, k=k, threshold=0.1))
        rows.append(encoder_rows(enc))
    return rows


def fit_encoder(
    D: Any,
    codes: Any,
    activation: str = "relu",
    k: int | None = None,
    restarts: int = 4,
    steps: int = 2000,
    lr: float = 1e-2,
    seed: int = 0,
    init: np.ndarray | Sequence[np.ndarray] | None = None,
    device: str | torch.device | None = "cpu",
) -> tuple[float, torch.nn.Module]:
    """Train :class:`gapbound.models.SAE` encoders to minimise the witness-set error directly.

    Each restart runs full-batch Adam with cosine decay on the smoothed objective of the module
    docstring (ReLU: the exact one); the actual encoder's error is evaluated every 25 steps and the
    best iterate kept (JumpReLU thresholds by exact one-dimensional search per latent at every
    evaluation). ReLU and JumpReLU rows decouple (each output depends only on its own row), so the
    encoder returned takes each latent's best row over all restarts and iterates; TopK rows interact
    through the ranking, so it is the best TopK iterate of any restart.

    Parameters
    ----------
    D, codes : array-like
        Dictionary ``M x N`` and witness codes ``n x N`` (inputs ``x_t = D s_t`` in float64).
    activation : {"relu", "jumprelu", "topk"}
    k : int, optional
        TopK's ``k`` (required for ``"topk"``).
    restarts : int
        Starts in total: the ``init`` arrays first, then random SAE initialisations.
    steps : int
        Adam steps per restart (0: the starts are only evaluated).
    lr : float
        Adam's learning rate.
    seed : int
        Seed of the random initialisations.
    init : array or sequence of arrays, optional
        Starting rows ``N x (M+1)`` (``w_i, b_i``), e.g. a certified bound's own minimising rows.
    device : str or torch.device, optional

    Returns
    -------
    (float, torch.nn.Module)
        The witness-set error of the returned encoder, evaluated by its own forward pass (float64), and the encoder.
    """
    from ..models import SAE

    if activation not in ("relu", "jumprelu", "topk"):
        raise ValueError(f"activation must be 'relu', 'jumprelu' or 'topk', got {activation!r}")
    if activation == "topk":
        check_int("k", k, minimum=1)
    Dn = as_dictionary64(D)
    M, N = Dn.shape
    check_int("restarts", restarts, minimum=1)
    check_int("steps", steps, minimum=0)
    check_float("lr", lr, minimum=0.0, strict_minimum=True)
    dev = resolve_device(device)
    S_np = check_codes(codes, N)
    X = torch.from_numpy(witness_inputs(Dn, S_np)).to(dev)
    S = torch.from_numpy(S_np).to(dev)
    scale = float(S_np[S_np > 0].mean()) if (S_np > 0).any() else 1.0
    separable = activation != "topk"
    best_err = torch.full((N if separable else 1,), math.inf, dtype=torch.float64, device=dev)
    best_W = torch.zeros(N, M + 1, dtype=torch.float64, device=dev)
    best_th = torch.zeros(N, dtype=torch.float64, device=dev)

    def pre(Wb: torch.Tensor) -> torch.Tensor:
        return X @ Wb[:, :M].T + Wb[:, M]

    def consider(Wb: torch.Tensor) -> None:
        """Keep the rows (separable classes) or the encoder (TopK) wherever this iterate is better."""
        err, theta = _hard_errors(pre(Wb), S, activation, k)
        better = err < best_err
        best_err.copy_(torch.where(better, err, best_err))
        mask = better if separable else better.expand(N)
        best_W.copy_(torch.where(mask[:, None], Wb, best_W))
        if theta is not None:
            best_th.copy_(torch.where(mask, theta, best_th))

    for start in _starts(init, restarts, M, N, activation, k, seed):
        Wb = torch.tensor(start, dtype=torch.float64, device=dev, requires_grad=True)
        theta = torch.full((N,), 0.1 * scale, dtype=torch.float64, device=dev, requires_grad=True)
        consider(Wb.detach())
        opt = torch.optim.Adam([Wb, theta] if activation == "jumprelu" else [Wb], lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
        for it in range(steps):
            temp = scale * _T_START * (_T_END / _T_START) ** (it / max(steps - 1, 1))
            opt.zero_grad()
            out = _smoothed_output(pre(Wb), activation, k, theta, temp)
            ((out - S) ** 2).sum().backward()
            opt.step()
            sched.step()
            if (it + 1) % _EVAL_EVERY == 0 or it == steps - 1:
                consider(Wb.detach())
    enc = SAE(M, N, activation=activation, k=k, threshold=0.1).to(torch.float64).to(dev)
    with torch.no_grad():
        enc.linear.weight.copy_(best_W[:, :M])
        enc.linear.bias.copy_(best_W[:, M])
        if activation == "jumprelu":
            enc.log_threshold.copy_(best_th.clamp_min(1e-12).log())
        err = float(((enc(X) - S) ** 2).sum())
    return err, enc
