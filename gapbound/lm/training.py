"""The paper's language-model experiment: SAE, MLP encoder and LCA sparse coding on harvested activations.

Three methods, all trained by :func:`gapbound.training.loop.train` (Adam, L1,
dead-latent resampling, checkpoint/resume) on shuffled minibatches streamed
from a :class:`~gapbound.lm.shards.ShardStore`:

- ``SAE``: :class:`~gapbound.models.encoders.SAE` (ReLU) + unit-norm :class:`~gapbound.models.encoders.Dictionary`;
- ``MLP``: :class:`~gapbound.models.encoders.MLPEncoder` (hidden width ``11 x d_model``,
  8448 for GPT-2) + the same kind of dictionary;
- ``LCA``: sparse coding with per-sample inference: every step infers each
  sample's code with the locally competitive algorithm under the current
  dictionary (:func:`gapbound.inference.solve`), then takes an Adam step on the
  dictionary (:class:`InferredCoding`).

Defaults follow the paper: a dictionary of ``22 x d_model`` latents, 50,000
steps of 8192 vectors (64 contexts x 128 tokens: 406M tokens), learning rate
1e-4, resampling of dead latents.

**Normalisation.** Activations are centred and scaled by constants estimated on
training batches, so that ``E ||x||^2 = d_model``; the centring plays the role
of a fixed decoder bias. NMSE is invariant to this affine map, so it is the
NMSE of the raw activations. The L1 weight follows the training objective of
:mod:`gapbound.training.loop` (MSE averaged over dimensions + ``l1`` x batch-mean L1
norm); its default ``5 / d_model`` is Anthropic's (2024) penalty 5 for
sum-over-dimensions MSE on activations of norm ``sqrt(d_model)``. The matching
per-sample LASSO weight is ``lam = l1 * d_model / 2`` (same minimiser), used by
LCA and by the gap meter.

**Evaluation** on held-out activations: normalised MSE, L0 (mean non-zeros per
token), dead latents (never active on the held-out set), and the amortisation
gap measured by :func:`gapbound.meter.measure_gap` (per-sample optimal
inference under the *same* decoder against the encoder's codes, at the
training objective's ``lam``, bracketed by duality certificates).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from .autointerp import TokenExplainer, make_windows, score_latents
from ..models.encoders import SAE, Dictionary, MLPEncoder
from ..inference import SOLVERS, solve
from ..meter import measure_gap
from ..synthetic.metrics import nmse
from .shards import ActivationStream, ShardStore
from ..training.loop import Autoencoder, TrainConfig, high_loss_inputs, train
from ..utils.validation import check_float, check_int, resolve_device

__all__ = [
    "METHODS",
    "LMConfig",
    "QUICK",
    "Normaliser",
    "InferredCoding",
    "build_model",
    "encode",
    "evaluate",
    "sparse_codes",
    "run_method",
]

METHODS = ("SAE", "MLP", "LCA")


@dataclass(frozen=True)
class LMConfig:
    """Settings of the language-model experiment.

    Attributes
    ----------
    expansion : int
        Latents per input dimension (``N = expansion * d_model``; paper runs: 22).
    mlp_hidden_mult : int
        MLP hidden width per input dimension (``11 * 768 = 8448`` for GPT-2).
    steps, batch_size, lr, resample_every : int, int, float, int
        Optimisation (paper: 50,000 steps of 8192 vectors at lr 1e-4).
    l1 : float or None
        L1 weight; ``None`` means ``5 / d_model`` (see module docstring).
    lca_method : str
        Registered solver used as LCA's per-sample inference.
    lca_iters : int
        Inference iterations per sample per training step and at evaluation.
    lca_steps : int or None
        Training steps of LCA if different from ``steps`` (its steps cost
        ``lca_iters`` inference iterations each; the quick preset takes fewer).
    gap_samples : int
        Held-out vectors on which the gap meter runs.
    gap_iters : int
        Iteration cap of the meter's per-sample optimisation.
    gap_rtol : float
        The meter's certificate tolerance, relative to the median encoder objective.
    n_latents : int
        Latents scored by autointerp per method (paper: 200).
    window : int
        Tokens per autointerp window.
    eval_batch : int
        Vectors per batch when encoding held-out data.
    seed : int
        Seed of initialisation, shuffling and latent sampling.
    """

    expansion: int = 22
    mlp_hidden_mult: int = 11
    steps: int = 50_000
    batch_size: int = 8192
    lr: float = 1e-4
    l1: float | None = None
    resample_every: int = 12_500
    lca_method: str = "lca"
    lca_iters: int = 100
    lca_steps: int | None = None
    gap_samples: int = 4096
    gap_iters: int = 500
    gap_rtol: float = 1e-4
    n_latents: int = 200
    window: int = 32
    eval_batch: int = 2048
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("expansion", self.expansion, minimum=1)
        check_int("mlp_hidden_mult", self.mlp_hidden_mult, minimum=1)
        check_int("steps", self.steps, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_float("lr", self.lr, minimum=0.0, strict_minimum=True)
        if self.l1 is not None:
            check_float("l1", self.l1, minimum=0.0)
        check_int("resample_every", self.resample_every, minimum=0)
        check_int("lca_iters", self.lca_iters, minimum=1)
        if self.lca_steps is not None:
            check_int("lca_steps", self.lca_steps, minimum=1)
        check_int("gap_samples", self.gap_samples, minimum=1)
        check_int("gap_iters", self.gap_iters, minimum=1)
        check_float("gap_rtol", self.gap_rtol, minimum=0.0)
        check_int("n_latents", self.n_latents, minimum=1)
        check_int("window", self.window, minimum=1)
        check_int("eval_batch", self.eval_batch, minimum=1)
        check_int("seed", self.seed, minimum=0)

    def l1_for(self, d_model: int) -> float:
        return 5.0 / d_model if self.l1 is None else float(self.l1)


# Scaled down to run end to end on a 2-core CPU in minutes (see notes/issue-6.md for timings).
QUICK = LMConfig(expansion=4, mlp_hidden_mult=2, steps=1500, batch_size=256, lr=3e-4, resample_every=500,
                 lca_iters=20, lca_steps=200, gap_samples=512, gap_iters=200, n_latents=50, eval_batch=1024)


@dataclass(frozen=True)
class Normaliser:
    """Affine map ``x -> (x - mean) * scale`` with ``E ||(x - mean) * scale||^2 = d``."""

    mean: torch.Tensor
    scale: float

    @classmethod
    def fit(cls, stream: ActivationStream, n_batches: int = 8) -> "Normaliser":
        X = torch.cat([stream.batch(i) for i in range(min(n_batches, len(stream)))])
        mean = X.mean(0)
        scale = float((X.shape[1] / ((X - mean) ** 2).sum(1).mean()).sqrt())
        return cls(mean, scale)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device)) * self.scale


class InferredCoding(nn.Module):
    """Sparse coding with per-sample inference: codes are inferred each step, the dictionary is learned.

    :meth:`loss` infers every sample's code under the current (detached)
    dictionary with ``solve(D, x, lam, method)``, which minimises the same
    per-sample objective as the training loss (``lam = l1 * M / 2``), then
    returns the reconstruction + L1 loss whose gradient updates the dictionary
    only. The :class:`~gapbound.training.loop.Trainable` interface lets
    :func:`gapbound.training.loop.train` run it like any other model.

    Parameters
    ----------
    dictionary : Dictionary
        The learned unit-norm dictionary.
    l1 : float
        L1 weight of the training loss.
    method : str
        Registered solver (``"lca"`` for the paper's locally competitive algorithm).
    max_iter : int
        Inference iterations per call.
    """

    def __init__(self, dictionary: Dictionary, l1: float, method: str = "lca", max_iter: int = 100):
        super().__init__()
        if method not in SOLVERS:
            raise ValueError(f"method must be a registered solver {sorted(SOLVERS)}, got {method!r}")
        self.dictionary = dictionary
        self.lam = check_float("l1", l1, minimum=0.0) * dictionary.M / 2
        self.method = method
        self.max_iter = check_int("max_iter", max_iter, minimum=1)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return solve(self.dictionary.weight.detach(), x, self.lam, method=self.method, max_iter=self.max_iter, tol=0.0).codes

    def loss(self, batch: Any, l1: float) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch[0]
        codes = self.encode(x)
        return F.mse_loss(self.dictionary(codes), x) + l1 * codes.abs().sum(1).mean(), codes

    def after_step(self) -> None:
        self.dictionary.normalise_()

    @torch.no_grad()
    def resample(self, dead: torch.Tensor, batch: Any, generator: torch.Generator) -> list[tuple[nn.Parameter, int]]:
        """Re-point dead atoms at the batch's worst-reconstructed inputs (Bricken et al. 2023)."""
        x = batch[0]
        per_sample = ((self.dictionary(self.encode(x)) - x) ** 2).sum(1)
        dead_idx = dead.nonzero().flatten()
        self.dictionary.weight[:, dead_idx] = high_loss_inputs(x, per_sample, len(dead_idx), generator).T
        return [(self.dictionary.weight, 1)]


def build_model(method: str, d_model: int, config: LMConfig) -> nn.Module:
    """A fresh ``SAE``, ``MLP`` or ``LCA`` model for ``d_model``-dimensional activations (seeded)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    d_model = check_int("d_model", d_model, minimum=1)
    N = config.expansion * d_model
    torch.manual_seed(config.seed)
    dictionary = Dictionary(d_model, N)
    if method == "SAE":
        return Autoencoder(SAE(d_model, N, activation="relu"), dictionary)
    if method == "MLP":
        return Autoencoder(MLPEncoder(d_model, N, hidden=config.mlp_hidden_mult * d_model), dictionary)
    return InferredCoding(dictionary, config.l1_for(d_model), config.lca_method, config.lca_iters)


@torch.no_grad()
def encode(model: nn.Module, X: torch.Tensor, batch: int = 2048) -> torch.Tensor:
    """Codes of ``X`` (already normalised) in batches."""
    model.eval()
    return torch.cat([model.encode(X[i:i + batch]) for i in range(0, X.shape[0], batch)])


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, config: LMConfig) -> dict[str, Any]:
    """NMSE, L0, dead latents and the amortisation gap of ``model`` on held-out (normalised) ``X``."""
    codes = encode(model, X, config.eval_batch)
    D = model.dictionary.weight.detach()
    recon = codes @ D.T
    n = min(config.gap_samples, X.shape[0])
    rows = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(config.seed))[:n]
    lam = config.l1_for(X.shape[1]) * X.shape[1] / 2
    gap = measure_gap(model.encode, D, X[rows], lam=lam, max_iter=config.gap_iters, rtol=config.gap_rtol)
    return {
        "nmse": nmse(X.numpy(), recon.numpy()),
        "l0": float((codes > 0).sum(1).float().mean()),
        "dead_latents": int(((codes > 0).sum(0) == 0).sum()),
        "n_latents": int(codes.shape[1]),
        "gap": gap.summary(),
    }


@torch.no_grad()
def sparse_codes(model: nn.Module, X: torch.Tensor, batch: int = 2048) -> sp.csr_matrix:
    """Codes of ``X`` as a sparse ``(n, N)`` matrix (never dense in full)."""
    model.eval()
    parts = []
    for i in range(0, X.shape[0], batch):
        parts.append(sp.csr_matrix(model.encode(X[i:i + batch]).numpy()))
    return sp.vstack(parts).tocsr()


def _content(store: ShardStore, shards: Sequence[int], window: int) -> tuple[np.ndarray, torch.Tensor]:
    """Token windows of ``shards`` and their activations in the same (window-major) order."""
    lo, hi = store.positions
    tokens = store.tokens(shards)
    acts = store.activations(shards)
    per = (hi - lo) // window
    span = slice(lo, lo + per * window)
    return make_windows(tokens, window, (lo, hi)), torch.from_numpy(acts[:, span, :].reshape(-1, store.d_model))


def run_method(
    method: str,
    store: ShardStore,
    train_shards: Sequence[int],
    explain_shards: Sequence[int],
    test_shards: Sequence[int],
    config: LMConfig,
    checkpoint_dir: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
    decode: Callable[[Sequence[int]], list[str]] | None = None,
) -> dict[str, Any]:
    """Train one method on ``train_shards`` and evaluate it on ``test_shards``.

    ``explain_shards`` (training contexts) supply the windows autointerp
    explains latents from; ``test_shards`` (held out) supply the held-out
    activations for NMSE/L0/dead/gap and the windows detection is scored on.
    ``decode`` (token ids -> strings, e.g. ``tokenizer.convert_ids_to_tokens``)
    makes the explanations readable.

    Returns
    -------
    dict
        ``nmse``, ``l0``, ``dead_latents``, ``n_latents``, ``gap``, ``f1`` (list
        over scored latents), ``f1_mean``, ``accuracy``, ``accuracy_mean``,
        ``explanations`` (latent id -> text), ``autointerp`` counts,
        ``train_seconds``, ``train_flops_per_step``, ``l1``.
    """
    dev = resolve_device(device)
    lo, hi = store.positions
    if config.window > hi - lo:
        raise ValueError(f"window={config.window} exceeds the {hi - lo} content tokens per context of the store")
    stream = ActivationStream(store, config.batch_size, train_shards, seed=config.seed, device=dev)
    norm = Normaliser.fit(stream)
    model = build_model(method, store.d_model, config).to(dev)
    steps = config.lca_steps if method == "LCA" and config.lca_steps is not None else config.steps
    resample_every = config.resample_every * steps // config.steps  # same number of resamplings for every method
    tcfg = TrainConfig(steps=steps, lr=config.lr, l1=config.l1_for(store.d_model),
                       resample_every=resample_every, seed=config.seed, progress=progress,
                       checkpoint_every=max(1, steps // 10) if checkpoint_dir else 0,
                       checkpoint_path=str(Path(checkpoint_dir) / f"{method}.pt") if checkpoint_dir else None)
    t0 = time.perf_counter()
    result = train(model, lambda i: (norm(stream.batch(i)), None, None), tcfg, desc=f"train {method}")
    train_seconds = time.perf_counter() - t0
    model = model.cpu()
    norm_cpu = Normaliser(norm.mean.cpu(), norm.scale)

    win_test, X_test = _content(store, test_shards, config.window)
    X_test = norm_cpu(X_test)
    out: dict[str, Any] = evaluate(model, X_test, config)
    win_explain, X_explain = _content(store, explain_shards, config.window)
    scores, counts = score_latents(
        win_explain, sparse_codes(model, norm_cpu(X_explain), config.eval_batch),
        win_test, sparse_codes(model, X_test, config.eval_batch),
        n_latents=config.n_latents, seed=config.seed,
        explainer=TokenExplainer(decode=decode) if decode is not None else None,
    )
    f1 = [s.f1 for s in scores]
    acc = [s.accuracy for s in scores]
    out.update(
        f1=f1,
        f1_mean=float(np.mean(f1)) if f1 else float("nan"),
        accuracy=acc,
        accuracy_mean=float(np.mean(acc)) if acc else float("nan"),
        explanations={str(s.latent): s.explanation for s in scores},
        autointerp=counts,
        train_seconds=train_seconds,
        train_flops_per_step=result.step_flops,
        resampled=result.resampled,
        steps=steps,
        l1=tcfg.l1,
    )
    return out
