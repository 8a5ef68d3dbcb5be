"""The language-model experiment's runner: train one method at one L0 target on a shard store, evaluate, score.

Three methods, trained by :func:`gapbound.training.train` on shuffled
minibatches streamed from a :class:`~gapbound.lm.shards.ShardStore`, each at a
*sparsity target* ``k`` (mean active latents per token) rather than with one
fixed L1 weight:

- ``SAE``: a TopK SAE (:class:`gapbound.models.SAE`, tied initialisation) with
  a unit-norm dictionary and the AuxK dead-latent loss (Gao et al. 2024;
  :class:`~gapbound.lm.objectives.TopKAutoencoder`);
- ``MLP``: the paper's one-hidden-layer encoder (:class:`gapbound.models.MLPEncoder`)
  with TopK on its output layer, trained by the same recipe;
- ``LCA``: sparse coding (:class:`gapbound.models.coding.SparseCoding`): every step
  infers each sample's code with the locally competitive algorithm under the
  current dictionary, then takes an Adam step on the dictionary; its LASSO
  weight adapts so that the mean L0 meets ``k``; dead atoms are resampled.

**Normalisation.** Activations are centred and scaled by constants estimated on
training batches, so that ``E ||x||^2 = d_model`` (SAELens's
``expected_average_only_in`` does the scaling; the centring plays the role of
a fixed decoder bias). NMSE is invariant to this affine map.

**Evaluation** on held-out shards: NMSE, L0, dead latents (never active on the
held-out set), the amortisation gap from :func:`gapbound.meter.measure_gap`
(per-sample optimal codes under the *same* decoder against the method's
codes, at the LASSO weight the method's codes are closest to stationary for,
bracketed by duality certificates), and explain-then-detect autointerp
(:mod:`gapbound.lm.autointerp`) on latents drawn uniformly from the live ones,
with a bootstrap 95 % confidence interval of the mean F1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from scipy.stats import bootstrap
from torch import nn

from .autointerp import TokenExplainer, make_windows, score_latents
from .objectives import TopKAutoencoder
from .shards import ActivationStream, ShardStore
from ..inference import SOLVERS
from ..meter import measure_gap
from ..models import SAE, Dictionary, MLPEncoder
from ..models.coding import SparseCoding
from ..synthetic.metrics import nmse
from ..training import TrainConfig, train
from ..utils.rng import seeded
from ..utils.validation import check_float, check_int, resolve_device

__all__ = ["METHODS", "LMConfig", "Normaliser", "build_model", "encode", "evaluate", "method_fields", "sparse_codes",
           "mean_ci", "mean_diff_ci", "raw_sae", "run_method", "tie_mlp"]

METHODS = ("SAE", "MLP", "LCA")


@dataclass(frozen=True)
class LMConfig:
    """Settings of one method's training and evaluation (the L0 target ``k`` is passed separately).

    Attributes
    ----------
    expansion : int
        Latents per input dimension (``N = expansion * d_model``; paper runs: 22).
    mlp_hidden_mult : int
        MLP hidden width per input dimension (the paper: ``11 * 768 = 8448`` for GPT-2).
    mlp_init : {"tied", "default"}
        ``"tied"`` (needs ``mlp_hidden_mult >= 2``): the MLP starts as the tied-initialised
        SAE (:func:`tie_mlp`), every latent alive; ``"default"``: PyTorch's initialisation,
        under which TopK training collapsed onto a quarter of the latents within 50 steps.
    steps, batch_size, lr : int, int, float
        Adam optimisation of the SAE and the MLP.
    aux_k, aux_coef, dead_steps : int, float, int
        AuxK loss (see :class:`~gapbound.lm.objectives.TopKAutoencoder`).
    mlp_dead_steps : int, optional
        The MLP's own AuxK dead threshold (``None``: ``dead_steps``). At k = 8 on the
        offline store the MLP kept 21 % of its latents (near-)dead with 100 steps and
        3 % with 20 (``results/lm_offline3/diagnostics``): its rare latents fire too
        seldom to count as dead under the longer window, so AuxK never trains them.
    lca_method : str
        Registered solver used as LCA's per-sample inference.
    lca_iters : int
        Inference iterations per sample per training step and at evaluation.
    lca_steps, lca_batch_size, lca_lr : int, int, float
        LCA's own optimisation budget (a step costs ``lca_iters`` inference iterations).
    lca_resample_every : int
        Dead-atom resampling period of LCA in steps (0: never).
    lca_gain : float
        Exponent of LCA's ``lam`` update towards the L0 target.
    gap_samples, gap_iters, gap_rtol : int, int, float
        Held-out vectors, iteration cap and certificate tolerance of the gap meter.
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
    mlp_init: str = "tied"
    steps: int = 50_000
    batch_size: int = 8192
    lr: float = 1e-4
    aux_k: int = 512
    aux_coef: float = 1 / 32
    dead_steps: int = 1000
    mlp_dead_steps: int | None = None
    lca_method: str = "lca"
    lca_iters: int = 50
    lca_steps: int = 50_000
    lca_batch_size: int = 8192
    lca_lr: float = 1e-4
    lca_resample_every: int = 12_500
    lca_gain: float = 0.05
    gap_samples: int = 4096
    gap_iters: int = 500
    gap_rtol: float = 1e-4
    n_latents: int = 200
    window: int = 32
    eval_batch: int = 2048
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("expansion", "mlp_hidden_mult", "steps", "batch_size", "aux_k", "dead_steps", "lca_iters",
                     "lca_steps", "lca_batch_size", "gap_samples", "gap_iters", "n_latents", "window", "eval_batch"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("lca_resample_every", self.lca_resample_every, minimum=0)
        if self.mlp_dead_steps is not None:
            check_int("mlp_dead_steps", self.mlp_dead_steps, minimum=1)
        check_int("seed", self.seed, minimum=0)
        for name in ("lr", "lca_lr"):
            check_float(name, getattr(self, name), minimum=0.0, strict_minimum=True)
        for name in ("aux_coef", "lca_gain", "gap_rtol"):
            check_float(name, getattr(self, name), minimum=0.0)
        if self.mlp_init not in ("tied", "default"):
            raise ValueError(f"mlp_init must be 'tied' or 'default', got {self.mlp_init!r}")
        if self.mlp_init == "tied" and self.mlp_hidden_mult < 2:
            raise ValueError(f"mlp_init='tied' needs mlp_hidden_mult >= 2 (got {self.mlp_hidden_mult}); "
                             "raise it or use mlp_init='default'")
        if self.lca_method not in SOLVERS:
            raise ValueError(f"lca_method must be a registered solver {sorted(SOLVERS)}, got {self.lca_method!r}")


def method_fields(method: str) -> frozenset[str]:
    """The :class:`LMConfig` fields that ``method``'s training and evaluation read.

    ``mlp_*`` fields are read by the MLP only, ``lca_*`` by LCA only, and the TopK
    recipe (``steps``, ``batch_size``, ``lr``, ``aux_*``, ``dead_steps``) by the SAE
    and the MLP; the rest by all. A finished part of a configuration that differs only
    in fields its method does not read is the same result (``simulations.gpt2 --carry-from``).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    names = {f.name for f in fields(LMConfig)}
    topk = {"steps", "batch_size", "lr", "aux_k", "aux_coef", "dead_steps"}
    only = {"MLP": {n for n in names if n.startswith("mlp_")}, "LCA": {n for n in names if n.startswith("lca_")}}
    other = set().union(*(v for m, v in only.items() if m != method)) | (topk if method == "LCA" else set())
    return frozenset(names - other)


@dataclass(frozen=True)
class Normaliser:
    """Affine map ``x -> (x - mean) * scale`` with ``E ||(x - mean) * scale||^2 = d``."""

    mean: torch.Tensor
    scale: float

    @classmethod
    def fit(cls, stream: ActivationStream, n_batches: int = 8) -> "Normaliser":
        X = torch.cat([stream.batch(i) for i in range(min(n_batches, len(stream)))]).double()
        mean = X.mean(0)
        scale = float((X.shape[1] / ((X - mean) ** 2).sum(1).mean()).sqrt())
        return cls(mean.float(), scale)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device)) * self.scale


@torch.no_grad()
def tie_mlp(encoder: MLPEncoder, D: torch.Tensor) -> MLPEncoder:
    """Initialise ``encoder`` to compute the tied SAE's pre-activations ``D^T x`` exactly (in place).

    The first ``2 M`` hidden units read ``relu(x)`` and ``relu(-x)`` and the output
    layer maps them to ``D^T (relu(x) - relu(-x)) = D^T x``; further hidden units keep
    PyTorch's input weights and start with zero output weights. Every latent then fires
    as often as a tied SAE's at step 0 (Gao et al. 2024's initialisation, carried over),
    instead of the few latents that PyTorch's initialisation favours on all inputs
    (``relu`` hidden features share a large mean, which a random output row turns into
    a fixed per-latent offset).
    """
    M, h = encoder.M, encoder.hidden
    if h < 2 * M:
        raise ValueError(f"a tied MLP needs hidden >= 2 * M = {2 * M}, got {h}")
    first, out = encoder.net[0], encoder.linear
    eye = torch.eye(M, dtype=first.weight.dtype, device=first.weight.device)
    first.weight[:M], first.weight[M:2 * M] = eye, -eye
    first.bias[:2 * M] = 0.0
    out.weight.zero_()
    out.weight[:, :M], out.weight[:, M:2 * M] = D.T, -D.T
    out.bias.zero_()
    return encoder


def build_model(method: str, d_model: int, k: int, config: LMConfig) -> nn.Module:
    """A fresh ``SAE``, ``MLP`` or ``LCA`` model for ``d_model``-dimensional activations at L0 target ``k``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    d_model = check_int("d_model", d_model, minimum=1)
    N = config.expansion * d_model
    k = check_int("k", k, minimum=1, maximum=N)

    def make() -> nn.Module:
        dictionary = Dictionary(d_model, N)
        if method == "LCA":
            return SparseCoding(dictionary, inner_iter=config.lca_iters, method=config.lca_method, target_l0=k,
                                gain=config.lca_gain)
        if method == "SAE":
            encoder = SAE(d_model, N, activation="topk", k=k)
            with torch.no_grad():  # tied initialisation (Gao et al. 2024): encoder rows = decoder atoms
                encoder.linear.weight.copy_(dictionary.weight.T)
                encoder.linear.bias.zero_()
        else:
            encoder = MLPEncoder(d_model, N, hidden=config.mlp_hidden_mult * d_model)
            if config.mlp_init == "tied":
                tie_mlp(encoder, dictionary.weight.detach())
        dead_steps = config.mlp_dead_steps if method == "MLP" and config.mlp_dead_steps is not None else config.dead_steps
        return TopKAutoencoder(encoder, dictionary, k, aux_k=config.aux_k, aux_coef=config.aux_coef, dead_steps=dead_steps)

    return seeded(config.seed, make)


