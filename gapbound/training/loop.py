"""One training loop for every method and setting.

A *model* here is one of three objectives (all ``nn.Module`` s):

- :class:`Supervised` (known Z): ``mean_{batch,latents} (f(x) - s)^2``.
- :class:`Autoencoder` (known D / unknown): ``mean_{batch,dims} (x - D f(x))^2
  + l1 * mean_batch ||f(x)||_1``; the dictionary is frozen (known D) or learned
  with unit-norm columns (unknown).
- :class:`~gapbound.models.coding.SparseCoding`: the same reconstruction +
  L1 objective with the codes themselves as free per-sample parameters.

**L1 normalisation.** The reconstruction term is the mean squared error over
the batch *and* the ``M`` input dimensions (``torch.nn.functional.mse_loss``);
the penalty is ``l1`` times the batch mean of each code's L1 norm (a sum over
the ``N`` latents). With unit-norm dictionary columns the penalty cannot be
evaded by rescaling.

:func:`train` runs Adam (paper defaults: lr 3e-4, l1 1e-4), resamples dead
latents every ``resample_every`` steps (Bricken et al. 2023: a latent that did
not fire since the last resampling is re-pointed at a poorly reconstructed
input), records MCC-vs-FLOPs curves through an evaluation callback, shows a
tqdm progress bar, and checkpoints atomically. Minibatches are pure functions
of the step index, so a resumed run reproduces an uninterrupted one exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..synthetic.data import CodeStream, make_generator
from ..models.encoders import Dictionary
from ..utils.flops import train_step_flops
from ..utils.io import atomic_save
from ..utils.validation import check_float, check_int

__all__ = [
    "TrainConfig",
    "Batch",
    "BatchFn",
    "Supervised",
    "Autoencoder",
    "tensor_batches",
    "stream_batches",
    "train",
    "TrainResult",
    "high_loss_inputs",
]

Batch = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]
"""``(x, s, idx)``: inputs, true codes (known Z only, else None), dataset row indices (or None)."""

BatchFn = Callable[[int], Batch]
"""Maps a step index to its minibatch; must be deterministic for exact resume."""


@dataclass
class TrainConfig:
    """Optimisation settings shared by every method.

    Attributes
    ----------
    steps : int
        Adam steps.
    lr : float
        Learning rate (paper: 3e-4).
    l1 : float
        L1 penalty weight (paper: 1e-4); see the module docstring for its normalisation.
    resample_every : int
        Dead-latent resampling period in steps (paper: 15,000); 0 disables it.
    eval_every : int
        Steps between evaluation-callback calls (curves); 0 evaluates only at the end.
    checkpoint_every : int
        Steps between checkpoints (0: none, unless ``checkpoint_path`` is set, then only at the end).
    checkpoint_path : str, optional
        File to checkpoint to and resume from.
    seed : int
        Seed for parameter initialisation and resampling.
    progress : bool
        Show a tqdm progress bar.
    """

    steps: int = 100_000
    lr: float = 3e-4
    l1: float = 1e-4
    resample_every: int = 15_000
    eval_every: int = 0
    checkpoint_every: int = 0
    checkpoint_path: str | None = None
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        check_int("steps", self.steps, minimum=0)
        check_float("lr", self.lr, minimum=0.0, strict_minimum=True)
        check_float("l1", self.l1, minimum=0.0)
        check_int("resample_every", self.resample_every, minimum=0)
        check_int("eval_every", self.eval_every, minimum=0)
        check_int("checkpoint_every", self.checkpoint_every, minimum=0)
        check_int("seed", self.seed, minimum=0)


class Trainable(Protocol):
    """What :func:`train` needs from a model."""

    def loss(self, batch: Batch, l1: float) -> tuple[torch.Tensor, torch.Tensor]: ...
    def after_step(self) -> None: ...
    def resample(self, dead: torch.Tensor, batch: Batch, generator: torch.Generator) -> list[tuple[nn.Parameter, int]]: ...
    def parameters(self) -> Any: ...


def _l1(codes: torch.Tensor) -> torch.Tensor:
    return codes.abs().sum(1).mean()


def _resample_encoder_rows(encoder: nn.Module, dead_idx: torch.Tensor, inputs: torch.Tensor) -> list[tuple[nn.Parameter, int]]:
    """Point dead latents at poorly reconstructed ``inputs`` (Bricken et al. 2023).

    A dead latent's row of the encoder's output layer becomes ``0.2 * mean alive
    row norm`` times the unit-norm features that layer reads for one of the
    inputs (the input itself for an SAE, the hidden activations for an MLP), with
    zero bias, so the latent fires on that input and its neighbours again.
    """
    layer: nn.Linear = encoder.linear
    with torch.no_grad():
        alive = torch.ones(layer.weight.shape[0], dtype=torch.bool, device=layer.weight.device)
        alive[dead_idx] = False
        scale = layer.weight[alive].norm(dim=1).mean() if alive.any() else torch.tensor(1.0)
        feats = encoder.features(inputs)
        layer.weight[dead_idx] = 0.2 * scale * feats / feats.norm(dim=1, keepdim=True).clamp_min(1e-12)
        layer.bias[dead_idx] = 0.0
    return [(layer.weight, 0), (layer.bias, 0)]


def high_loss_inputs(x: torch.Tensor, per_sample_loss: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` unit-norm rows of ``x`` sampled with probability proportional to their squared loss."""
    w = per_sample_loss.detach().double().cpu() ** 2
    w = w if float(w.sum()) > 0 else torch.ones_like(w)
    idx = torch.multinomial(w, n, replacement=True, generator=generator).to(x.device)
    xs = x[idx]
    return xs / xs.norm(dim=1, keepdim=True).clamp_min(1e-12)


