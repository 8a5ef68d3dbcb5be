"""The paper's scaled known-Z experiment: N=1000 sources, M=200 measurements, K=20 active.

    python -m simulations.scaled                              # quick preset (default): minutes on 2 CPU cores
    python -m simulations.scaled --preset paper --device auto # the full protocol, on CUDA when present
    python -m simulations.scaled --resume                     # continue an interrupted run in --out
    python -m simulations.scaled --overwrite                  # discard the run in --out, start afresh

Encoders (SAE and MLPs of several hidden widths) regress the true codes
(known Z) from minibatches of 1024 streamed out of a fixed set of training
samples: sample ``j`` is a pure function of ``(seed, j)``, so 500,000 x 1000
codes never sit in memory and every run with the same seed sees the same data.
SAE+ITO (per-sample optimisation from the SAE's codes) and SC (per-sample
optimisation from zero) encode the test set with the true dictionary.

Presets (every field can be overridden by the flag of the same name):

- ``quick``: 1,000 steps, MLP widths 128 and 512, 512 test samples, lr 1e-3;
  shows the paper's ordering (per-sample inference > MLP > SAE) in minutes on 2 CPU cores.
- ``paper``: 20,000 steps of 1024 from 500,000 samples, MLP widths 32, 256 and 1024,
  10,000 test samples, lr 3e-4 (the paper's stated Adam rate).

Models checkpoint to ``OUT/checkpoints/`` every ``--checkpoint-every`` steps;
``--resume`` continues from there (also after SIGKILL) and ends with the same
result as an uninterrupted run; a run of other settings in ``OUT`` is refused
(see :mod:`gapbound.utils.experiment`). Each seed's result is written
atomically to ``OUT/parts/``, and the summary to ``OUT/scaled.json`` (the
synthetic results schema: ``config``, ``methods`` -> name -> ``mcc_mean``,
``train_flops``, ``inference_flops``, ``wall_s``, ``converged_fraction``, ...).
The figure goes to ``OUT/figures/`` (``--figures-dir paper_figures`` for the committed one).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Sequence

from joblib import Parallel, delayed

from gapbound.synthetic.data import CodeStream, SyntheticConfig, make_problem
from gapbound.synthetic.methods import ExperimentConfig, run_seed, summarise, unconverged_warning
from gapbound.training import BatchFn, TrainConfig, stream_batches
from gapbound.training.distribute import closing_on_interrupt
from gapbound.utils.cli import ArgumentParser, add_common_args, check_unique, default_jobs, nonnegative_int, positive_float, positive_int, run_cli
from gapbound.utils.experiment import open_experiment
from gapbound.utils.io import jsonable
from gapbound.utils.validation import check_int, check_memory, resolve_device
from simulations import render_figures


@dataclass(frozen=True)
class Preset:
    """Sizes and optimisation settings of one named protocol (see the module docstring)."""

    steps: int
    n_samples: int
    n_test: int
    hidden: tuple[int, ...]
    lr: float
    checkpoint_every: int
    curve_points: int
    ito_max_iter: int
    resample_every: int = 15_000
    N: int = 1000
    M: int = 200
    K: int = 20
    batch_size: int = 1024


PRESETS: dict[str, Preset] = {
    "quick": Preset(steps=1_000, n_samples=500_000, n_test=512, hidden=(128, 512), lr=1e-3,
                    checkpoint_every=250, curve_points=5, ito_max_iter=1_000),
    "paper": Preset(steps=20_000, n_samples=500_000, n_test=10_000, hidden=(32, 256, 1024), lr=3e-4,
                    checkpoint_every=1_000, curve_points=20, ito_max_iter=2_000),
}


@dataclass(frozen=True)
class ScaledConfig:
    """One scaled run: the experiment plus the streamed training set's size and the seeds."""

    experiment: ExperimentConfig
    n_samples: int
    seeds: tuple[int, ...]
    preset: str

    def __post_init__(self) -> None:
        check_int("n_samples", self.n_samples, minimum=self.experiment.batch_size or 1)
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
        check_unique("seeds", list(self.seeds))

    def to_dict(self) -> dict:
        return jsonable({**self.experiment.to_dict(), "n_samples": self.n_samples, "seeds": list(self.seeds),
                         "preset": self.preset})

    def result_settings(self) -> dict:
        """Every setting that changes a seed's result (the fingerprint's input; seeds are the work list)."""
        return jsonable({**self.experiment.result_settings(), "n_samples": self.n_samples})


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m simulations.scaled", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick", help="named protocol (default: quick)")
    p.add_argument("--seeds", type=nonnegative_int, nargs="+", default=[0], help="seeds (default: 0)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads per worker (default: cores / workers - 1, at least 1; one more thread "
                        "generates the next minibatches)")
    override = p.add_argument_group("preset overrides (default: the preset's value)")
    for f in fields(Preset):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "hidden":
            override.add_argument(flag, type=positive_int, nargs="+", help="MLP hidden widths")
        elif f.name == "lr":
            override.add_argument(flag, type=positive_float, help="Adam learning rate")
        else:
            kind = nonnegative_int if f.name in ("checkpoint_every", "resample_every") else positive_int
            override.add_argument(flag, type=kind, dest=f.name, help=f"{f.name} (quick: {getattr(PRESETS['quick'], f.name)}, "
                                  f"paper: {getattr(PRESETS['paper'], f.name)})")
    add_common_args(p, "results/scaled")
    return p


