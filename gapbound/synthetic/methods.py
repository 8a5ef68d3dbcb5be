"""The paper's inference methods in its three synthetic settings, configured and evaluated.

Settings (``N, M, K`` from :class:`~gapbound.synthetic.data.SyntheticConfig`):

- ``known_z``: encoders regress the true codes (:class:`~gapbound.training.loop.Supervised`);
  ITO and SC use the true dictionary.
- ``known_d``: encoders are trained on reconstruction + L1 through the frozen true dictionary.
- ``unknown``: encoders and dictionary are learned together; SC learns codes and dictionary.

Methods: ``SAE`` (ReLU), ``SAE+ITO`` (per-sample optimisation warm-started
from the SAE's codes under the decoder in use), ``MLP-<h>`` (one hidden layer
of width ``h``), ``SC`` (sparse coding: per-sample inference from zero; in
``unknown`` the dictionary is learned with free per-sample codes first).

:func:`run_seed` trains each base model once (SAE+ITO reuses the SAE) and
returns, per method, test MCC, dictionary MCC, support F1, measured training
and inference FLOPs, wall time, and an MCC-vs-cumulative-FLOPs curve.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .data import SyntheticConfig, SyntheticProblem, make_problem
from ..models.encoders import Dictionary, make_encoder
from ..utils.flops import count_flops
from ..inference import solve
from .metrics import dictionary_mcc, mcc, support_scores
from ..models.coding import SparseCoding
from ..training.loop import Autoencoder, BatchFn, Supervised, TrainConfig, tensor_batches, train
from ..utils.validation import check_float, check_int, resolve_device

__all__ = [
    "SETTINGS",
    "DEFAULT_METHODS",
    "Setting",
    "MethodSpec",
    "parse_method",
    "ExperimentConfig",
    "run_seed",
    "summarise",
]

Setting = Literal["known_z", "known_d", "unknown"]
SETTINGS: tuple[str, ...] = ("known_z", "known_d", "unknown")
DEFAULT_METHODS: tuple[str, ...] = ("SAE", "SAE+ITO", "MLP-32", "MLP-256", "MLP-1024", "SC")


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method name: ``kind`` in {sae, sae_ito, mlp, sc} and the MLP's hidden width."""

    name: str
    kind: str
    hidden: int | None = None


def parse_method(name: str) -> MethodSpec:
    """Parse ``SAE``, ``SAE+ITO``, ``MLP-<h>`` or ``SC`` (case-insensitive)."""
    key = name.strip().upper()
    if key == "SAE":
        return MethodSpec("SAE", "sae")
    if key == "SAE+ITO":
        return MethodSpec("SAE+ITO", "sae_ito")
    if key == "SC":
        return MethodSpec("SC", "sc")
    m = re.fullmatch(r"MLP-(\d+)", key)
    if m and int(m.group(1)) >= 1:
        return MethodSpec(f"MLP-{int(m.group(1))}", "mlp", int(m.group(1)))
    raise ValueError(f"unknown method {name!r}; expected SAE, SAE+ITO, MLP-<hidden width> or SC")


@dataclass
class ExperimentConfig:
    """Everything a synthetic run needs besides the seed.

    Attributes
    ----------
    setting : str
        ``known_z``, ``known_d`` or ``unknown``.
    data : SyntheticConfig
        Problem sizes (its ``seed`` is replaced by the run's seed).
    train : TrainConfig
        Optimisation settings of every trained model.
    methods : tuple of str
        Method names (see :func:`parse_method`).
    batch_size : int, optional
        Minibatch size; ``None`` trains on the full training set every step.
    ito_lam : float
        L1 weight of per-sample inference (ITO and SC encoding).
    ito_max_iter : int
        Iteration cap of per-sample inference.
    ito_tol : float
        Duality-gap tolerance of per-sample inference (float32 dictionaries
        certify down to about ``1e-6``; below that the solver runs to ``ito_max_iter``).
    ito_polish : bool
        Whether FISTA finishes with the active set (exact solutions); ``False``
        gives plain FISTA, whose cost is set by ``ito_max_iter`` (the frontier's budgets).
    curve_points : int
        Evaluations along training for the MCC-vs-FLOPs curves.
    device : str
        ``cpu``, ``cuda`` or ``auto``.
    """

    setting: str = "known_d"
    data: SyntheticConfig = field(default_factory=SyntheticConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    methods: tuple[str, ...] = DEFAULT_METHODS
    batch_size: int | None = None
    ito_lam: float = 1e-3
    ito_max_iter: int = 2000
    ito_tol: float = 1e-7
    ito_polish: bool = True
    curve_points: int = 20
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.setting not in SETTINGS:
            raise ValueError(f"setting must be one of {SETTINGS}, got {self.setting!r}")
        self.methods = tuple(parse_method(m).name for m in self.methods)
        if not self.methods:
            raise ValueError("methods must name at least one method")
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size, minimum=1)
        check_float("ito_lam", self.ito_lam, minimum=0.0)
        check_int("ito_max_iter", self.ito_max_iter, minimum=1)
        check_float("ito_tol", self.ito_tol, minimum=0.0)
        check_int("curve_points", self.curve_points, minimum=1)
        resolve_device(self.device)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _seeded(seed: int, build):
    """Build a module under a fixed torch seed without disturbing the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _infer(D: torch.Tensor, X: torch.Tensor, cfg: ExperimentConfig, init: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """Per-sample inference under ``D`` with its FLOPs measured; returns (codes, flops)."""
    flops, res = count_flops(_solve, D, X, cfg, init=init)
    return res.codes, flops


def _solve(D: torch.Tensor, X: torch.Tensor, cfg: ExperimentConfig, init: torch.Tensor | None = None, max_iter: int | None = None):
    """FISTA under ``D`` with the experiment's inference settings."""
    return solve(D.detach(), X, cfg.ito_lam, method="fista", init=init, max_iter=max_iter or cfg.ito_max_iter, tol=cfg.ito_tol,
                 polish=cfg.ito_polish)


