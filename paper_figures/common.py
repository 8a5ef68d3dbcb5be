"""What every figure script shares: the output folder and saving a figure as PNG and PDF."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FIG_DIR = Path(__file__).resolve().parent


def save_figure(fig: plt.Figure, out_dir: str | Path, stem: str, **savefig_kwargs) -> list[Path]:
    """Write ``fig`` to ``out_dir/stem.png`` and ``.pdf`` (150 dpi), close it, and return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.{ext}" for ext in ("png", "pdf")]
    for path in paths:
        fig.savefig(path, dpi=150, **savefig_kwargs)
    plt.close(fig)
    return paths


def figure_main(
    render: Callable[[str, str], list[Path]], default_results: str, doc: str | None, argv: Sequence[str] | None = None
) -> int:
    """The command line every figure script shares: ``RESULTS [--out DIR]``; missing or bad results exit 2 with a message."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="?", default=default_results, help=f"results to plot (default: {default_results})")
    parser.add_argument("--out", default=str(FIG_DIR), help="figure directory (default: paper_figures/)")
    args = parser.parse_args(argv)
    try:
        for path in render(args.results, args.out):
            print(path)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
