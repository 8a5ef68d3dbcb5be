"""What every figure script shares: the output folder and saving a figure as PNG and PDF."""

from __future__ import annotations

from pathlib import Path

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
