"""Training throughput per (method, seed): batched engine vs one-at-a-time loop vs a plain authors'-style loop.

    OMP_NUM_THREADS=1 python -m benchmarks.train_engine                     # N=16 (paper) and scaled sizes
    OMP_NUM_THREADS=1 python -m benchmarks.train_engine --skip-scaled --out results/train_engine.json

Paper sizes (N = 16, M = 8, minibatch 256, the ``unknown`` setting's learned
dictionary): for each encoder and for sparse coding (``SC``: per-sample codes
inferred every step), ``B`` seeds are trained

- ``loop``: one model at a time with :func:`gapbound.training.train` (fused Adam,
  dead-latent bookkeeping, everything the simulations use);
- ``batched``: all ``B`` at once with :func:`gapbound.training.engine.train_batched`;
- ``plain``: the shortest PyTorch loop an author would write (``nn.Sequential``,
  ``torch.optim.Adam`` defaults, ``loss.backward()``, column renormalisation; no
  resampling, no bookkeeping), one model at a time (encoders only).

Each figure is steady-state steps per second per (method, seed): two runs of
different lengths, the difference of times over the difference of steps
(set-up, FLOP counting and imports cancel), best of ``--repeats``, in wall and in
this process's CPU seconds (on a shared machine the CPU figures are the steadier);
the contenders are interleaved round by round so that other processes' load hits
them alike. Achieved FLOP/s = measured step FLOPs (torch's FlopCounterMode, matmuls
only) x models x steps/s, next to measured matmul FLOP/s: 2048^2 products, and the
batched step's own products timed alone at their shapes (``stacked_products``; the
same FLOPs, ``tests/test_engine.py``). Scaled sizes (N = 1000, M = 200,
minibatch 1024, known Z): the loop and the engine (B = 1 and 2) on a fixed
minibatch, where the matmuls dominate.

``--sc-inference``: the SC stack step's inference alone (5 x 256 samples from their
stored codes, after ``--trained`` batched training steps), CPU ms per step for the
engine's CPU kernel (``coding_kernel.warm_active_set``), its torch active set (used on
other devices) and the library's compiled active set (``run_lean`` per model, which
races each start against a cold start), interleaved, best of ``--repeats``, with the
largest code difference between them.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from typing import Callable, Sequence

import torch
from torch import nn

from benchmarks.throughput import matmul_flops_per_s
from gapbound.models import Dictionary, make_encoder
from gapbound.models.coding import SparseCoding
from gapbound.synthetic.data import CodeStream, SyntheticConfig, make_problem, random_dictionary
from gapbound.training import Autoencoder, Supervised, TrainConfig, tensor_batches, train
from gapbound.training.engine import stacked_tensor_batches, train_batched
from gapbound.utils.cli import positive_int, run_cli
from gapbound.utils.io import atomic_write_json
from gapbound.utils.rng import seeded


def steady_seconds(runs: dict[str, Callable[[int], None]], steps: int, repeats: int) -> dict[str, dict[str, float]]:
    """Seconds per steady-state step of each ``run(n_steps)``: (long - short) / (steps - steps // 4), best of ``repeats``.

    Both wall (``perf_counter``) and this process's CPU seconds (``process_time``: on a shared
    machine, the time the contender actually ran). The runs are interleaved round by round, so
    that load from other processes hits every contender alike.
    """
    clocks = {"wall": time.perf_counter, "cpu": time.process_time}
    for run in runs.values():
        run(4)  # warm-up
    best = {name: dict.fromkeys(clocks, float("inf")) for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            t0 = {k: c() for k, c in clocks.items()}
            run(steps // 4)
            t1 = {k: c() for k, c in clocks.items()}
            run(steps)
            for k, c in clocks.items():
                long, short = c() - t1[k], t1[k] - t0[k]
                best[name][k] = min(best[name][k], max((long - short) / (steps - steps // 4), 1e-12))
    return best


def stacked_products(B: int, n: int, widths: Sequence[int], learned_dict: bool) -> list[tuple[int, int, int]]:
    """The batched matrix products ``(rows, inner, cols)`` of one engine step of ``B`` models, each ``B`` deep.

    ``widths``: the encoder's layer widths from input to codes (``[M, N]`` for the SAE,
    ``[M, H, N]`` for an MLP); an autoencoder with decoder ``D`` (``M x N``).
    """
    M, N = widths[0], widths[-1]
    out = [(n, a, b) for a, b in zip(widths, widths[1:])]  # forward
    out += [(n, N, M), (n, M, N)] + ([(M, n, N)] if learned_dict else [])  # decoder, dL/dc, dL/dD
    out += [(a, n, b) for a, b in zip(widths, widths[1:])]  # weight gradients
    out += [(n, b, a) for a, b in zip(widths[1:-1], widths[2:])]  # back through hidden layers
    return out


def products_flops_per_s(B: int, products: Sequence[tuple[int, int, int]], repeats: int = 5) -> dict[str, float]:
    """FLOP/s of these batched products alone (fp32, preallocated outputs, best of ``repeats``), wall and CPU clock.

    The matmul speed at the step's shapes: what the step would reach if nothing but its products ran.
    """
    ops = [(torch.randn(B, r, k), torch.randn(B, k, c), torch.empty(B, r, c)) for r, k, c in products]
    flops = sum(2 * B * r * k * c for r, k, c in products)
    reps = max(1, int(2e8 // max(flops, 1)))
    best = {"wall": float("inf"), "cpu": float("inf")}
    for _ in range(repeats + 1):
        t0 = {"wall": time.perf_counter(), "cpu": time.process_time()}
        for _ in range(reps):
            for a, b, o in ops:
                torch.bmm(a, b, out=o)
        t1 = {"wall": time.perf_counter(), "cpu": time.process_time()}
        best = {k: min(v, (t1[k] - t0[k]) / reps) for k, v in best.items()}
    return {k: flops / max(v, 1e-12) for k, v in best.items()}


def plain_loop(X: torch.Tensor, hidden: int | None, N: int, steps: int, batch_size: int, seed: int) -> None:
    """An authors'-style loop: Sequential encoder, learned unit-norm decoder, default Adam, reconstruction + L1."""
    torch.manual_seed(seed)
    M = X.shape[1]
    layers = [nn.Linear(M, N), nn.ReLU()] if hidden is None else [nn.Linear(M, hidden), nn.ReLU(), nn.Linear(hidden, N), nn.ReLU()]
    enc = nn.Sequential(*layers)
    D = nn.Parameter(torch.randn(M, N))
    opt = torch.optim.Adam([*enc.parameters(), D], lr=3e-4)
    for step in range(steps):
        if step % (X.shape[0] // batch_size) == 0:
            perm = torch.randperm(X.shape[0])
        k = step % (X.shape[0] // batch_size)
        x = X[perm[k * batch_size : (k + 1) * batch_size]]
        codes = enc(x)
        loss = nn.functional.mse_loss(codes @ D.T, x) + 1e-4 * codes.abs().sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            D /= D.norm(dim=0, keepdim=True)


def _models(kind: str, hidden: int | None, M: int, N: int, seeds: Sequence[int], supervised: bool) -> list[nn.Module]:
    out = []
    for s in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            enc = make_encoder(kind, M, N, hidden=hidden)
            out.append(Supervised(enc) if supervised else Autoencoder(enc, Dictionary(M, N)))
    return out


def _coders(M: int, N: int, n: int, seeds: Sequence[int]) -> list[nn.Module]:
    """Sparse coding as the synthetic suite's ``unknown`` setting builds it: learned dictionary, stored codes."""
    return [SparseCoding(seeded(s, lambda: Dictionary(M, N)), n) for s in seeds]


def paper_sizes(methods: Sequence[str], seeds: int, steps: int, repeats: int) -> list[dict]:
    seed_list = list(range(seeds))
    problems = [make_problem(SyntheticConfig(seed=s)) for s in seed_list]
    X = torch.stack([p.X_train for p in problems])
    rows = []
    for name in methods:
        hidden = None if name in ("SAE", "SC") else int(name.split("-")[1])
        kind = "sae" if hidden is None else "mlp"
        base = (_coders(8, 16, X.shape[1], seed_list) if name == "SC"
                else _models(kind, hidden, 8, 16, seed_list, supervised=False))
        cfg = lambda n, s=0: TrainConfig(steps=n, progress=False, resample_every=0, seed=s)  # noqa: E731
        flops = {}

        def loop(n: int) -> None:
            flops["step"] = train(copy.deepcopy(base[0]), tensor_batches(problems[0].X_train, None, 256, seed=0), cfg(n)).step_flops

        def batched(n: int) -> None:
            train_batched(copy.deepcopy(base), stacked_tensor_batches(X, None, 256, seed_list), [cfg(n, s) for s in seed_list])

        runs = {"loop": loop, "batched": batched}
        if name != "SC":  # the plain loop is an encoder's; sparse coding has no authors'-style counterpart here
            runs["plain"] = lambda n: plain_loop(problems[0].X_train, hidden, 16, n, 256, 0)
        t = steady_seconds(runs, steps, repeats)
        per = {clock: {k: (seeds if k == "batched" else 1) / v[clock] for k, v in t.items()} for clock in ("wall", "cpu")}
        row = {"method": name, "models": seeds, "step_flops": flops["step"],
               "steps_per_s_per_model": per["wall"], "cpu_steps_per_s_per_model": per["cpu"],
               "speedup_vs_loop": per["wall"]["batched"] / per["wall"]["loop"],
               "cpu_speedup_vs_loop": per["cpu"]["batched"] / per["cpu"]["loop"],
               "speedup_vs_plain": per["wall"]["batched"] / per["wall"]["plain"] if "plain" in t else None,
               "achieved_flops_per_s": {k: v * flops["step"] for k, v in per["wall"].items()},
               "cpu_achieved_flops_per_s": {k: v * flops["step"] for k, v in per["cpu"].items()}}
        if name != "SC":  # the batched step's matmuls alone at its shapes: how near the hardware the step is
            products = stacked_products(seeds, 256, [8, 16] if hidden is None else [8, hidden, 16], learned_dict=True)
            probe = products_flops_per_s(seeds, products)
            row["matmul_at_step_shapes_flops_per_s"], row["cpu_matmul_at_step_shapes_flops_per_s"] = probe["wall"], probe["cpu"]
            row["products_flops_per_model"] = sum(2 * r * k * c for r, k, c in products)  # equals step_flops
        rows.append(row)
    return rows


def scaled_sizes(hidden: Sequence[int], steps: int, repeats: int, N: int = 1000, M: int = 200, K: int = 20,
                 batch_size: int = 1024) -> list[dict]:
    X, S = CodeStream(random_dictionary(M, N, 0), K, batch_size, seed=0).batch(0)
    rows = []
    for name, h in [("SAE", None), *((f"MLP-{h}", h) for h in hidden)]:
        kind = "sae" if h is None else "mlp"
        flops = {}

        def loop(n: int) -> None:
            m = _models(kind, h, M, N, [0], supervised=True)[0]
            flops["step"] = train(m, lambda i: (X, S, None), TrainConfig(steps=n, lr=1e-3, resample_every=0, progress=False)).step_flops

        def batched(n: int, B: int) -> None:
            ms = _models(kind, h, M, N, list(range(B)), supervised=True)
            Xs, Ss = X.expand(B, -1, -1), S.expand(B, -1, -1)
            train_batched(ms, lambda i: (Xs, Ss, None),
                          [TrainConfig(steps=n, lr=1e-3, resample_every=0, progress=False, seed=s) for s in range(B)])

        t = steady_seconds({"loop": loop, **{f"batched_B{B}": lambda n, B=B: batched(n, B) for B in (1, 2)}}, steps, repeats)
        t = {k: v["wall"] / (2 if k == "batched_B2" else 1) for k, v in t.items()}
        rows.append({"method": name, "step_flops": flops["step"], "seconds_per_model_step": t,
                     "achieved_flops_per_s": {k: flops["step"] / v for k, v in t.items()}})
    return rows


def sc_inference(seeds: int, trained: int, captured: int, repeats: int) -> dict:
    """CPU ms per SC stack step's inference: the engine's kernel, its torch active set, the library's compiled one.

    ``seeds`` coders (N = 16, M = 8, batch 256) are trained ``trained`` steps with the engine;
    the next ``captured`` steps' inputs (dictionaries, samples, stored codes) are then solved by
    each contender, round by round, best of ``repeats`` (``process_time``).
    """
    import numpy as np

    from gapbound.inference.active_set import widths
    from gapbound.inference.coder import run_lean
    from gapbound.inference.problem import Atoms
    from gapbound.training.coding_engine import CodingStack, _active_set, batched_nn_lasso
    from gapbound.training.objectives import l1_to_lam

    seed_list = list(range(seeds))
    X = torch.stack([make_problem(SyntheticConfig(seed=s)).X_train for s in seed_list])
    models, batches = _coders(8, 16, X.shape[1], seed_list), stacked_tensor_batches(X, None, 256, seed_list)
    cfg = TrainConfig(progress=False, resample_every=0)
    if trained:
        train_batched(models, batches, [TrainConfig(steps=trained, progress=False, resample_every=0, seed=s) for s in seed_list])
    stack, lam = CodingStack(models), l1_to_lam(cfg.l1, 8)
    cases = []
    for i in range(trained, trained + captured):
        x, _, idx = batches(i)
        cases.append((stack.params[0].detach().clone(), x, torch.stack([c[r] for c, r in zip(stack.codes, idx)])))
    cap, max_add, n_first = widths(Atoms(cases[0][0][0]))

    def torch_path(D: torch.Tensor, x: torch.Tensor, init: torch.Tensor) -> torch.Tensor:
        D64 = D.double()
        return _active_set(init.double(), torch.bmm(D64.transpose(1, 2), D64), torch.bmm(x.double(), D64), lam, 32)[0].float()

    def library(D: torch.Tensor, x: torch.Tensor, init: torch.Tensor) -> torch.Tensor:
        out = []
        for Db, xb, ib in zip(D.double().numpy(), x.double().numpy(), init.double().numpy()):
            out.append(run_lean(Db.T @ Db, np.ones(Db.shape[1], bool), np.ascontiguousarray(Db.T), np.ascontiguousarray(xb),
                                xb @ Db, np.ascontiguousarray(ib), 8, lam, 0.0, cap, max_add, 256, 4, n_first)[0])
        return torch.from_numpy(np.stack(out)).float()

    runs = {"kernel": lambda D, x, init: batched_nn_lasso(D, x, lam, init, 20)[0], "torch": torch_path, "library": library}
    codes = {name: [f(*c) for c in cases] for name, f in runs.items()}  # also the warm-up (compilation)
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, f in runs.items():
            t0 = time.process_time()
            for c in cases:
                f(*c)
            best[name] = min(best[name], (time.process_time() - t0) / len(cases))
    diff = {f"kernel_vs_{k}": max(float((a - b).abs().max()) for a, b in zip(codes["kernel"], codes[k])) for k in ("torch", "library")}
    return {"models": seeds, "trained_steps": trained, "captured_steps": captured, "cpu_ms_per_step": {k: 1e3 * v for k, v in best.items()},
            "max_abs_code_difference": diff}


def suite_costs(steps: int, repeats: int, seeds: int = 5) -> list[dict]:
    """CPU seconds per batched step of every (setting, trained base) of the paper suite, and per protocol run.

    The models, minibatches and settings are those of ``python -m simulations.synthetic`` (paper
    protocol, ``seeds`` seeds batched, one thread); times are steady-state steps from initialisation
    (sparse coding's early steps cost more than its later ones). Evaluation and set-up are not included.
    """
    from dataclasses import replace

    from gapbound.synthetic.methods import _train_setup, parse_method
    from simulations.synthetic import build_parser as suite_parser, configs_from_args

    seed_list = list(range(seeds))
    rows = []
    for cfg in configs_from_args(suite_parser().parse_args(["--quiet"])):
        problems = [make_problem(replace(cfg.data, seed=s)) for s in seed_list]
        X = torch.stack([p.X_train for p in problems])
        S = torch.stack([p.S_train for p in problems]) if cfg.setting == "known_z" else None
        for base in dict.fromkeys(parse_method(m).base for m in cfg.methods):
            spec = parse_method(base)
            if spec.encoder is None and cfg.setting != "unknown":
                continue  # sparse coding with the true dictionary trains nothing
            setups = [_train_setup(spec, cfg, p, s, None) for p, s in zip(problems, seed_list)]

            def run(n: int, setups=setups) -> None:
                train_batched([copy.deepcopy(m) for m, _, _ in setups], stacked_tensor_batches(X, S, cfg.batch_size, seed_list),
                              [replace(c, steps=n, eval_every=0, progress=False) for _, c, _ in setups])

            cpu = steady_seconds({"batched": run}, steps, repeats)["batched"]["cpu"]
            rows.append({"setting": cfg.setting, "base": base, "cpu_s_per_step": cpu, "steps": cfg.train.steps,
                         "cpu_s": cpu * cfg.train.steps})
    return rows


def two_worker_split(cpu_s: dict[str, float], workers: int = 2) -> list[list[str]]:
    """The settings (one job each) on ``workers`` workers, longest first to the least loaded.

    ``simulations.synthetic`` submits its jobs longest first, and a free worker takes the next one.
    """
    loads: list[list[str]] = [[] for _ in range(workers)]
    for name in sorted(cpu_s, key=cpu_s.get, reverse=True):
        min(loads, key=lambda ws: sum(cpu_s[w] for w in ws)).append(name)
    return loads


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_engine", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["SAE", "MLP-32", "MLP-256", "MLP-1024", "SC"],
                   help="SAE, MLP-<h> and SC (sparse coding with a learned dictionary)")
    p.add_argument("--seeds", type=positive_int, default=5, help="models trained at once (default 5)")
    p.add_argument("--steps", type=positive_int, default=800, help="steps of the longer timed run at N=16 (default 800)")
    p.add_argument("--scaled-steps", type=positive_int, default=8, help="steps of the longer timed run at scaled sizes")
    p.add_argument("--scaled-hidden", type=positive_int, nargs="+", default=[256, 1024], help="MLP widths at scaled sizes")
    p.add_argument("--skip-scaled", action="store_true", help="only the paper's sizes")
    p.add_argument("--repeats", type=positive_int, default=3, help="measurements per figure; the best is kept")
    p.add_argument("--suite", action="store_true",
                   help="instead: CPU seconds per step of every trained (setting, method) of the paper suite, and the "
                        "suite's predicted CPU time and --jobs 2 split")
    p.add_argument("--sc-inference", action="store_true",
                   help="instead: CPU ms of one SC stack step's inference, the engine's kernel vs its torch active set vs "
                        "the library's compiled active set")
    p.add_argument("--trained", type=int, default=800, help="--sc-inference: training steps before the timed steps")
    p.add_argument("--out", default=None, help="also write the numbers to this JSON file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for m in args.methods:
        if m not in ("SAE", "SC") and not (m.startswith("MLP-") and m[4:].isdigit() and int(m[4:]) > 0):
            raise ValueError(f"--methods: {m!r} is not SAE, SC or MLP-<hidden width>")
    if args.steps < 16 or args.scaled_steps < 4:
        raise ValueError("--steps must be >= 16 and --scaled-steps >= 4 so the two timed runs differ")
    if args.suite:
        return suite_main(args)
    if args.sc_inference:
        if args.trained < 0:
            raise ValueError("--trained must be >= 0")
        report = {"threads": torch.get_num_threads(), "load_average_before": os.getloadavg(),
                  **sc_inference(args.seeds, args.trained, 20, max(args.repeats, 5)), "load_average_after": os.getloadavg()}
        ms = report["cpu_ms_per_step"]
        print(f"SC inference of one stack step ({args.seeds} x 256 samples, after {args.trained} steps), CPU ms, best of "
              f"{max(args.repeats, 5)}: " + ", ".join(f"{k} {v:.3f}" for k, v in ms.items()) +
              f"; torch / kernel {ms['torch'] / ms['kernel']:.2f}x, library / kernel {ms['library'] / ms['kernel']:.2f}x")
        print(f"max |code difference|: {report['max_abs_code_difference']}")
        print(f"load average before / after: {report['load_average_before']} / {report['load_average_after']}")
        if args.out:
            atomic_write_json(args.out, report)
        return 0
    peak = matmul_flops_per_s(torch.device("cpu"))
    report = {"threads": torch.get_num_threads(), "torch": torch.__version__, "matmul_flops_per_s": peak,
              "load_average_before": os.getloadavg(),
              "paper_sizes": paper_sizes(args.methods, args.seeds, args.steps, args.repeats)}
    print(f"{torch.get_num_threads()} thread(s); matmul (2048^2 fp32): {peak / 1e9:.1f} GFLOP/s")
    print(f"N=16, M=8, batch 256, {args.seeds} seeds; steps/s per (method, seed), wall clock (x loop also in CPU seconds)")
    print(f"{'method':<9} {'loop':>8} {'plain':>8} {'batched':>8} {'x loop':>7} {'x loop CPU':>10} {'x plain':>8} "
          f"{'batched GFLOP/s (CPU s)':>24} {'matmul at shapes (CPU s)':>25}")
    for r in report["paper_sizes"]:
        s = r["steps_per_s_per_model"]
        plain = f"{s['plain']:>8.0f}" if "plain" in s else f"{'-':>8}"
        vs_plain = f"{r['speedup_vs_plain']:>8.1f}" if r["speedup_vs_plain"] is not None else f"{'-':>8}"
        got = f"{r['achieved_flops_per_s']['batched'] / 1e9:.2f} ({r['cpu_achieved_flops_per_s']['batched'] / 1e9:.2f})"
        probe = (f"{r['matmul_at_step_shapes_flops_per_s'] / 1e9:.2f} ({r['cpu_matmul_at_step_shapes_flops_per_s'] / 1e9:.2f})"
                 if "matmul_at_step_shapes_flops_per_s" in r else "-")
        print(f"{r['method']:<9} {s['loop']:>8.0f} {plain} {s['batched']:>8.0f} {r['speedup_vs_loop']:>7.1f} "
              f"{r['cpu_speedup_vs_loop']:>10.1f} {vs_plain} {got:>24} {probe:>25}")
    if not args.skip_scaled:
        report["scaled_sizes"] = scaled_sizes(args.scaled_hidden, args.scaled_steps, args.repeats)
        print("N=1000, M=200, batch 1024, known Z: GFLOP/s achieved (fraction of matmul)")
        for r in report["scaled_sizes"]:
            cells = "  ".join(f"{k} {v / 1e9:.1f} ({v / peak:.0%})" for k, v in r["achieved_flops_per_s"].items())
            print(f"{r['method']:<9} {r['step_flops'] / 1e9:.2f} GFLOP/step  {cells}")
    report["load_average_after"] = os.getloadavg()
    print(f"load average before / after: {report['load_average_before']} / {report['load_average_after']}")
    if args.out:
        atomic_write_json(args.out, report)
    return 0


def suite_main(args: argparse.Namespace) -> int:
    """``--suite``: per-step CPU costs and the predicted paper-suite time (see :func:`suite_costs`)."""
    report = {"threads": torch.get_num_threads(), "load_average_before": os.getloadavg(),
              "rows": suite_costs(args.steps, args.repeats, args.seeds)}
    per_setting: dict[str, float] = {}
    print(f"paper suite, {args.seeds} seeds batched, one thread: CPU s per step (per stack of {args.seeds}) and per run")
    for r in report["rows"]:
        per_setting[r["setting"]] = per_setting.get(r["setting"], 0.0) + r["cpu_s"]
        print(f"{r['setting']:<8} {r['base']:<9} {r['cpu_s_per_step'] * 1e3:8.3f} ms x {r['steps']:>7,} = {r['cpu_s']:7.0f} s")
    split = two_worker_split(per_setting)
    report.update(cpu_s_per_setting=per_setting, cpu_s_total=sum(per_setting.values()), jobs2_split=split,
                  jobs2_wall_s=max(sum(per_setting[w] for w in ws) for ws in split), load_average_after=os.getloadavg())
    print(f"training CPU s: {report['cpu_s_total']:.0f} in all; per setting " +
          ", ".join(f"{k} {v:.0f}" for k, v in per_setting.items()))
    print(f"--jobs 2 on an idle 2-core machine: workers {split}, predicted training wall {report['jobs2_wall_s']:.0f} s "
          f"(evaluation and set-up not included)")
    print(f"load average before / after: {report['load_average_before']} / {report['load_average_after']}")
    if args.out:
        atomic_write_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
