"""What every figure script shares: making figures without pyplot's global state, saving them atomically, the CLI.

Figures are built on :class:`matplotlib.figure.Figure` directly, so importing a
figure module selects no backend and touches no global matplotlib state
(no ``matplotlib.use``): PNG and PDF are written by the figure's own canvas.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from matplotlib.figure import Figure

from gapbound.utils.cli import ArgumentParser, add_debug_arg, run_cli
from gapbound.utils.io import atomic_write

FIG_DIR = Path(__file__).resolve().parent  # the committed figures (written only when asked for)


def subplots(*args: Any, **kwargs: Any) -> tuple[Figure, Any]:
    """``pyplot.subplots`` without pyplot: a new :class:`Figure` (``figsize``, ``layout``...) and its axes."""
    fig_kw = {k: kwargs.pop(k) for k in ("figsize", "dpi", "layout") if k in kwargs}
    fig = Figure(**fig_kw)
    return fig, fig.subplots(*args, **kwargs)


def save_figure(fig: Figure, out_dir: str | Path, stem: str, **savefig_kwargs: Any) -> list[Path]:
    """Write ``fig`` to ``out_dir/stem.png`` and ``.pdf`` (150 dpi) atomically and return the paths."""
    paths = [Path(out_dir) / f"{stem}.{ext}" for ext in ("png", "pdf")]
    for path in paths:
        atomic_write(path, lambda tmp, ext=path.suffix[1:]: fig.savefig(tmp, format=ext, dpi=150, **savefig_kwargs))
    return paths


def figure_main(
    render: Callable[[str, str], list[Path]], default_results: str, doc: str | None, argv: Sequence[str] | None = None
) -> int:
    """The command line every figure script shares: ``RESULTS [--out DIR] [--debug]``.

    Figures go to ``--out`` (default: a ``figures`` folder next to the results;
    ``--out paper_figures`` updates the committed ones). A missing, unreadable
    or wrong-schema results file ends in one line and exit status 2.
    """
    parser = ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="?", default=default_results, help=f"results to plot (default: {default_results})")
    parser.add_argument("--out", default=None,
                        help="figure directory (default: RESULTS' folder/figures; paper_figures for the committed ones)")
    add_debug_arg(parser)

    def main(args_list: Sequence[str] | None) -> int:
        args = parser.parse_args(args_list)
        results = Path(args.results)
        out = Path(args.out) if args.out else (results if results.is_dir() else results.parent) / "figures"
        try:
            paths = render(str(results), str(out))
        except (KeyError, IndexError, AttributeError, TypeError) as err:
            if args.debug:
                raise
            raise ValueError(f"{results} is not a results file of this figure (bad or missing entry {err}); "
                             "give the JSON its simulation wrote") from None
        for path in paths:
            print(path)
        return 0

    return run_cli(main, argv, resume_hint=None)
