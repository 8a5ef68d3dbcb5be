"""Every seed of a synthetic setting at once: :func:`run_seeds`, the batched counterpart of ``run_seed``.

Each base model that the batched engine can stack (SAE and MLP encoders, and
sparse coding's learned dictionaries with their per-sample codes in the
``unknown`` setting; :func:`gapbound.training.engine.can_batch`) is trained for
all seeds together with :func:`gapbound.training.engine.train_batched`.
Models, minibatches, resampling, evaluation points and test-set evaluation are
those of :func:`gapbound.synthetic.methods.run_seed`, so each seed's result
equals ``run_seed``'s up to floating-point summation order
(``tests/test_engine.py``). Wall time of a batched base is split evenly over its seeds.
"""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

import torch

from ..training.engine import can_batch, stacked_tensor_batches, train_batched
from ..utils.experiment import fingerprint
from ..utils.validation import check_int, resolve_device
from .data import SyntheticConfig, SyntheticProblem, make_problem
from .methods import ExperimentConfig, MethodSpec, _as_trained, _checkpoint, _evaluate, _train_base, _train_setup, parse_method

__all__ = ["run_seeds"]


def _batched_checkpoint(directory: str | None, cfg: ExperimentConfig, spec: MethodSpec, seeds: Sequence[int]) -> str | None:
    """One checkpoint file for the stack of ``seeds``, keyed like the per-seed ones plus the seed list."""
    if directory is None:
        return None
    # Keyed on the per-seed file names, not paths: the same folder spelled another way
    # (relative or absolute) must resume the same checkpoint.
    per_seed = [os.path.basename(_checkpoint(directory, cfg, spec, s)) for s in seeds]
    return f"{directory}/{cfg.setting}-{spec.base}-seeds{'_'.join(map(str, seeds))}-{fingerprint(per_seed)}.pt"


def _train_stacked(spec: MethodSpec, cfg: ExperimentConfig, problems: Sequence[SyntheticProblem], seeds: Sequence[int],
                   checkpoint_dir: str | None) -> list | None:
    """Train ``spec``'s base for every seed at once; ``None`` if the engine cannot stack it."""
    t0 = time.perf_counter()
    setups = [_train_setup(spec, cfg, p, s, None) for p, s in zip(problems, seeds)]
    models = [m for m, _, _ in setups]
    if not all(can_batch(m) for m in models):
        return None
    X = torch.stack([p.X_train for p in problems])
    S = torch.stack([p.S_train for p in problems]) if cfg.setting == "known_z" else None
    results = train_batched(models, stacked_tensor_batches(X, S, cfg.batch_size, seeds), [c for _, c, _ in setups],
                            evaluate=[e for _, _, e in setups], checkpoint_path=_batched_checkpoint(checkpoint_dir, cfg, spec, seeds),
                            desc=f"{cfg.setting}/{spec.base}/seeds{list(seeds)}")
    seconds = time.perf_counter() - t0
    return [_as_trained(m, r, cfg, p, seconds, sharers=len(seeds)) for m, r, p in zip(models, results, problems)]


def run_seeds(cfg: ExperimentConfig, seeds: Sequence[int], checkpoint_dir: str | None = None) -> list[dict[str, dict[str, Any]]]:
    """:func:`~gapbound.synthetic.methods.run_seed` for several seeds, batching the training across seeds.

    Parameters
    ----------
    cfg : ExperimentConfig
        The experiment.
    seeds : sequence of int
        Distinct seeds; each seeds its dictionary, data and initialisation as in ``run_seed``.
    checkpoint_dir : str, optional
        Where training checkpoints go (one file per stacked base; resumed if present).

    Returns
    -------
    list of dict
        ``run_seed``'s result for each seed, in order.
    """
    seeds = [check_int("seed", s, minimum=0) for s in seeds]
    if not seeds or len(set(seeds)) < len(seeds):
        raise ValueError(f"seeds must be distinct and non-empty, got {seeds}")
    device = resolve_device(cfg.device)
    problems = [make_problem(SyntheticConfig(**{**cfg.data.to_dict(), "seed": s})).to(device) for s in seeds]
    specs = [parse_method(m) for m in cfg.methods]
    trained: list[dict] = [{} for _ in seeds]
    for name, spec in {s.base: parse_method(s.base) for s in specs}.items():
        stacked = None
        if (spec.encoder is not None or cfg.setting == "unknown") and len(seeds) > 1:
            stacked = _train_stacked(spec, cfg, problems, seeds, checkpoint_dir)
        for b, (p, s) in enumerate(zip(problems, seeds)):
            trained[b][name] = stacked[b] if stacked else _train_base(spec, cfg, p, s, _checkpoint(checkpoint_dir, cfg, spec, s), None)
    out = []
    for t, p in zip(trained, problems):
        encoded: dict = {}
        out.append({s.name: _evaluate(s, t[s.base], cfg, p, encoded) for s in specs})
    return out
