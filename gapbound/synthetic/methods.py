"""The paper's inference methods in its three synthetic settings, configured and evaluated.

Settings (``N, M, K`` from :class:`~gapbound.synthetic.data.SyntheticConfig`):

- ``known_z``: encoders regress the true codes (:class:`~gapbound.training.Supervised`);
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
from ..models import Dictionary, make_encoder
from ..utils.flops import count_flops
from ..inference import solve
from .metrics import dictionary_mcc, mcc, support_scores
from ..models.coding import SparseCoding
from ..training import Autoencoder, BatchFn, Supervised, TrainConfig, tensor_batches, train
from ..utils.experiment import fingerprint
from ..utils.rng import seeded
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
    "convergence_summary",
    "unconverged_warning",
    "METHODS",
    "reachable_tol",
]

Setting = Literal["known_z", "known_d", "unknown"]
SETTINGS: tuple[str, ...] = ("known_z", "known_d", "unknown")
DEFAULT_METHODS: tuple[str, ...] = ("SAE", "SAE+ITO", "MLP-32", "MLP-256", "MLP-1024", "SC")


@dataclass(frozen=True)
class MethodSpec:
    """What a method trains and how it encodes the test set.

    Attributes
    ----------
    name : str
        Canonical name (``SAE``, ``SAE+ITO``, ``MLP-256``, ``SC``).
    base : str
        The trained model it reads; methods sharing a base (SAE and SAE+ITO)
        train it once.
    encoder : str or None
        :func:`~gapbound.models.make_encoder` kind of the base's
        encoder; ``None`` for sparse coding (a dictionary, learned only in ``unknown``).
    hidden : int or None
        Hidden width of an MLP encoder.
    ito : bool
        Whether per-sample inference follows (from the encoder's codes, or from zero without an encoder).
    """

    name: str
    base: str
    encoder: str | None
    hidden: int | None = None
    ito: bool = False


# The method registry: a name pattern (matched case-insensitively on the whole name) and
# the spec it stands for. Adding a method is one entry here.
METHODS: dict[str, Any] = {
    r"SAE": lambda m: MethodSpec("SAE", "SAE", "sae"),
    r"SAE\+ITO": lambda m: MethodSpec("SAE+ITO", "SAE", "sae", ito=True),
    r"MLP-(\d+)": lambda m: MethodSpec(f"MLP-{int(m[1])}", f"MLP-{int(m[1])}", "mlp", hidden=int(m[1]))
    if int(m[1]) >= 1 else None,
    r"SC": lambda m: MethodSpec("SC", "SC", None, ito=True),
}


def parse_method(name: str) -> MethodSpec:
    """The :class:`MethodSpec` of ``SAE``, ``SAE+ITO``, ``MLP-<h>`` or ``SC`` (case-insensitive)."""
    if not isinstance(name, str):
        raise TypeError(f"method names must be strings, got {type(name).__name__} ({name!r})")
    key = name.strip().upper()
    for pattern, spec in METHODS.items():
        if (m := re.fullmatch(pattern, key)) and (found := spec(m)) is not None:
            return found
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
    ito_tol : float or None
        Absolute duality-gap tolerance of per-sample inference. ``None`` (the
        default): the tolerance the working precision can certify,
        :func:`reachable_tol` (about ``2.5e-7 * max ||x||^2`` in float32). A
        fixed tolerance below that floor leaves samples unconverged, which the
        results report (``converged_fraction``) and the CLIs flag.
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
    ito_tol: float | None = None
    ito_polish: bool = True
    curve_points: int = 20
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.setting not in SETTINGS:
            raise ValueError(f"setting must be one of {SETTINGS}, got {self.setting!r}")
        for name, kind in (("data", SyntheticConfig), ("train", TrainConfig)):
            if not isinstance(getattr(self, name), kind):
                raise TypeError(f"{name} must be a {kind.__name__}, got {type(getattr(self, name)).__name__}")
        if not isinstance(self.ito_polish, bool):
            raise TypeError(f"ito_polish must be True or False, got {self.ito_polish!r}")
        if not isinstance(self.device, str):
            raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {self.device!r}")
        if isinstance(self.methods, str) or not isinstance(self.methods, (tuple, list)):
            raise TypeError(f"methods must be a tuple of method names, got {type(self.methods).__name__}")
        self.methods = tuple(parse_method(m).name for m in self.methods)
        if not self.methods:
            raise ValueError("methods must name at least one method")
        if len(set(self.methods)) < len(self.methods):
            raise ValueError(f"methods repeat a method: {self.methods}; give each once")
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size, minimum=1)
        check_float("ito_lam", self.ito_lam, minimum=0.0)
        check_int("ito_max_iter", self.ito_max_iter, minimum=1)
        if self.ito_tol is not None:
            check_float("ito_tol", self.ito_tol, minimum=0.0)
        check_int("curve_points", self.curve_points, minimum=1)
        resolve_device(self.device)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def result_settings(self) -> dict[str, Any]:
        """Every setting that changes a result (the fingerprint's input): no display or checkpoint options.

        The device enters as its type (``cpu`` / ``cuda``): the two round differently.
        """
        d = self.to_dict()
        d["train"] = {k: v for k, v in d["train"].items() if k not in _NOT_RESULT_SETTINGS}
        d["device"] = resolve_device(self.device).type
        return d

    def memory_bytes(self, n_train: int | None = None) -> int:
        """A rough upper estimate of one run's peak memory (data, the widest model's activations, inference)."""
        N, M = self.data.N, self.data.M
        n_train = self.data.n_train if n_train is None else n_train
        batch = self.batch_size or n_train
        widest = max([parse_method(m).hidden or N for m in self.methods] + [N])
        data = 4 * (n_train + self.data.n_test) * (2 * N + M)
        model = 4 * 4 * (widest * (M + N) + M * N)  # weights, gradients, two Adam moments
        step = 4 * 4 * batch * (widest + N + M)  # activations and their gradients
        infer = 8 * 8 * self.data.n_test * N  # float64 codes, correlations and their copies
        return int(2 * data + model + step + infer)


# Options that change how a run is shown or checkpointed, never its numbers.
_NOT_RESULT_SETTINGS = ("progress", "checkpoint_every", "checkpoint_path")


def reachable_tol(X: torch.Tensor) -> float:
    """A duality-gap tolerance that codes in ``X``'s precision can certify: ``2 eps max_i ||x_i||^2``.

    The gap of the exact solution rounded to the working precision is about
    ``0.3-0.4 eps ||x_i||^2`` (measured in float32 on the synthetic N=16 and
    scaled N=1000 problems: largest gaps 7.2e-7 and 2.6e-6), so this leaves a
    margin of about 5; float64 data gives tolerances near 1e-14.
    """
    return float(2 * torch.finfo(X.dtype).eps * (X.double() ** 2).sum(1).max().clamp_min(1.0))


def _infer(D: torch.Tensor, X: torch.Tensor, cfg: ExperimentConfig, init: torch.Tensor | None = None) -> tuple[torch.Tensor, int, dict]:
    """Per-sample inference under ``D`` with its FLOPs measured; returns (codes, flops, convergence record)."""
    tol = reachable_tol(X) if cfg.ito_tol is None else cfg.ito_tol
    flops, res = count_flops(_solve, D, X, cfg, init=init, tol=tol)
    gap = res.duality_gap
    record = {"tol": tol, "converged_fraction": float((gap <= tol).double().mean()),
              "max_duality_gap": float(gap.max()), "iterations": int(res.n_iter)}
    return res.codes, flops, record


def _solve(D: torch.Tensor, X: torch.Tensor, cfg: ExperimentConfig, init: torch.Tensor | None = None,
           max_iter: int | None = None, tol: float | None = None):
    """FISTA under ``D`` with the experiment's inference settings."""
    tol = tol if tol is not None else (reachable_tol(X) if cfg.ito_tol is None else cfg.ito_tol)
    return solve(D.detach(), X, cfg.ito_lam, method="fista", init=init, max_iter=max_iter or cfg.ito_max_iter, tol=tol,
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
    if spec.encoder is None:
        return SparseCoding(seeded(seed, lambda: Dictionary(M, N)), problem.X_train.shape[0])
    encoder = seeded(seed, lambda: make_encoder(spec.encoder, M, N, hidden=spec.hidden))
    if setting == "known_z":
        return Supervised(encoder)
    dictionary = (
        Dictionary(M, N, weight=problem.D, trainable=False) if setting == "known_d" else seeded(seed + 1, lambda: Dictionary(M, N))
    )
    return Autoencoder(encoder, dictionary)


def _decoder(model: nn.Module, problem: SyntheticProblem) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(dictionary used for ITO, learned dictionary or None)."""
    if isinstance(model, SparseCoding):
        D = model.dictionary.weight.detach()
        return D, D
    if isinstance(model, Supervised):
        return problem.D, None
    D = model.dictionary.weight.detach()
    return D, (None if not model.dictionary.weight.requires_grad else D)


def _train_setup(spec: MethodSpec, cfg: ExperimentConfig, problem: SyntheticProblem, seed: int, ckpt: str | None):
    """(fresh model, its TrainConfig, its evaluation callback): shared by one-at-a-time and batched training."""
    model = _model_for(spec, cfg.setting, problem, seed).to(problem.X_test.device)
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

    return model, tcfg, evaluate


def _train_model(
    spec: MethodSpec, cfg: ExperimentConfig, problem: SyntheticProblem, seed: int, ckpt: str | None, batches: BatchFn | None
):
    model, tcfg, evaluate = _train_setup(spec, cfg, problem, seed, ckpt)
    if batches is None:
        S_train = problem.S_train if cfg.setting == "known_z" else None
        batches = tensor_batches(problem.X_train, S_train, cfg.batch_size, seed=seed)
    result = train(model, batches, tcfg, evaluate=evaluate, desc=f"{cfg.setting}/{spec.base}/seed{seed}")
    return model, result


@dataclass
class _Trained:
    """A method's base model after training: what encoding needs, and what training cost."""

    model: nn.Module | None
    D: torch.Tensor
    D_hat: torch.Tensor | None
    train_flops: int
    train_s: float
    curve: list[list[Any]]
    train_s_partial: bool = False  # resumed from a checkpoint that did not record its earlier seconds


def _train_base(spec: MethodSpec, cfg: ExperimentConfig, problem: SyntheticProblem, seed: int,
                ckpt: str | None, batches: BatchFn | None) -> _Trained:
    """Train ``spec``'s base model (sparse coding trains only when the dictionary is unknown)."""
    t0 = time.perf_counter()
    if spec.encoder is None and cfg.setting != "unknown":
        return _Trained(None, problem.D, None, 0, time.perf_counter() - t0, [])
    model, res = _train_model(spec, cfg, problem, seed, ckpt, batches)
    return _as_trained(model, res, cfg, problem, time.perf_counter() - t0)


def _as_trained(model: nn.Module, res: Any, cfg: ExperimentConfig, problem: SyntheticProblem, seconds: float,
                sharers: int = 1) -> _Trained:
    """A trained model and its TrainResult as a :class:`_Trained` (also used by :mod:`.batched`).

    ``seconds`` is this invocation's training time; earlier invocations' (read from the resumed
    checkpoint) are added, and the sum is split evenly over the ``sharers`` models trained together.
    """
    D, D_hat = _decoder(model, problem)
    before = res.seconds_before
    return _Trained(model, D, D_hat, cfg.train.steps * res.step_flops, (seconds + (before or 0.0)) / sharers,
                    [[h["train_flops"], h["mcc"]] for h in res.history], train_s_partial=before is None)


def _evaluate(spec: MethodSpec, base: _Trained, cfg: ExperimentConfig, problem: SyntheticProblem,
              encoded: dict[str, tuple[torch.Tensor, int, float]]) -> dict[str, Any]:
    """Encode the test set with ``spec`` (reusing the base encoder's codes in ``encoded``) and score it."""
    codes, flops, wall, inference = None, 0, base.train_s, None
    if spec.encoder is not None:
        if spec.base not in encoded:
            t = time.perf_counter()
            with torch.no_grad():
                enc_flops, enc_codes = count_flops(base.model.encode, problem.X_test)
            encoded[spec.base] = (enc_codes, enc_flops, time.perf_counter() - t)
        codes, flops, enc_s = encoded[spec.base]
        wall += enc_s
    if spec.ito:
        t = time.perf_counter()
        codes, ito_flops, inference = _infer(base.D, problem.X_test, cfg, init=codes)
        flops, wall = flops + ito_flops, wall + time.perf_counter() - t
    total = base.train_flops + flops
    return {**_scores(problem, codes, base.D_hat), "train_flops": base.train_flops, "inference_flops": flops,
            "wall_s": wall, "inference": inference, "curve": base.curve + [[total, mcc(problem.S_test, codes)]],
            **({"wall_s_partial": True} if base.train_s_partial else {})}


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
        Where training checkpoints go (resumed if present). File names carry a
        fingerprint of every setting that changes the trained weights, so a
        checkpoint is never resumed into a run of other settings.
    problem : SyntheticProblem, optional
        The dictionary and test split to use (default: ``make_problem`` of
        ``cfg.data`` with this seed). Its training split is ignored when
        ``batches`` is given.
    batches : BatchFn, optional
        Training minibatches by step, e.g. :func:`~gapbound.training.stream_batches`
        over a :class:`~gapbound.synthetic.data.CodeStream` for datasets too large to
        materialise (SC in the ``unknown`` setting needs the in-memory split).

    Returns
    -------
    dict
        Method name -> ``mcc``, ``dict_mcc``, ``support_f1``, ``train_flops``,
        ``inference_flops``, ``wall_s`` (training seconds summed over every invocation that
        resumed it; ``wall_s_partial: True`` is added where a resumed checkpoint did not record its
        earlier seconds, so ``wall_s`` is then a lower bound), ``inference`` (per-sample inference's
        ``tol``, ``converged_fraction``, ``max_duality_gap``, ``iterations``;
        ``None`` for methods without it), ``curve`` (list of ``[flops, mcc]``).
    """
    seed = check_int("seed", seed, minimum=0)
    device = resolve_device(cfg.device)
    if problem is None:
        problem = make_problem(SyntheticConfig(**{**cfg.data.to_dict(), "seed": seed}))
    problem = problem.to(device)
    specs = [parse_method(m) for m in cfg.methods]
    bases = {s.base: parse_method(s.base) for s in specs}  # each base model trained once, in order
    trained = {name: _train_base(spec, cfg, problem, seed, _checkpoint(checkpoint_dir, cfg, spec, seed), batches)
               for name, spec in bases.items()}
    encoded: dict[str, tuple[torch.Tensor, int, float]] = {}
    return {s.name: _evaluate(s, trained[s.base], cfg, problem, encoded) for s in specs}


def _checkpoint(directory: str | None, cfg: ExperimentConfig, spec: MethodSpec, seed: int) -> str | None:
    """Checkpoint file of ``spec``'s base model, keyed on every setting its trained weights depend on.

    Inference settings are not in the key: they change no weight, so the
    frontier's budget sweep reuses one training (sparse coding's curve points
    then keep the encoding settings of the run that trained it).
    """
    if directory is None:
        return None
    key = {"setting": cfg.setting, "data": {**cfg.data.to_dict(), "seed": seed}, "batch_size": cfg.batch_size,
           "curve_points": cfg.curve_points, "base": spec.base,
           "train": {k: v for k, v in asdict(cfg.train).items() if k not in ("progress", "checkpoint_every")}}
    return f"{directory}/{cfg.setting}-{spec.base}-seed{seed}-{fingerprint(key)}.pt"


def summarise(per_seed: list[dict[str, dict[str, Any]]], seeds: list[int]) -> dict[str, dict[str, Any]]:
    """Aggregate :func:`run_seed` outputs into the results schema (per-seed lists, means, stds)."""
    if len(set(seeds)) < len(seeds) or len(seeds) != len(per_seed):
        raise ValueError(f"summarise needs one result per distinct seed, got seeds {list(seeds)} for {len(per_seed)} results")
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
            **({"wall_s_partial": True} if any(r.get("wall_s_partial") for r in rows) else {}),
            "seeds": list(seeds),
            "curves": [r["curve"] for r in rows],
            **convergence_summary([r.get("inference") for r in rows]),
        }
    return methods


def convergence_summary(records: list[dict | None]) -> dict[str, Any]:
    """Per-method convergence of per-sample inference over seeds (``None`` entries: methods without it).

    Returns ``converged_fraction`` (mean over seeds of the fraction of test
    samples whose duality gap reached the tolerance), ``max_duality_gap``
    (largest over seeds and samples), ``inference_tol`` and ``unconverged``
    (True when a positive tolerance was missed by any sample; a zero
    tolerance is a fixed iteration budget, reported but not flagged).
    """
    got = [r for r in records if r is not None]
    if not got:
        return {"converged_fraction": None, "max_duality_gap": None, "inference_tol": None, "unconverged": False}
    frac = float(np.mean([r["converged_fraction"] for r in got]))
    tol = max(r["tol"] for r in got)
    return {"converged_fraction": frac, "max_duality_gap": max(r["max_duality_gap"] for r in got),
            "inference_tol": tol, "unconverged": bool(tol > 0 and frac < 1.0)}


def unconverged_warning(methods: dict[str, dict[str, Any]]) -> str | None:
    """One line naming the methods whose per-sample inference missed its tolerance, or ``None``."""
    # the unconverged share with 3 significant digits: a ':.1%' of the converged share printed 100.0 %
    # for one sample in 5,120
    bad = [f"{n} ({100 * (1 - m['converged_fraction']):.3g} % of samples unconverged, largest gap "
           f"{m['max_duality_gap']:.3g} > tol "
           f"{m['inference_tol']:.3g})" for n, m in methods.items() if m.get("unconverged")]
    return ("warning: per-sample inference did not converge for " + "; ".join(bad) +
            ": raise the iteration cap or the tolerance") if bad else None
