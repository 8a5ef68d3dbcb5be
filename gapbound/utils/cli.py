"""Shared command-line plumbing for the simulations: argument types, seeding threads, clear errors."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

import torch

__all__ = [
    "positive_int",
    "nonnegative_int",
    "positive_float",
    "nonnegative_float",
    "add_common_args",
    "run_cli",
    "default_jobs",
    "limit_threads",
]


def _typed(convert: Callable[[str], float | int], test: Callable[[float | int], bool], what: str):
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


positive_int = _typed(int, lambda v: v >= 1, "a positive integer")
nonnegative_int = _typed(int, lambda v: v >= 0, "a non-negative integer")
positive_float = _typed(float, lambda v: v > 0 and v != float("inf"), "a positive number")
nonnegative_float = _typed(float, lambda v: 0 <= v < float("inf"), "a non-negative number")


def default_jobs() -> int:
    """Worker processes to use: the cores this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def add_common_args(parser: argparse.ArgumentParser, default_out: str) -> None:
    """Arguments every simulation shares: ``--out``, ``--device``, ``--jobs``, ``--no-figures``, ``--quiet``."""
    parser.add_argument("--out", default=default_out, help=f"results directory (default: {default_out})")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (CUDA when available; default: cpu)")
    parser.add_argument("--jobs", type=positive_int, default=default_jobs(),
                        help="parallel worker processes for independent runs (default: available cores)")
    parser.add_argument("--no-figures", action="store_true", help="skip rendering figures into paper_figures/")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run ``main`` and turn configuration errors into a one-line message and exit status 2."""
    try:
        return main(argv)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def limit_threads(jobs: int) -> None:
    """Share the cores between ``jobs`` worker processes instead of oversubscribing them."""
    torch.set_num_threads(max(1, default_jobs() // max(1, jobs)))