@torch.no_grad()
def raw_sae(model: TopKAutoencoder, norm: Normaliser, **metadata: Any) -> SAE:
    """The trained TopK SAE as a :class:`~gapbound.models.SAE` that reads *raw* activations.

    Training sees ``(x - mean) * scale``; here the centring and scaling are folded into
    the weights (:meth:`SAE.fold_input_normalisation`), so the result encodes raw
    activations to the trained codes and reconstructs in raw units: the form SAELens
    (``SAE.save`` writes its layout) and the meter expect. ``metadata`` (``hook_name``,
    ``model_name``, ``context_size``, ``prepend_bos``) goes to ``cfg.json``.

    Raises
    ------
    TypeError
        For the MLP encoder and LCA, which have no SAELens architecture.
    """
    if not isinstance(model, TopKAutoencoder) or not isinstance(model.encoder, SAE):
        raise TypeError("only the SAE method exports to SAELens (the MLP encoder and LCA have no SAELens architecture)")
    W = model.encoder.linear.weight.detach().float().cpu()
    D = model.dictionary.weight.detach().float().cpu()
    sae = SAE.from_weights(W.T.contiguous(), model.encoder.linear.bias.detach().float().cpu().clone(), D.T.contiguous(),
                           torch.zeros(D.shape[0]), "topk", k=model.k, apply_b_dec_to_input=False, metadata=metadata)
    return sae.fold_input_normalisation(norm.mean.cpu(), 1.0 / norm.scale)