def _scores(problem: SyntheticProblem, codes: torch.Tensor, D_hat: torch.Tensor | None) -> dict[str, float | None]:
    sup = support_scores(problem.S_test, codes, threshold=1e-3)
    return {
        "mcc": mcc(problem.S_test, codes),
        "dict_mcc": None if D_hat is None else dictionary_mcc(problem.D, D_hat),
        "support_f1": sup.f1,
    }


def _model_for(spec: MethodSpec, setting: str, problem: SyntheticProblem, seed: int) -> nn.Module:
    M, N = problem.config.M, problem.config.N
    if spec.kind == "sc":
        return SparseCoding(_seeded(seed, lambda: Dictionary(M, N)), problem.X_train.shape[0])
    encoder = _seeded(seed, lambda: make_encoder("mlp" if spec.kind == "mlp" else "sae", M, N, hidden=spec.hidden))
    if setting == "known_z":
        return Supervised(encoder)
    dictionary = (
        Dictionary(M, N, weight=problem.D, trainable=False) if setting == "known_d" else _seeded(seed + 1, lambda: Dictionary(M, N))
    )
    return Autoencoder(encoder, dictionary)


def _decoder(model: nn.Module, problem: SyntheticProblem) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(dictionary used for ITO, learned dictionary or None)."""
    if isinstance(model, Supervised):
        return problem.D, None
    D = model.dictionary.weight.detach()
    return D, (None if not model.dictionary.weight.requires_grad else D)


def _train_model(
    spec: MethodSpec, cfg: ExperimentConfig, problem: SyntheticProblem, seed: int, ckpt: str | None, batches: BatchFn | None
):
    model = _model_for(spec, cfg.setting, problem, seed).to(problem.X_test.device)
    if batches is None:
        S_train = problem.S_train if cfg.setting == "known_z" else None
        batches = tensor_batches(problem.X_train, S_train, cfg.batch_size, seed=seed)
    tcfg = TrainConfig(**{**asdict(cfg.train), "seed": seed, "checkpoint_path": ckpt,
                          "eval_every": max(1, cfg.train.steps // cfg.curve_points) if cfg.train.steps else 0})

    def evaluate(m: nn.Module) -> dict:
        if isinstance(m, SparseCoding):
            # curve points only need a rough encoding; the final evaluation runs to tolerance
            # (no FLOP counting here: the counter's dispatch overhead would dominate the curve points)
            codes = _solve(m.dictionary.weight, problem.X_test, cfg, max_iter=200).codes
        else:
            codes = m.encode(problem.X_test)
        return {"mcc": mcc(problem.S_test, codes)}

    result = train(model, batches, tcfg, evaluate=evaluate, desc=f"{cfg.setting}/{spec.name}/seed{seed}")
    return model, result


def run_seed(
    cfg: ExperimentConfig,
    seed: int,
    checkpoint_dir: str | None = None,
    problem: SyntheticProblem | None = None,
    batches: BatchFn | None = None,
) -> dict[str, dict[str, Any]]:
    """Run every method of ``cfg`` on the problem of ``seed``.

    Parameters
    ----------
    cfg : ExperimentConfig
        The experiment.
    seed : int
        Seeds the dictionary, the data and every model's initialisation.
    checkpoint_dir : str, optional
        Where training checkpoints go (resumed if present).
    problem : SyntheticProblem, optional
        The dictionary and test split to use (default: ``make_problem`` of
        ``cfg.data`` with this seed). Its training split is ignored when
        ``batches`` is given.
    batches : BatchFn, optional
        Training minibatches by step, e.g. :func:`~gapbound.training.loop.stream_batches`
        over a :class:`~gapbound.synthetic.data.CodeStream` for datasets too large to
        materialise (SC in the ``unknown`` setting needs the in-memory split).

    Returns
    -------
    dict
        Method name -> ``mcc``, ``dict_mcc``, ``support_f1``, ``train_flops``,
        ``inference_flops``, ``wall_s``, ``curve`` (list of ``[flops, mcc]``).
    """
    device = resolve_device(cfg.device)
    if problem is None:
        problem = make_problem(SyntheticConfig(**{**cfg.data.to_dict(), "seed": seed}))
    problem = problem.to(device)
    specs = [parse_method(m) for m in cfg.methods]
    out: dict[str, dict[str, Any]] = {}

    def ckpt(name: str) -> str | None:
        return None if checkpoint_dir is None else f"{checkpoint_dir}/{cfg.setting}-{name}-seed{seed}.pt"

    # SAE+ITO reuses the SAE, so the SAE is trained once if either is asked for.
    bases = {("SAE" if s.kind in ("sae", "sae_ito") else s.name): s for s in specs}
    for base_name, spec in bases.items():
        base = parse_method(base_name) if base_name == "SAE" else spec
        needs_training = not (base.kind == "sc" and cfg.setting != "unknown")
        t0 = time.perf_counter()
        if needs_training:
            model, res = _train_model(base, cfg, problem, seed, ckpt(base.name), batches)
            train_flops, history = cfg.train.steps * res.step_flops, res.history
            D, D_hat = (model.dictionary.weight.detach(),) * 2 if isinstance(model, SparseCoding) else _decoder(model, problem)
        else:
            model, train_flops, history, D, D_hat = None, 0, [], problem.D, None
        train_s = time.perf_counter() - t0

        if base.kind == "sc":
            t1 = time.perf_counter()
            codes, inf_flops = _infer(D, problem.X_test, cfg)
            out["SC"] = {**_scores(problem, codes, D_hat), "train_flops": train_flops, "inference_flops": inf_flops,
                         "wall_s": train_s + time.perf_counter() - t1,
                         "curve": [[h["train_flops"], h["mcc"]] for h in history] + [[train_flops + inf_flops, None]]}
            out["SC"]["curve"][-1][1] = out["SC"]["mcc"]
            continue

        t1 = time.perf_counter()
        with torch.no_grad():
            enc_flops, codes = count_flops(model.encode, problem.X_test)
        enc_s = time.perf_counter() - t1
        curve = [[h["train_flops"], h["mcc"]] for h in history]
        name = base.name
        if any(s.name == name for s in specs):
            out[name] = {**_scores(problem, codes, D_hat), "train_flops": train_flops, "inference_flops": enc_flops,
                         "wall_s": train_s + enc_s, "curve": curve + [[train_flops + enc_flops, mcc(problem.S_test, codes)]]}
        if name == "SAE" and any(s.kind == "sae_ito" for s in specs):
            t2 = time.perf_counter()
            ito_codes, ito_flops = _infer(D, problem.X_test, cfg, init=codes)
            total_inf = enc_flops + ito_flops
            out["SAE+ITO"] = {**_scores(problem, ito_codes, D_hat), "train_flops": train_flops,
                              "inference_flops": total_inf, "wall_s": train_s + enc_s + time.perf_counter() - t2,
                              "curve": curve + [[train_flops + total_inf, mcc(problem.S_test, ito_codes)]]}
    return {s.name: out[s.name] for s in specs}


def summarise(per_seed: list[dict[str, dict[str, Any]]], seeds: list[int]) -> dict[str, dict[str, Any]]:
    """Aggregate :func:`run_seed` outputs into the results schema (per-seed lists, means, stds)."""
    methods: dict[str, dict[str, Any]] = {}
    for name in per_seed[0]:
        rows = [r[name] for r in per_seed]
        mccs = [r["mcc"] for r in rows]
        dm = [r["dict_mcc"] for r in rows]
        methods[name] = {
            "mcc": mccs,
            "mcc_mean": float(np.mean(mccs)),
            "mcc_std": float(np.std(mccs)),
            "dict_mcc": dm,
            "dict_mcc_mean": None if any(d is None for d in dm) else float(np.mean(dm)),
            "dict_mcc_std": None if any(d is None for d in dm) else float(np.std(dm)),
            "support_f1_mean": float(np.mean([r["support_f1"] for r in rows])),
            "train_flops": int(np.mean([r["train_flops"] for r in rows])),
            "inference_flops": int(np.mean([r["inference_flops"] for r in rows])),
            "wall_s": float(np.sum([r["wall_s"] for r in rows])),
            "seeds": list(seeds),
            "curves": [r["curve"] for r in rows],
        }
    return methods
