"""The compute frontier: test MCC against total FLOPs (training + inference), from ``OUT/frontier.json``.

    python -m paper_figures.frontier results/frontier/frontier.json

One panel per setting. SAE and each MLP width are single points (their
inference cost is one forward pass); SAE+ITO and SC are curves over the
per-sample inference budget (plain FISTA iterations), and a star marks the
exact solve (FISTA + active set to a certified duality gap). The dashed line is the
Pareto frontier: for each FLOP budget, the best MCC any method reached with at
most that many FLOPs. Points are seed means; error bars are seed standard
deviations.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import matplotlib.ticker
import numpy as np
from matplotlib.axes import Axes

from gapbound.utils.io import read_json
from paper_figures.common import figure_main, save_figure, subplots


TITLES = {"known_d": "Known D", "unknown": "Unknown Z and D"}
COLORS = {"SAE": "tab:blue", "SAE+ITO": "tab:red", "SC": "tab:green"}


def aggregate(points: list[dict]) -> dict[tuple, tuple[float, float, float]]:
    """``(setting, method, budget) -> (mean total FLOPs, mean MCC, std MCC)`` over seeds."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for p in points:
        groups[(p["setting"], p["method"], p["budget"])].append(p)
    return {k: (float(np.mean([p["total_flops"] for p in v])), float(np.mean([p["mcc"] for p in v])),
                float(np.std([p["mcc"] for p in v]))) for k, v in groups.items()}


def pareto(xy: list[tuple[float, float]]) -> np.ndarray:
    """The running maximum of MCC over increasing FLOPs (the best reachable at each budget)."""
    pts = sorted(xy)
    best, out = -np.inf, []
    for x, y in pts:
        if y > best:
            best = y
            out.append((x, y))
    return np.array(out)


def plot_setting(agg: dict, setting: str, ax: Axes) -> None:
    """One setting's frontier onto ``ax``."""
    rows = {k: v for k, v in agg.items() if k[0] == setting}
    mlps = sorted((int(k[1].split("-")[1]), v) for k, v in rows.items() if k[1].startswith("MLP-"))
    if mlps:
        xs, ys, es = zip(*[v for _, v in mlps])
        ax.errorbar(xs, ys, yerr=es, color="tab:purple", marker="s", lw=1, capsize=2, label="MLP (width)")
        for (w, (x, y, _)) in mlps:
            ax.annotate(f"h={w}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7, color="tab:purple")
    for method in ("SAE+ITO", "SC"):
        curve = sorted((k[2], v) for k, v in rows.items() if k[1] == method and isinstance(k[2], int))
        if curve:
            xs, ys, es = zip(*[v for _, v in curve])
            ax.errorbar(xs, ys, yerr=es, color=COLORS[method], marker="o", ms=3, lw=1, capsize=2, label=f"{method} (FISTA budget)")
            ax.annotate(f"{curve[0][0]} it", (xs[0], ys[0]), textcoords="offset points", xytext=(4, 4), fontsize=7, color=COLORS[method])
        exact = [v for k, v in rows.items() if k[1] == method and isinstance(k[2], str)]
        for x, y, e in exact:
            ax.errorbar([x], [y], yerr=[e], color=COLORS[method], marker="*", ms=10, capsize=2, ls="none",
                        label=f"{method} exact (FISTA + active set)")
    if (setting, "SAE", None) in rows:
        x, y, e = rows[(setting, "SAE", None)]
        ax.errorbar([x], [y], yerr=[e], color=COLORS["SAE"], marker="D", capsize=2, label="SAE")
    front = pareto([(v[0], v[1]) for v in rows.values()])
    if len(front):
        ax.step(front[:, 0], front[:, 1], where="post", color="0.4", ls="--", lw=1, label="Pareto frontier")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # narrow ranges: no overlapping minor labels
    ax.set_xlabel("total FLOPs (training + test inference)")
    ax.set_ylabel("test MCC")
    ax.set_title(TITLES.get(setting, setting))
    ax.grid(alpha=0.3)


def render(path: str | Path, fig_dir: str | Path) -> list[Path]:
    """Draw the frontier figure from ``frontier.json``; returns the PNG and PDF paths."""
    data = read_json(path)
    agg = aggregate(data["points"])
    settings = [s for s in TITLES if any(k[0] == s for k in agg)]
    if not settings:
        raise ValueError(f"{path} has no frontier points")
    fig, axes = subplots(1, len(settings), figsize=(5.5 * len(settings), 4.2), squeeze=False)
    for setting, ax in zip(settings, axes[0]):
        plot_setting(agg, setting, ax)
    # One legend under the panels: inside, it would hide points.
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.suptitle("Compute frontier: MCC vs total FLOPs (N=16, M=8, K=3)")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return save_figure(fig, fig_dir, "frontier")


def main(argv: list[str] | None = None) -> int:
    return figure_main(render, "results/frontier/frontier.json", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