class Supervised(nn.Module):
    """Known-Z objective: regress the true codes, ``mean (f(x) - s)^2``, through the gate's surrogate.

    For an encoder ``f(x) = g(z)`` the loss of an entry with ``s > 0`` is taken on
    the pre-activation, ``(z - s)^2``, and of an entry with ``s = 0`` on the
    output, ``g(z)^2``. Wherever the active entries pass the gate this *is*
    ``(f(x) - s)^2`` (and for ReLU it is a convex upper bound of it in the
    output layer), but an active entry the gate has closed still gets a
    gradient. With the exact loss such a latent has no gradient on any sample
    and dies for good: at N = 1000 with 98 % of targets at zero, most of an MLP's
    output units died within 300 Adam steps (measured: 819 of 1000, MCC 0.16;
    with the surrogate none died and MCC was 0.82).
    """

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def loss(self, batch: Batch, l1: float) -> tuple[torch.Tensor, torch.Tensor]:
        x, s, _ = batch
        if s is None:
            raise ValueError("the supervised (known Z) objective needs true codes in every batch")
        z = self.encoder.preactivation(x)
        codes = self.encoder.gate(z)
        return torch.where(s > 0, (z - s) ** 2, codes**2).mean(), codes

    def after_step(self) -> None:
        pass

    def resample(self, dead: torch.Tensor, batch: Batch, generator: torch.Generator) -> list[tuple[nn.Parameter, int]]:
        x, s, _ = batch
        with torch.no_grad():
            per_sample = ((self.encoder(x) - s) ** 2).sum(1)
        dead_idx = dead.nonzero().flatten()
        return _resample_encoder_rows(self.encoder, dead_idx, high_loss_inputs(x, per_sample, len(dead_idx), generator))


class Autoencoder(nn.Module):
    """Reconstruction + L1 objective with an encoder and a (frozen or learned) unit-norm dictionary."""

    def __init__(self, encoder: nn.Module, dictionary: Dictionary):
        super().__init__()
        self.encoder = encoder
        self.dictionary = dictionary

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def loss(self, batch: Batch, l1: float) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch[0]
        codes = self.encoder(x)
        return F.mse_loss(self.dictionary(codes), x) + l1 * _l1(codes), codes

    def after_step(self) -> None:
        if self.dictionary.weight.requires_grad:
            self.dictionary.normalise_()

    def resample(self, dead: torch.Tensor, batch: Batch, generator: torch.Generator) -> list[tuple[nn.Parameter, int]]:
        x = batch[0]
        with torch.no_grad():
            per_sample = ((self.dictionary(self.encoder(x)) - x) ** 2).sum(1)
        dead_idx = dead.nonzero().flatten()
        directions = high_loss_inputs(x, per_sample, len(dead_idx), generator)
        touched = _resample_encoder_rows(self.encoder, dead_idx, directions)
        if self.dictionary.weight.requires_grad:
            with torch.no_grad():
                self.dictionary.weight[:, dead_idx] = directions.T
            touched.append((self.dictionary.weight, 1))
        return touched


def tensor_batches(X: torch.Tensor, S: torch.Tensor | None = None, batch_size: int | None = None, seed: int = 0) -> BatchFn:
    """Minibatches from in-memory tensors: the full set (``batch_size=None``) or shuffled epochs.

    Epoch ``e`` visits the rows in a permutation drawn from ``(seed, e)``, so
    the batch of step ``i`` is a pure function of ``i``: reproducible and resumable.
    """
    n = X.shape[0]
    if S is not None and S.shape[0] != n:
        raise ValueError(f"X and S must have the same number of rows, got {n} and {S.shape[0]}")
    if batch_size is None or batch_size >= n:
        idx = torch.arange(n, device=X.device)
        return lambda i: (X, S, idx)
    check_int("batch_size", batch_size, minimum=1)
    per_epoch = n // batch_size
    cache: dict[int, torch.Tensor] = {}

    def fn(i: int) -> Batch:
        epoch, k = divmod(i, per_epoch)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = torch.randperm(n, generator=make_generator(seed, 7, epoch)).to(X.device)
        rows = cache[epoch][k * batch_size : (k + 1) * batch_size]
        return X[rows], None if S is None else S[rows], rows

    return fn


