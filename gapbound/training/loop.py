"""The training loop: Adam, dead-latent resampling, evaluation curves, atomic checkpoints, exact resume.

:func:`train` runs Adam (paper defaults: lr 3e-4, l1 1e-4) on any
:class:`~gapbound.training.objectives.Trainable` (``Supervised``,
``Autoencoder``, ``SparseCoding``), resamples dead latents every
``resample_every`` steps (:mod:`gapbound.training.resample`), records
MCC-vs-FLOPs curves through an evaluation callback, shows a tqdm progress bar,
and checkpoints atomically. Minibatches are pure functions of the step index
(:mod:`gapbound.training.batches`), so a resumed run reproduces an
uninterrupted one exactly.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from ..synthetic.data import make_generator
from ..utils.flops import train_step_flops
from ..utils.io import atomic_save, load_checkpoint
from ..utils.validation import check_float, check_int
from .batches import BatchFn
from .objectives import Trainable
from .resample import reset_adam_rows


__all__ = ["TrainConfig", "TrainResult", "train"]


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
    seconds_before : float or None
        Wall seconds earlier invocations spent training this run (0 for a fresh run; read from the
        checkpoint it resumed; None when that checkpoint predates this record).
    """

    step_flops: int
    history: list[dict] = field(default_factory=list)
    final_loss: float = float("nan")
    resampled: int = 0
    seconds_before: float | None = 0.0


def seconds_before(state: dict | None) -> float | None:
    """Training seconds a checkpoint records for the invocations that wrote it (None if it predates the record)."""
    return 0.0 if state is None else state.get("train_s")


def seconds_so_far(before: float | None, t0: float) -> float | None:
    """``before`` plus this invocation's seconds since ``t0`` (None stays None: an unknown share stays unknown)."""
    return None if before is None else before + time.perf_counter() - t0


def resume_key(config: dict) -> dict:
    """The settings a checkpoint must share with the run resuming it (display options may differ)."""
    return {k: v for k, v in config.items() if k != "progress"}


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
    t0 = time.perf_counter()
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
    state = load_checkpoint(ckpt) if ckpt is not None and ckpt.exists() else None
    result.seconds_before = seconds_before(state)
    if state is not None:
        if resume_key(state.get("config", {})) != resume_key(asdict(config)):
            raise ValueError(f"checkpoint {ckpt} was written with a different TrainConfig; remove it or change checkpoint_path")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, fired = state["step"], state["fired"]
        result.history, result.resampled = state["history"], state["resampled"]

    def checkpoint(step: int) -> None:
        if ckpt is not None:
            atomic_save(
                {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "fired": fired,
                 "history": result.history, "resampled": result.resampled, "config": asdict(config),
                 "train_s": seconds_so_far(result.seconds_before, t0)},
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
                reset_adam_rows(opt, touched, dead.nonzero().flatten())
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
