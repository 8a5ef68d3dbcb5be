"""Compute frontier: test MCC against total FLOPs (training + inference) for every inference budget.

    python -m simulations.frontier            # quick (default): 1 seed, short training, minutes
    python -m simulations.frontier --full     # the paper's step counts, 5 seeds, MLP-1024

For the known-D and unknown settings (N=16, M=8, K=3) it trains each base
model once per seed through :func:`gapbound.synthetic.methods.run_seed` (SAE, MLP-h for
each width, SC), then re-evaluates SAE+ITO and SC under a sweep of
per-sample inference budgets from the saved checkpoints, so no model is
trained twice: plain FISTA for each iteration budget (duality-gap tolerance 0,
so the budget is what is spent), and the exact solve (FISTA + active set to a
certified gap of 1e-6, budget ``"exact"``). Every point records measured
training and inference FLOPs and the inference's convergence. Each finished
(setting, seed, budget) is written atomically to ``OUT/parts/`` and
``OUT/frontier.json`` is rebuilt from all of them; ``--resume`` skips finished
ones (and may add seeds, settings or budgets), ``--overwrite`` starts afresh
(see :mod:`gapbound.utils.experiment`). The figure goes to
``OUT/figures/frontier.{png,pdf}`` (``--figures-dir paper_figures`` for the committed one).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from typing import Sequence

from tqdm.auto import tqdm

from gapbound.synthetic.data import SyntheticConfig
from gapbound.synthetic.methods import ExperimentConfig, convergence_summary, run_seed, unconverged_warning
from gapbound.training import TrainConfig
from gapbound.utils.cli import ArgumentParser, add_common_args, check_unique, limit_threads, nonnegative_float, nonnegative_int, positive_int, run_cli
from gapbound.utils.experiment import open_experiment
from simulations import render_figures

SETTINGS = ("known_d", "unknown")
EXACT = "exact"  # the budget label of FISTA + active set run to a certified gap
QUICK = {"steps": {"known_d": 1_500, "unknown": 3_000}, "seeds": (0,), "widths": (32, 256), "budgets": (1, 3, 10, 30, 100, 300)}
FULL = {"steps": {"known_d": 20_000, "unknown": 100_000}, "seeds": (0, 1, 2, 3, 4), "widths": (32, 256, 1024),
        "budgets": (1, 2, 5, 10, 20, 50, 100, 300, 1000)}


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m simulations.frontier", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="short training, one seed, two MLP widths (the default)")
    mode.add_argument("--full", action="store_true", help="the paper's step counts, 5 seeds, MLP widths 32/256/1024")
    p.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    p.add_argument("--seeds", type=nonnegative_int, nargs="+", default=None, help="seeds (default: quick 0; full 0-4)")
    p.add_argument("--budgets", type=positive_int, nargs="+", default=None,
                   help="plain FISTA iteration budgets for SAE+ITO and SC (the exact solve is always added)")
    p.add_argument("--widths", type=positive_int, nargs="+", default=None, help="MLP hidden widths")
    p.add_argument("--steps", type=positive_int, default=None, help="training steps for both settings")
    p.add_argument("--ito-lam", type=nonnegative_float, default=1e-3, help="L1 weight of per-sample inference (default 1e-3)")
    add_common_args(p, "results/frontier")
    return p


def base_config(setting: str, steps: int, widths: Sequence[int], args: argparse.Namespace) -> ExperimentConfig:
    """Every trained method of a setting, with the checkpoints that the budget sweep reuses."""
    return ExperimentConfig(
        setting=setting, data=SyntheticConfig(N=16, M=8, K=3), batch_size=256, ito_lam=args.ito_lam,
        methods=("SAE", *(f"MLP-{w}" for w in widths), "SC"), device=args.device,
        train=TrainConfig(steps=steps, lr=3e-4, l1=1e-4, progress=not args.quiet, checkpoint_every=1000),
    )


def point(setting: str, seed: int, method: str, budget: int | None, res: dict) -> dict:
    """One frontier point from a :func:`run_seed` method entry."""
    return {"setting": setting, "seed": seed, "method": method, "budget": budget, "mcc": res["mcc"],
            "train_flops": res["train_flops"], "inference_flops": res["inference_flops"],
            "total_flops": res["train_flops"] + res["inference_flops"], **convergence_summary([res["inference"]])}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    preset = FULL if args.full else QUICK
    seeds = args.seeds or list(preset["seeds"])
    widths = args.widths or list(preset["widths"])
    for flag, values in (("--seeds", seeds), ("--budgets", args.budgets or []), ("--widths", widths),
                         ("--settings", args.settings)):
        check_unique(flag, values)
    budgets = sorted(args.budgets or preset["budgets"])
    limit_threads(1)
    steps = {s: args.steps or preset["steps"][s] for s in SETTINGS}
    configs = {s: base_config(s, steps[s], widths, args) for s in SETTINGS}
    run_cfg = {"settings": {s: c.result_settings() for s, c in configs.items()},
               "budgets": "plain FISTA, tol 0; exact: FISTA + active set, tol 1e-6"}
    t0 = time.perf_counter()
    with open_experiment(args.out, "frontier", run_cfg, resume=args.resume, overwrite=args.overwrite,
                         outputs=("frontier.json",)) as exp:
        ckpt = str(exp.checkpoint_dir)
        jobs = [(s, seed) for s in args.settings for seed in seeds]
        for setting, seed in tqdm(jobs, desc="frontier", disable=args.quiet):
            cfg = configs[setting]
            if not exp.has_part(key := f"{setting}-seed{seed}-base"):
                res = run_seed(cfg, seed, checkpoint_dir=ckpt)
                exp.write_part(key, {"points": [point(setting, seed, m, None, r) for m, r in res.items() if m != "SC"]})
            for b in [*budgets, EXACT]:
                if exp.has_part(key := f"{setting}-seed{seed}-{b}"):
                    continue
                # Plain FISTA with tol 0 spends exactly the budget; the exact point runs to the
                # float32 certificate floor. SAE and SC load their finished checkpoints.
                infer = {"ito_tol": 1e-6} if b == EXACT else {"ito_max_iter": b, "ito_tol": 0.0, "ito_polish": False}
                res = run_seed(replace(cfg, methods=("SAE+ITO", "SC"), **infer), seed, checkpoint_dir=ckpt)
                exp.write_part(key, {"points": [point(setting, seed, m, b, r) for m, r in res.items()]})
        points = [p for part in exp.parts().values() for p in part["points"]]
        path = exp.write_result("frontier.json", {"points": points})
        exp.finish()
        print(f"{len(points)} points in {path} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
        print(format_table(points), file=sys.stderr)
        flagged = {f"{p['setting']}/{p['method']}/seed{p['seed']}/{p['budget']}": p for p in points}
        if warning := unconverged_warning(flagged):
            print(warning, file=sys.stderr)
        if not args.no_figures:
            render_figures("frontier", path, exp.figures_dir(args.figures_dir))
    return 0


def format_table(points: list[dict]) -> str:
    """Seed-averaged MCC and total FLOPs per (setting, method, budget)."""
    from paper_figures.frontier import aggregate

    lines = [f"{'setting':<8} {'method':<8} {'budget':>6} {'MCC':>6} {'total FLOPs':>12}"]
    for (setting, method, budget), (flops, mcc, _) in sorted(aggregate(points).items(), key=lambda kv: (kv[0][0], kv[0][1], kv[1][0])):
        lines.append(f"{setting:<8} {method:<8} {'-' if budget is None else budget:>6} {mcc:6.3f} {flops:12.3g}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_cli(main))
