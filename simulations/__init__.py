"""Runnable experiments: ``python -m simulations.<name>``. They configure and call :mod:`gapbound`."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def render_figures(name: str, result: str | Path, out_dir: str | Path) -> None:
    """Draw ``paper_figures/<name>.py``'s figures from ``result`` into ``out_dir`` and print their paths.

    The figure module (and matplotlib with it) is imported only here, so
    ``--no-figures`` runs never load it.
    """
    for path in importlib.import_module(f"paper_figures.{name}").render(result, out_dir):
        print(f"figure: {path}", file=sys.stderr)
