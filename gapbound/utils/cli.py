"""Shared command-line plumbing for the simulations: argument types, seeding threads, clear errors."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

import torch

__all__ = [
    "ArgumentParser",
    "positive_int",
    "nonnegative_int",
    "positive_float",
    "nonnegative_float",
    "add_common_args",
    "check_unique",
    "output_dir",
    "add_debug_arg",
    "run_cli",
    "RESUME_HINT",
    "default_jobs",
    "limit_threads",
]


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line (naming the argument) instead of the usage dump."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


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


def output_dir(text: str) -> str:
    """argparse type of a folder to write into: refused up front if it is an existing file (before any work)."""
    path = Path(text)
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder path, got an empty string")
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is an existing file; give a folder")
    parent = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text} cannot be written ({parent} is not writable)")
    return text


def check_unique(flag: str, values: Sequence) -> None:
    """Refuse repeated values (``--seeds 0 0`` would count one seed twice)."""
    seen = [v for i, v in enumerate(values) if v in values[:i]]
    if seen:
        raise ValueError(f"{flag} repeats {sorted(set(seen))}; give each value once")


def default_jobs() -> int:
    """Worker processes to use: the cores this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def add_common_args(parser: argparse.ArgumentParser, default_out: str) -> None:
    """Arguments every simulation shares: the output protocol, ``--device``, ``--jobs``, figures, ``--quiet``, ``--debug``.

    ``--out``, ``--resume`` and ``--overwrite`` follow :mod:`gapbound.utils.experiment`.
    """
    parser.add_argument("--out", type=output_dir, default=default_out, help=f"results directory (default: {default_out})")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run of the same configuration in --out (finished parts are kept)")
    again.add_argument("--overwrite", action="store_true", help="discard the run in --out and start afresh")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (CUDA when available; default: cpu)")
    parser.add_argument("--jobs", type=positive_int, default=default_jobs(),
                        help="parallel worker processes for independent runs (default: available cores)")
    parser.add_argument("--no-figures", action="store_true", help="skip rendering figures")
    parser.add_argument("--figures-dir", type=output_dir, default=None,
                        help="folder for figures (default: OUT/figures; the committed ones: paper_figures)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_debug_arg(parser)


def add_debug_arg(parser: argparse.ArgumentParser) -> None:
    """``--debug``: show the full traceback of an error instead of one line (read by :func:`run_cli`)."""
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")


RESUME_HINT = "finished work is kept; rerun the same command with --resume to continue"

# Errors a user can fix (bad argument, file, directory, memory): one line and exit status 2.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError, MemoryError, torch.cuda.OutOfMemoryError)


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        text = f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    else:
        text = str(err) or type(err).__name__
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    if isinstance(err, (MemoryError, torch.cuda.OutOfMemoryError)):
        first = f"out of memory ({first}); use smaller sizes or fewer --jobs"
    return first


def run_cli(
    main: Callable[[Sequence[str] | None], int],
    argv: Sequence[str] | None = None,
    resume_hint: str | None = RESUME_HINT,
) -> int:
    """Run a command-line ``main`` with the project's error conventions.

    - a user error (``ValueError``, ``TypeError``, ``OSError``, out of memory)
      prints ``error: <one line>`` and returns 2;
    - Ctrl-C prints ``interrupted`` (with ``resume_hint`` if given) and returns 130;
    - any other exception prints one line naming it and returns 1;
    - with ``--debug`` in the arguments, the exception propagates with its traceback.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        return main(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted" + (f": {resume_hint}" if resume_hint else ""), file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        if debug:
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # a bug: still one line, the traceback on request
        if debug:
            raise
        print(f"internal error: {type(err).__name__}: {_one_line(err)} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


def limit_threads(jobs: int) -> None:
    """Share the cores between ``jobs`` worker processes instead of oversubscribing them."""
    torch.set_num_threads(max(1, default_jobs() // max(1, jobs)))
