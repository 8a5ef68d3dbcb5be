"""Training throughput of the scaled experiment's SAE and MLP steps, as achieved FLOP/s next to matmul FLOP/s.

    python -m benchmarks.throughput                      # N=1000, M=200, batch 1024, MLP widths 256 and 1024
    python -m benchmarks.throughput --device cuda --out results/throughput.json

For each encoder the library's own :func:`gapbound.training.train` runs twice
with different step counts on one fixed minibatch; the difference of the two
wall times divided by the difference of steps is the cost of one steady-state
step (Adam update, dead-latent bookkeeping and progress bar included; the
one-off FLOP counting and set-up cancel). FLOPs per step are measured by
:mod:`gapbound.utils.flops` (torch's FlopCounterMode, matrix products only).
Achieved FLOP/s = step FLOPs / step time, reported next to the machine's
matmul FLOP/s measured in the same process (best of several square fp32
products). A second figure per encoder includes generating the streamed
minibatch (:class:`gapbound.synthetic.data.CodeStream`), i.e. what ``simulations.scaled``
actually pays per step. Every time is the best of ``--repeats`` measurements,
which filters out interference from other processes on a shared machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable, Sequence

import torch

from gapbound.utils.cli import positive_int, run_cli
from gapbound.synthetic.data import CodeStream, random_dictionary
from gapbound.models import make_encoder
from gapbound.utils.io import atomic_write_json
from gapbound.training import BatchFn, Supervised, TrainConfig, stream_batches, train
from gapbound.utils.validation import check_sparsity, resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops_per_s(device: torch.device, n: int = 2048, reps: int = 10, repeats: int = 5) -> float:
    """Best measured FLOP/s of ``reps`` back-to-back ``n x n`` fp32 products."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 * reps / best


def step_seconds(build: Callable[[], torch.nn.Module], batches: BatchFn, steps: int, repeats: int,
                 device: torch.device) -> tuple[float, int]:
    """Steady-state seconds per training step of :func:`train` and its measured FLOPs per step."""

    def timed(n: int) -> tuple[float, int]:
        torch.manual_seed(0)
        model = build().to(device)
        _sync(device)
        t0 = time.perf_counter()
        res = train(model, batches, TrainConfig(steps=n, lr=1e-3, resample_every=0, progress=False))
        _sync(device)
        return time.perf_counter() - t0, res.step_flops

    timed(2)  # warm-up (allocator, kernels)
    best = float("inf")
    for _ in range(repeats):
        short, flops = timed(steps // 4)
        long, _ = timed(steps)
        best = min(best, (long - short) / (steps - steps // 4))
    return max(best, 1e-12), flops


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--N", type=positive_int, default=1000, help="sources / latents (default 1000)")
    p.add_argument("--M", type=positive_int, default=200, help="measurements (default 200)")
    p.add_argument("--K", type=positive_int, default=20, help="active sources (default 20)")
    p.add_argument("--batch-size", type=positive_int, default=1024, help="minibatch (default 1024)")
    p.add_argument("--hidden", type=positive_int, nargs="+", default=[256, 1024], help="MLP widths (default 256 1024)")
    p.add_argument("--steps", type=positive_int, default=40, help="steps of the longer timed run (default 40)")
    p.add_argument("--repeats", type=positive_int, default=3, help="measurements per figure; the best is kept")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--out", default=None, help="also write the numbers to this JSON file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_sparsity(args.N, args.M, args.K)
    if args.steps < 8:
        raise ValueError(f"--steps must be >= 8 so the two timed runs differ, got {args.steps}")
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    stream = CodeStream(random_dictionary(args.M, args.N, 0), args.K, args.batch_size, seed=0)
    X, S = stream.batch(0, device)
    fixed: BatchFn = lambda i: (X, S, None)  # noqa: E731
    streamed = stream_batches(stream, device)

    peak = matmul_flops_per_s(device)
    rows = []
    for name, hidden in [("SAE", None), *((f"MLP-{h}", h) for h in args.hidden)]:
        def build(hidden=hidden):
            return Supervised(make_encoder("mlp" if hidden else "sae", args.M, args.N, hidden=hidden))

        sec, flops = step_seconds(build, fixed, args.steps, args.repeats, device)
        sec_stream, _ = step_seconds(build, streamed, args.steps, args.repeats, device)
        rows.append({"encoder": name, "step_flops": flops, "step_s": sec, "flops_per_s": flops / sec,
                     "fraction_of_matmul": flops / sec / peak, "step_s_with_data": sec_stream,
                     "flops_per_s_with_data": flops / sec_stream, "steps_per_s_with_data": 1 / sec_stream})
    report = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "N": args.N, "M": args.M, "batch_size": args.batch_size, "matmul_flops_per_s": peak, "encoders": rows}
    print(f"device {device}, {torch.get_num_threads()} thread(s); matmul (2048^2 fp32): {peak / 1e9:.1f} GFLOP/s")
    print(f"{'encoder':<10} {'GFLOP/step':>10} {'ms/step':>8} {'GFLOP/s':>8} {'of matmul':>9} {'ms/step+data':>13} {'GFLOP/s+data':>13}")
    for r in rows:
        print(f"{r['encoder']:<10} {r['step_flops'] / 1e9:>10.2f} {r['step_s'] * 1e3:>8.1f} {r['flops_per_s'] / 1e9:>8.1f} "
              f"{r['fraction_of_matmul']:>9.0%} {r['step_s_with_data'] * 1e3:>13.1f} {r['flops_per_s_with_data'] / 1e9:>13.1f}")
    if args.out:
        atomic_write_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