def config_from_args(args: argparse.Namespace) -> ScaledConfig:
    """Resolve the preset and its overrides into a validated :class:`ScaledConfig`."""
    preset = replace(PRESETS[args.preset], **{f.name: (tuple(v) if f.name == "hidden" else v)
                                              for f in fields(Preset) if (v := getattr(args, f.name)) is not None})
    data = SyntheticConfig(N=preset.N, M=preset.M, K=preset.K, n_train=1, n_test=preset.n_test)
    train = TrainConfig(steps=preset.steps, lr=preset.lr, checkpoint_every=preset.checkpoint_every,
                        resample_every=preset.resample_every, progress=not args.quiet)
    methods = ("SAE", "SAE+ITO", *(f"MLP-{h}" for h in preset.hidden), "SC")
    experiment = ExperimentConfig(setting="known_z", data=data, train=train, methods=methods,
                                  batch_size=preset.batch_size, curve_points=preset.curve_points,
                                  ito_max_iter=preset.ito_max_iter, device=args.device)
    return ScaledConfig(experiment, preset.n_samples, tuple(args.seeds), args.preset)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prefetched(batches: BatchFn, depth: int = 2) -> BatchFn:
    """``batches`` with the next ``depth`` steps generated on a background thread while the current one trains.

    Minibatches are pure functions of the step, so prefetching changes
    nothing but the wall time: generating a 1024 x 1000 batch costs about as
    much as an SAE step, and torch releases the GIL in both.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
    pending: dict[int, Future] = {}

    def fn(i: int):
        future = pending.pop(i, None) or pool.submit(batches, i)
        for j in [j for j in pending if not i < j <= i + depth]:
            pending.pop(j).cancel()
        for j in range(i + 1, i + 1 + depth):
            if j not in pending:
                pending[j] = pool.submit(batches, j)
        return future.result()

    return fn


def run_part(cfg: ScaledConfig, seed: int, checkpoints: Path, threads: int) -> tuple[int, dict]:
    """Train and evaluate every method for one seed; returns ``(seed, part)``.

    The training set is a :class:`~gapbound.synthetic.data.CodeStream` over ``n_samples``
    samples of the seed's dictionary; the test split is the seed's
    ``make_problem`` test set (an independent random stream).
    """
    import torch

    torch.set_num_threads(threads)
    exp = cfg.experiment
    t0 = time.perf_counter()
    problem = make_problem(replace(exp.data, seed=seed))
    stream = CodeStream(problem.D, exp.data.K, exp.batch_size, seed=seed, n_samples=cfg.n_samples)
    methods = run_seed(exp, seed, checkpoint_dir=str(checkpoints), problem=problem,
                       batches=prefetched(stream_batches(stream, resolve_device(exp.device))))
    return seed, {"seed": seed, "wall_s": time.perf_counter() - t0, "peak_rss_mib": peak_rss_mib(),
                  "threads": threads, "device": str(resolve_device(exp.device)), "methods": methods}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    workers = max(1, min(args.jobs, len(cfg.seeds)))
    check_memory(cfg.experiment.memory_bytes(n_train=cfg.experiment.batch_size * 4) * workers,
                 "the test set (--n-test x --N), minibatches and the widest model", "reduce them or --jobs")
    with open_experiment(args.out, "scaled", cfg.result_settings(), resume=args.resume, overwrite=args.overwrite,
                         outputs=("scaled.json",)) as exp:
        todo = [s for s in cfg.seeds if not exp.has_part(f"seed{s}")]
        workers = max(1, min(args.jobs, len(todo)))
        threads = args.threads or max(1, default_jobs() // workers - 1)
        print(f"scaled ({cfg.preset}): {len(todo)} seed(s) to run, {len(cfg.seeds) - len(todo)} already done; "
              f"{workers} worker(s) x {threads} thread(s) on {resolve_device(args.device)}", file=sys.stderr)
        t0 = time.perf_counter()
        if todo:
            results = Parallel(n_jobs=workers, return_as="generator_unordered")(
                delayed(run_part)(cfg, s, exp.checkpoint_dir, threads) for s in todo)
            with closing_on_interrupt(results):
                for seed, part in results:
                    exp.write_part(f"seed{seed}", part)
        wall = time.perf_counter() - t0
        parts = sorted(exp.parts().values(), key=lambda p: p["seed"])
        seeds = [p["seed"] for p in parts]
        report = {
            "experiment": "scaled",
            "setting": "known_z",
            "config": {**exp.config, "seeds": seeds, "preset": cfg.preset},
            "wall_s_total": sum(p["wall_s"] for p in parts),
            "peak_rss_mib": max(p["peak_rss_mib"] for p in parts),
            "device": parts[0]["device"],
            "methods": summarise([p["methods"] for p in parts], seeds),
        }
        exp.write_result("scaled.json", report)
        exp.finish()
        print(format_table(report), file=sys.stderr)
        if warning := unconverged_warning(report["methods"]):
            print(warning, file=sys.stderr)
        print(f"wall time of this invocation: {wall:.1f} s; peak memory {report['peak_rss_mib']:.0f} MiB", file=sys.stderr)
        if not args.no_figures:
            render_figures("scaled", exp.path / "scaled.json", exp.figures_dir(args.figures_dir))
    return 0


def format_table(report: dict) -> str:
    """A readable per-method summary."""
    lines = [f"\n== scaled known Z (N={report['config']['data']['N']}, M={report['config']['data']['M']}, "
             f"K={report['config']['data']['K']}) ==",
             f"{'method':<10} {'MCC':>14} {'train FLOPs':>12} {'infer FLOPs':>12} {'wall s':>8}"]
    for name, m in report["methods"].items():
        wall = f"{'>=' if m.get('wall_s_partial') else ''}{m['wall_s']:.1f}"
        lines.append(f"{name:<10} {m['mcc_mean']:>7.3f} ± {m['mcc_std']:.3f} {m['train_flops']:>12.3g} "
                     f"{m['inference_flops']:>12.3g} {wall:>8}{' *' if m.get('unconverged') else ''}")
    if any(m.get("wall_s_partial") for m in report["methods"].values()):
        lines.append(">= : resumed from a checkpoint that did not record its earlier training seconds (a lower bound)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_cli(main))