def stream_batches(stream: CodeStream, device: torch.device | str = "cpu") -> BatchFn:
    """Minibatches of a :class:`~gapbound.synthetic.data.CodeStream` (step ``i`` -> batch ``i``), for known-Z training."""

    def fn(i: int) -> Batch:
        X, S = stream.batch(i, device)
        return X, S, None

    return fn


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes
    ----------
    step_flops : int
        FLOPs of one training step (forward + backward), measured.
    history : list of dict
        Evaluation-callback outputs, each with ``step`` and ``train_flops`` (cumulative).
    final_loss : float
        Loss at the last step.
    resampled : int
        Total latents resampled.
    """

    step_flops: int
    history: list[dict] = field(default_factory=list)
    final_loss: float = float("nan")
    resampled: int = 0


def _resume_key(config: dict) -> dict:
    """The settings a checkpoint must share with the run resuming it (display options may differ)."""
    return {k: v for k, v in config.items() if k != "progress"}


def _reset_adam(opt: torch.optim.Optimizer, touched: list[tuple[nn.Parameter, int]], idx: torch.Tensor) -> None:
    """Zero Adam's moments for the resampled rows/columns so old momentum does not undo the reset."""
    for p, dim in touched:
        state = opt.state.get(p)
        if not state:
            continue
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key].index_fill_(dim, idx.to(state[key].device), 0.0)


def train(
    model: Trainable,
    batches: BatchFn,
    config: TrainConfig,
    evaluate: Callable[[nn.Module], dict] | None = None,
    desc: str = "train",
) -> TrainResult:
    """Train ``model`` with Adam on ``batches`` according to ``config``.

    Parameters
    ----------
    model : nn.Module
        A :class:`Supervised`, :class:`Autoencoder` or
        :class:`~gapbound.models.coding.SparseCoding`.
    batches : callable
        ``batches(step) -> (x, s, idx)``; deterministic in ``step``.
    config : TrainConfig
        Optimisation settings.
    evaluate : callable, optional
        ``evaluate(model) -> dict`` of metrics, called every ``eval_every``
        steps and at the end; recorded in ``history`` with cumulative FLOPs.
    desc : str
        Progress-bar label.

    Returns
    -------
    TrainResult
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    # The fused kernel saves most of the per-step overhead of these small models.
    fused = all(p.dtype in (torch.float32, torch.float64) for p in params) and len({p.device for p in params}) == 1
    opt = torch.optim.Adam(params, lr=config.lr, fused=fused)
    step_flops = train_step_flops(lambda: model.loss(batches(0), config.l1)[0], params)
    result = TrainResult(step_flops=step_flops)
    n_latents = model.loss(batches(0), config.l1)[1].shape[1]
    fired = torch.zeros(n_latents, dtype=torch.bool)
    start = 0

    ckpt = Path(config.checkpoint_path) if config.checkpoint_path else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if _resume_key(state.get("config", {})) != _resume_key(asdict(config)):
            raise ValueError(f"checkpoint {ckpt} was written with a different TrainConfig; remove it or change checkpoint_path")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, fired = state["step"], state["fired"]
        result.history, result.resampled = state["history"], state["resampled"]

    def checkpoint(step: int) -> None:
        if ckpt is not None:
            atomic_save(
                {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "fired": fired,
                 "history": result.history, "resampled": result.resampled, "config": asdict(config)},
                ckpt,
            )

    def record(step: int) -> None:
        if evaluate is not None and not any(h["step"] == step for h in result.history):
            model.eval()
            with torch.no_grad():
                metrics = evaluate(model)
            model.train()
            result.history.append({"step": step, "train_flops": step * step_flops, **metrics})

    if start == 0 and config.eval_every:
        record(0)
    bar = tqdm(range(start, config.steps), desc=desc, disable=not config.progress, initial=start, total=config.steps,
               unit="step", dynamic_ncols=True, leave=False)
    loss = torch.tensor(float("nan"))
    for step in bar:
        batch = batches(step)
        loss, codes = model.loss(batch, config.l1)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower lr (now {config.lr})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.after_step()
        fired |= (codes.detach() > 0).any(0).cpu()
        done = step + 1
        if config.resample_every and done % config.resample_every == 0 and done < config.steps:
            dead = ~fired
            if dead.any():
                touched = model.resample(dead, batch, make_generator(config.seed, 11, done))
                _reset_adam(opt, touched, dead.nonzero().flatten())
                result.resampled += int(dead.sum())
            fired = torch.zeros_like(fired)
        if config.eval_every and done % config.eval_every == 0:
            record(done)
        if config.checkpoint_every and done % config.checkpoint_every == 0:
            checkpoint(done)
        if done % 200 == 0:
            bar.set_postfix(loss=f"{loss.item():.3e}", refresh=False)
    record(config.steps)
    result.final_loss = float(loss.detach()) if start < config.steps else float("nan")
    checkpoint(config.steps)
    return result
