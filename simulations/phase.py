"""Phase diagrams: test MCC of SAE, MLP and sparse coding over a grid of (N, M) for several K.

    python -m simulations.phase                 # N in 16..256, M in 8,16,32, K in 3,9,15
    python -m simulations.phase --quick         # a smaller grid with fewer steps, in minutes
    python -m simulations.phase --setting unknown --out results/phase_unknown

Every (N, M, K) shape is an independent job dispatched with joblib on
``--jobs`` worker processes (default: every available core); the seeds of a
shape are trained together by the batched engine (``--seeds 0 1 2 3 4``). Each finished
cell is written atomically to ``OUT/parts/`` and ``OUT/phase.json`` is rebuilt
from every part on disk, so an interrupted run loses at most the cells in
flight, and a grid can be filled over several invocations with ``--resume``
(cells already done are skipped; a run of other settings is refused, see
:mod:`gapbound.utils.experiment`).

A line starting ``warning:`` names every (method, cell) whose per-sample
inference did not reach its tolerance (the rows carry ``converged_fraction``
and ``max_duality_gap``). Ctrl-C (also with ``--jobs > 1``) ends with the
one-line resume hint; finished cells stay on disk.

Cells with ``M >= N`` (no compression: the problem is not sparse coding) or
``K >= M`` (more active sources than measurements) are skipped and listed in
the file's ``skipped`` entry with the reason.

To run the grid on a cluster, call :func:`run_grid` under a joblib backend;
the code picks up whatever backend is active::

    import joblib
    from dask.distributed import Client          # or: import ray; from ray.util.joblib import register_ray
    from simulations.phase import FULL_GRID, PhaseConfig, grid_cells, run_grid
    client = Client("scheduler-address:8786")     #     ray.init(address="auto"); register_ray()
    cells, skipped = grid_cells(FULL_GRID["N"], FULL_GRID["M"], FULL_GRID["K"], seeds=range(5))
    with joblib.parallel_config(backend="dask"):  #     with joblib.parallel_config(backend="ray"):
        run_grid(PhaseConfig(), cells, skipped, "results/phase", jobs=-1)

The figure (contours of MCC over log2 N and M, one panel per method and K) is
drawn by ``paper_figures/phase.py`` into ``OUT/figures/`` (``--figures-dir paper_figures``
for the committed one).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, field
from itertools import product
from pathlib import Path
from typing import Iterable, Sequence

from joblib import Parallel, delayed
from tqdm.auto import tqdm

from gapbound.synthetic.data import SyntheticConfig
from gapbound.training.distribute import closing_on_interrupt, parallel_backend
from gapbound.synthetic.batched import run_seeds
from gapbound.synthetic.methods import SETTINGS, ExperimentConfig, convergence_summary, unconverged_warning
from gapbound.training import TrainConfig
from gapbound.utils.cli import ArgumentParser, add_common_args, check_unique, nonnegative_int, positive_float, positive_int, run_cli
from gapbound.utils.experiment import ExperimentDir, open_experiment
from gapbound.utils.io import jsonable, read_json
from gapbound.utils.validation import check_int, check_memory, resolve_device
from simulations import render_figures

FULL_GRID = {"N": (16, 32, 64, 128, 256), "M": (8, 16, 32), "K": (3, 9, 15)}
QUICK_GRID = {"N": (16, 32, 64, 128), "M": (8, 16), "K": (3, 9)}
FULL_STEPS, QUICK_STEPS = 10_000, 2_000


@dataclass(frozen=True)
class Cell:
    """One grid point."""

    N: int
    M: int
    K: int
    seed: int


@dataclass(frozen=True)
class PhaseConfig:
    """Everything a cell needs besides its (N, M, K, seed).

    Attributes
    ----------
    setting : str
        ``known_z`` (default: encoders regress the true codes, SC is
        per-sample inference with the true dictionary), ``known_d`` or ``unknown``.
    hidden : int
        Hidden width of the MLP encoder.
    n_train, n_test : int
        Samples per split (paper: 1024 each).
    train : TrainConfig
        Optimisation of the SAE and MLP (and of SC's dictionary in ``unknown``).
    batch_size : int
        Minibatch size.
    """

    setting: str = "known_z"
    hidden: int = 256
    n_train: int = 1024
    n_test: int = 1024
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=FULL_STEPS, lr=1e-3, progress=False))
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.setting not in SETTINGS:
            raise ValueError(f"setting must be one of {SETTINGS}, got {self.setting!r}")
        if not isinstance(self.train, TrainConfig):
            raise TypeError(f"train must be a TrainConfig, got {type(self.train).__name__}")
        check_int("hidden", self.hidden, minimum=1)
        check_int("n_train", self.n_train, minimum=1)
        check_int("n_test", self.n_test, minimum=2)
        check_int("batch_size", self.batch_size, minimum=1)

    @property
    def methods(self) -> tuple[str, ...]:
        return ("SAE", f"MLP-{self.hidden}", "SC")

    def experiment(self, cell: Cell, device: str = "cpu") -> ExperimentConfig:
        """The :class:`ExperimentConfig` of one cell (the device is an execution detail, not part of the config)."""
        data = SyntheticConfig(N=cell.N, M=cell.M, K=cell.K, n_train=self.n_train, n_test=self.n_test, seed=cell.seed)
        return ExperimentConfig(setting=self.setting, data=data, train=self.train, methods=self.methods,
                                batch_size=self.batch_size, curve_points=1, device=device)

    def to_dict(self) -> dict:
        return jsonable({**asdict(self), "methods": list(self.methods)})

    def result_settings(self, device: str = "cpu") -> dict:
        """Every setting that changes a cell's result (the fingerprint's input)."""
        train = {k: v for k, v in asdict(self.train).items() if k not in ("progress", "checkpoint_every", "checkpoint_path")}
        return jsonable({**self.to_dict(), "train": train, "device": resolve_device(device).type})


def invalid_reason(N: int, M: int, K: int) -> str | None:
    """Why a grid point is skipped, or None when it is a valid compressed-sensing problem."""
    if M >= N:
        return f"M={M} >= N={N}: no compression"
    if K >= M:
        return f"K={K} >= M={M}: at least as many active sources as measurements"
    return None


def grid_cells(Ns: Iterable[int], Ms: Iterable[int], Ks: Iterable[int], seeds: Iterable[int]) -> tuple[list[Cell], list[dict]]:
    """Valid cells of the grid and the skipped points with their reasons."""
    cells, skipped = [], []
    for N, M, K in product(Ns, Ms, Ks):
        for v, name in ((N, "N"), (M, "M"), (K, "K")):
            check_int(name, v, minimum=1)
        reason = invalid_reason(N, M, K)
        if reason:
            skipped.append({"N": N, "M": M, "K": K, "reason": reason})
        else:
            cells.extend(Cell(N, M, K, s) for s in seeds)
    return cells, skipped


def run_cells(cfg: PhaseConfig, cells: Sequence[Cell], threads: int = 1, device: str = "cpu") -> list[list[dict]]:
    """Train and evaluate SAE, MLP and SC on cells of one (N, M, K) shape; one list of rows (one per method) per cell.

    The cells' seeds are trained together by the batched engine
    (:func:`gapbound.synthetic.batched.run_seeds`); each seed's result equals its
    one-cell run up to floating-point summation order.
    """
    import torch

    if len({(c.N, c.M, c.K) for c in cells}) != 1:
        raise ValueError(f"run_cells needs cells of one (N, M, K) shape, got {sorted({(c.N, c.M, c.K) for c in cells})}")
    torch.set_num_threads(threads)
    results = run_seeds(cfg.experiment(cells[0], device), [c.seed for c in cells])
    return [[{"method": name, **asdict(cell), "mcc": r["mcc"], "support_f1": r["support_f1"],
              "train_flops": r["train_flops"], "inference_flops": r["inference_flops"], "wall_s": r["wall_s"],
              **convergence_summary([r["inference"]])}
             for name, r in result.items()] for cell, result in zip(cells, results)]


def run_cell(cfg: PhaseConfig, cell: Cell, threads: int = 1, device: str = "cpu") -> list[dict]:
    """:func:`run_cells` of one cell: its rows, one per method."""
    return run_cells(cfg, [cell], threads, device)[0]


def _by_shape(cells: Sequence[Cell]) -> list[list[Cell]]:
    """The cells grouped by (N, M, K), in first-seen order: one job each (its seeds batched)."""
    groups: dict[tuple[int, int, int], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.N, c.M, c.K), []).append(c)
    return list(groups.values())


def unconverged_cells(rows: Sequence[dict]) -> str | None:
    """One warning line naming the (method, cell)s whose per-sample inference missed its tolerance, or ``None``."""
    return unconverged_warning({f"{r['method']} at N={r['N']}, M={r['M']}, K={r['K']}, seed {r['seed']}": r for r in rows})


def _key(cell: Cell) -> str:
    return f"N{cell.N}-M{cell.M}-K{cell.K}-seed{cell.seed}"


def run_grid(cfg: PhaseConfig, cells: list[Cell], skipped: list[dict], out: str | Path, jobs: int = 1,
             resume: bool = False, overwrite: bool = False, progress: bool = True, device: str = "cpu") -> dict:
    """Run every cell not yet finished in ``out``; rebuild ``OUT/phase.json`` from all parts as cells finish.

    Parameters
    ----------
    cfg : PhaseConfig
        Settings shared by every cell; a directory holding a run of other
        settings is refused (use another ``out`` or ``overwrite``).
    cells, skipped : list
        From :func:`grid_cells`.
    out : str or Path
        Results directory (the protocol of :mod:`gapbound.utils.experiment`).
    jobs : int
        joblib ``n_jobs`` (-1: all cores of the active backend).
    resume : bool
        Extend the run of the same settings in ``out`` (finished cells are kept and skipped).
    overwrite : bool
        Discard the run in ``out`` instead.
    progress : bool
        Show a per-cell tqdm bar.
    device : str
        Where each cell trains (``cpu``, ``cuda``, ``auto``).

    Returns
    -------
    dict
        The results document (``config``, ``rows``, ``skipped``).
    """
    with open_experiment(out, "phase", cfg.result_settings(device), resume=resume, overwrite=overwrite,
                         outputs=("phase.json",)) as exp:
        todo = [c for c in cells if not exp.has_part(_key(c))]
        old = exp.path / "phase.json"
        known = read_json(old)["skipped"] if exp.resumed and old.exists() else []
        skipped = known + [s for s in skipped if s not in known]
        print(f"phase: {len(todo)} cell(s) to run, {len(cells) - len(todo)} already in {exp.path}, "
              f"{len(skipped)} invalid grid point(s) skipped", file=sys.stderr)
        t0 = time.perf_counter()
        doc = _write_doc(exp, skipped)
        if todo:
            # Cells are small: one torch thread per job (a shape, its seeds batched); parallelism comes from
            # running jobs side by side.
            groups = _by_shape(todo)
            results = Parallel(n_jobs=jobs if jobs == -1 else min(jobs, len(groups)), return_as="generator_unordered")(
                delayed(run_cells)(cfg, g, 1, device) for g in groups)
            with tqdm(total=len(todo), desc="phase cells", unit="cell", disable=not progress) as bar, \
                    closing_on_interrupt(results):
                for per_cell in results:
                    for rows in per_cell:
                        exp.write_part(_key(Cell(*(rows[0][k] for k in ("N", "M", "K", "seed")))), {"rows": rows})
                    doc = _write_doc(exp, skipped)
                    bar.update(len(per_cell))
            print(f"phase: {len(todo)} cell(s) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        exp.finish()
    if warning := unconverged_cells(doc["rows"]):
        print(warning, file=sys.stderr)
    return doc


def _write_doc(exp: ExperimentDir, skipped: list[dict]) -> dict:
    """``OUT/phase.json`` from every finished cell on disk (never only this run's)."""
    rows = [r for part in exp.parts().values() for r in part["rows"]]
    doc = {"experiment": "phase", "config": exp.config, "rows": rows, "skipped": skipped,
           "wall_s_total": sum(r["wall_s"] for r in rows)}
    exp.write_result("phase.json", doc)
    return {**doc, "fingerprint": exp.fingerprint}


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m simulations.phase", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"smaller grid {QUICK_GRID} and {QUICK_STEPS} steps (default grid {FULL_GRID}, {FULL_STEPS} steps)")
    p.add_argument("--N", type=positive_int, nargs="+", help="source counts (overrides the grid's)")
    p.add_argument("--M", type=positive_int, nargs="+", help="measurement counts (overrides the grid's)")
    p.add_argument("--K", type=positive_int, nargs="+", help="active-source counts (overrides the grid's)")
    p.add_argument("--seeds", type=nonnegative_int, nargs="+", default=[0], help="seeds (default: 0)")
    p.add_argument("--setting", choices=SETTINGS, default="known_z",
                   help="known_z (default): supervised encoders, SC with the true dictionary; or known_d / unknown")
    p.add_argument("--steps", type=nonnegative_int, help=f"training steps (default {FULL_STEPS}; quick {QUICK_STEPS})")
    p.add_argument("--hidden", type=positive_int, default=256, help="MLP hidden width (default 256)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--n-train", type=positive_int, default=1024, help="training samples per cell (default 1024)")
    p.add_argument("--n-test", type=positive_int, default=1024, help="test samples per cell (default 1024)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="minibatch size (default 256)")
    p.add_argument("--scheduler", default=None,
                   help="run cells on Dask: 'local' (a LocalCluster of --jobs workers) or a scheduler address tcp://HOST:8786")
    add_common_args(p, "results/phase")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    grid = QUICK_GRID if args.quick else FULL_GRID
    steps = args.steps if args.steps is not None else (QUICK_STEPS if args.quick else FULL_STEPS)
    cfg = PhaseConfig(setting=args.setting, hidden=args.hidden, n_train=args.n_train, n_test=args.n_test,
                      batch_size=args.batch_size, train=TrainConfig(steps=steps, lr=args.lr, progress=False))
    resolve_device(args.device)
    for flag, values in (("--N", args.N), ("--M", args.M), ("--K", args.K), ("--seeds", args.seeds)):
        check_unique(flag, values or [])
    cells, skipped = grid_cells(args.N or grid["N"], args.M or grid["M"], args.K or grid["K"], args.seeds)
    for s in skipped:
        print(f"skipping N={s['N']}, M={s['M']}, K={s['K']}: {s['reason']}", file=sys.stderr)
    if not cells:
        raise ValueError("no valid (N, M, K) cell in the grid: every point has M >= N or K >= M")
    check_memory(max(cfg.experiment(c, args.device).memory_bytes() for c in cells) * args.jobs,
                 "the largest cell's data (--n-train, --n-test x --N) and models", "reduce them or --jobs")
    with parallel_backend(args.scheduler, n_workers=args.jobs) as where:
        print(f"cells run on {where}", file=sys.stderr)
        run_grid(cfg, cells, skipped, args.out, jobs=args.jobs, resume=args.resume, overwrite=args.overwrite,
                 progress=not args.quiet, device=args.device)
    if not args.no_figures:
        figures = Path(args.figures_dir) if args.figures_dir else Path(args.out) / "figures"
        render_figures("phase", Path(args.out) / "phase.json", figures)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