@torch.no_grad()
def encode(model: nn.Module, X: torch.Tensor, batch: int = 2048) -> torch.Tensor:
    """Codes of ``X`` (already normalised) in batches."""
    model.eval()
    return torch.cat([model.encode(X[i:i + batch]) for i in range(0, X.shape[0], batch)])


@torch.no_grad()
def sparse_codes(model: nn.Module, X: torch.Tensor, batch: int = 2048) -> sp.csr_matrix:
    """Codes of ``X`` as a sparse ``(n, N)`` matrix (never dense in full)."""
    model.eval()
    return sp.vstack([sp.csr_matrix(model.encode(X[i:i + batch]).numpy()) for i in range(0, X.shape[0], batch)]).tocsr()


def mean_ci(values: Sequence[float], seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Bootstrap (BCa) confidence interval of the mean; ``(nan, nan)`` for fewer than 2 values."""
    v = np.asarray(values, dtype=float)
    if v.size < 2 or np.ptp(v) == 0:
        return (float(v.mean()), float(v.mean())) if v.size else (float("nan"), float("nan"))
    res = bootstrap((v,), np.mean, confidence_level=level, n_resamples=2000, method="BCa",
                    random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mean_diff_ci(a: Sequence[float], b: Sequence[float], seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Bootstrap (BCa) confidence interval of ``mean(a) - mean(b)`` for independent samples; nan for < 2 values."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 2 or y.size < 2:
        return float("nan"), float("nan")
    res = bootstrap((x, y), lambda u, v, axis=-1: u.mean(axis) - v.mean(axis), confidence_level=level,
                    n_resamples=2000, method="BCa", random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, config: LMConfig, codes: sp.csr_matrix | None = None) -> dict[str, Any]:
    """NMSE, L0, dead latents and the amortisation gap of ``model`` on held-out (normalised) ``X``."""
    codes = sparse_codes(model, X, config.eval_batch) if codes is None else codes
    D = model.dictionary.weight.detach()
    recon = np.asarray(codes @ D.T.numpy())
    n = min(config.gap_samples, X.shape[0])
    rows = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(config.seed))[:n]
    gap = measure_gap(model.encode, D, X[rows], lam=None, max_iter=config.gap_iters, rtol=config.gap_rtol)
    fires = np.asarray((codes > 0).sum(0)).ravel()
    return {
        "nmse": nmse(X.numpy(), recon),
        "l0": float(codes.getnnz() / codes.shape[0]),
        "dead_latents": int((fires == 0).sum()),
        "dead_fraction": float((fires == 0).mean()),
        "n_latents": int(codes.shape[1]),
        "gap": gap.summary(),
    }


def _content(store: ShardStore, shards: Sequence[int], window: int) -> tuple[np.ndarray, torch.Tensor]:
    """Token windows of ``shards`` and their activations in the same (window-major) order."""
    lo, hi = store.positions
    tokens = store.tokens(shards)
    acts = store.activations(shards)
    per = (hi - lo) // window
    span = slice(lo, lo + per * window)
    return make_windows(tokens, window, (lo, hi)), torch.from_numpy(acts[:, span, :].astype(np.float32).reshape(-1, store.d_model))


def run_method(
    method: str,
    k: int,
    store: ShardStore,
    splits: dict[str, Sequence[int]],
    config: LMConfig,
    checkpoint_dir: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
    decode: Callable[[Sequence[int]], list[str]] | None = None,
    export_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Train ``method`` at L0 target ``k`` on ``splits["train"]`` and evaluate it on ``splits["test"]``.

    ``splits["explain"]`` (training contexts) supply the windows autointerp
    explains latents from; ``splits["test"]`` (held out) the activations for
    NMSE/L0/dead/gap and the windows detection is scored on. ``decode``
    (token ids -> strings) makes the explanations readable. With ``export_dir``
    a trained SAE is saved to ``export_dir/SAE-k{k}`` in SAELens's layout with
    the normalisation folded in (:func:`raw_sae`), so it reads raw activations.

    Returns
    -------
    dict
        ``nmse``, ``l0``, ``dead_latents``, ``dead_fraction``, ``n_latents``, ``gap``,
        ``f1`` (list over scored latents), ``f1_mean``, ``f1_ci``, ``accuracy``,
        ``accuracy_mean``, ``explanations``, ``autointerp`` counts, ``k``, ``steps``,
        ``train_seconds``, ``eval_seconds`` (wall), ``train_cpu_seconds``, ``eval_cpu_seconds`` (this
        process's CPU time, all threads), ``train_flops_per_step``, ``train_tokens``, ``resampled``, ``lam`` (LCA),
        ``saelens_dir`` (the exported SAE, or None).
    """
    dev = resolve_device(device)
    lo, hi = store.positions
    if config.window > hi - lo:
        raise ValueError(f"window={config.window} exceeds the {hi - lo} content tokens per context of the store")
    lca = method == "LCA"
    batch_size = config.lca_batch_size if lca else config.batch_size
    steps = config.lca_steps if lca else config.steps
    stream = ActivationStream(store, batch_size, list(splits["train"]), seed=config.seed, device=dev)
    norm = Normaliser.fit(stream)
    model = build_model(method, store.d_model, k, config).to(dev)
    tcfg = TrainConfig(steps=steps, lr=config.lca_lr if lca else config.lr, l1=0.0 if not lca else 1.0 / store.d_model,
                       resample_every=config.lca_resample_every if lca else 0, seed=config.seed, progress=progress,
                       checkpoint_every=max(1, steps // 10) if checkpoint_dir else 0,
                       checkpoint_path=str(Path(checkpoint_dir) / f"{method}-k{k}.pt") if checkpoint_dir else None)
    t0, c0 = time.perf_counter(), time.process_time()
    result = train(model, lambda i: (norm(stream.batch(i).float()), None, None), tcfg, desc=f"train {method} k={k}")
    train_seconds, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    model = model.cpu().eval()
    norm_cpu = Normaliser(norm.mean.cpu(), norm.scale)
    saelens_dir = None
    if method == "SAE" and export_dir is not None:
        saelens_dir = raw_sae(model, norm_cpu, hook_name=store.meta.get("hook_name"), model_name=store.fingerprint["model"],
                              context_size=store.context_length,
                              prepend_bos=bool(store.meta.get("prepend_bos"))).save(Path(export_dir) / f"{method}-k{k}")

    t0, c0 = time.perf_counter(), time.process_time()
    win_test, X_test = _content(store, splits["test"], config.window)
    X_test = norm_cpu(X_test)
    codes_test = sparse_codes(model, X_test, config.eval_batch)
    out: dict[str, Any] = evaluate(model, X_test, config, codes_test)
    win_explain, X_explain = _content(store, splits["explain"], config.window)
    scores, counts = score_latents(
        win_explain, sparse_codes(model, norm_cpu(X_explain), config.eval_batch), win_test, codes_test,
        n_latents=config.n_latents, seed=config.seed,
        explainer=TokenExplainer(decode=decode) if decode is not None else None,
    )
    f1 = [s.f1 for s in scores]
    acc = [s.accuracy for s in scores]
    out.update(
        f1=f1,
        f1_mean=float(np.mean(f1)) if f1 else float("nan"),
        f1_ci=mean_ci(f1, config.seed),
        accuracy=acc,
        accuracy_mean=float(np.mean(acc)) if acc else float("nan"),
        accuracy_ci=mean_ci(acc, config.seed),
        explanations={str(s.latent): s.explanation for s in scores},
        autointerp=counts,
        k=k,
        steps=steps,
        batch_size=batch_size,
        train_tokens=steps * batch_size,
        train_seconds=train_seconds,
        eval_seconds=time.perf_counter() - t0,
        train_cpu_seconds=train_cpu,
        eval_cpu_seconds=time.process_time() - c0,
        train_flops_per_step=result.step_flops,
        resampled=result.resampled,
        lam=float(model.lam) if lca else None,
        saelens_dir=None if saelens_dir is None else str(saelens_dir),
    )
    return out
