"""MCC against cumulative FLOPs per setting (the paper's synthetic figure), from ``OUT/<setting>.json``.

    python -m paper_figures.synthetic results/synthetic

Each method's curve is its test MCC during training, averaged over seeds,
against cumulative training FLOPs; the final marker adds the FLOPs of encoding
the test set (for SAE+ITO and SC this includes per-sample optimisation).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes

from gapbound.utils.io import read_json
from paper_figures.common import figure_main, save_figure, subplots


TITLES = {"known_z": "Known Z", "known_d": "Known D", "unknown": "Unknown Z and D"}
COLORS = {"SAE": "tab:blue", "SAE+ITO": "tab:red", "SC": "tab:green"}


def _mean_curve(curves: list[list[list[float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Average the seeds' curves point by point (they share step grids; truncate to the shortest)."""
    n = min(len(c) for c in curves)
    arr = np.array([[[p[0], np.nan if p[1] is None else p[1]] for p in c[:n]] for c in curves], dtype=float)
    return arr[:, :, 0].mean(0), np.nanmean(arr[:, :, 1], 0)


def plot_setting(report: dict, ax: Axes) -> None:
    """Draw one setting's MCC-vs-FLOPs curves onto ``ax``.

    The step-0 point (no FLOPs yet) has no place on a log axis and is dropped;
    a training curve shared by two methods (SAE and SAE+ITO) is drawn once.
    """
    mlp_colors = matplotlib.colormaps["Purples"](np.linspace(0.45, 0.95, max(1, sum(k.startswith("MLP") for k in report["methods"]))))
    mlp_i = 0
    drawn: set[tuple] = set()
    for name, m in report["methods"].items():
        color = COLORS.get(name)
        if color is None:
            color, mlp_i = mlp_colors[mlp_i], mlp_i + 1
        x, y = _mean_curve(m["curves"])
        keep = x > 0
        x, y = x[keep], y[keep]
        train_part = tuple(np.round(y[:-1], 12))
        if len(x) > 1 and train_part not in drawn:
            ax.plot(x[:-1], y[:-1], color=color, alpha=0.8, lw=1.5)
            drawn.add(train_part)
        ax.plot(x[-1], y[-1], "o", color=color, ms=7, label=f"{name} ({m['mcc_mean']:.2f})")
        if len(x) > 1:
            ax.plot(x[-2:], y[-2:], ":", color=color, lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("cumulative FLOPs (training + test inference)")
    ax.set_ylabel("test MCC")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(TITLES.get(report["setting"], report["setting"]))
    ax.legend(fontsize=8, loc="lower right")


def render(results_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Render every ``<setting>.json`` found in ``results_dir`` to ``synthetic_<setting>.{png,pdf}``, plus a combined panel."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    reports = [read_json(results_dir / f"{s}.json") for s in TITLES if (results_dir / f"{s}.json").exists()]
    if not reports:
        raise FileNotFoundError(f"no known_z/known_d/unknown .json results in {results_dir}")
    written: list[Path] = []
    for report in reports:
        fig, ax = subplots(figsize=(5.5, 4))
        plot_setting(report, ax)
        fig.tight_layout()
        written += save_figure(fig, out_dir, f"synthetic_{report['setting']}")
    fig, axes = subplots(1, len(reports), figsize=(5.2 * len(reports), 4), squeeze=False)
    for report, ax in zip(reports, axes[0]):
        plot_setting(report, ax)
    fig.tight_layout()
    return written + save_figure(fig, out_dir, "synthetic")


def main(argv: list[str] | None = None) -> int:
    return figure_main(render, "results/synthetic", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
