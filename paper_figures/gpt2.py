"""Interpretability F1 per method (the paper's language-model figure), from ``OUT/gpt2.json``.

    python -m paper_figures.gpt2 results/gpt2/gpt2.json

Left: box plot of the explain-then-detect F1 over the scored latents of each
method, with the mean marked and printed (the paper: SAE 0.64, MLP 0.69 over
200 GPT-2 latents each). Right: the same for detection accuracy on the
balanced test sets, where an uninformative detector scores 0.5.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from paper_figures.common import FIG_DIR, figure_main, save_figure  # noqa: E402
import numpy as np  # noqa: E402

from gapbound.utils.io import read_json  # noqa: E402

COLORS = {"SAE": "tab:blue", "MLP": "tab:purple", "LCA": "tab:green"}


def _panel(ax: plt.Axes, methods: dict, key: str, label: str, chance: float | None) -> None:
    names = [n for n in methods if methods[n].get(key)]
    data = [np.asarray(methods[n][key], dtype=float) for n in names]
    box = ax.boxplot(data, patch_artist=True, widths=0.55, showfliers=True)
    for patch, name in zip(box["boxes"], names):
        patch.set_facecolor(COLORS.get(name, "tab:gray"))
        patch.set_alpha(0.45)
    for i, d in enumerate(data, start=1):
        ax.plot(i, d.mean(), "D", color="black", ms=6, zorder=3)
        ax.annotate(f"{d.mean():.2f}", (i, d.mean()), xytext=(14, 0), textcoords="offset points", va="center", fontsize=9)
    # L0 and NMSE next to each name: a latent set that barely fires can detect well and reconstruct nothing
    ax.set_xticks(range(1, len(names) + 1), [
        f"{n} (n={len(d)})\nL0 {methods[n]['l0']:.1f}, NMSE {methods[n]['nmse']:.2f}" for n, d in zip(names, data)
    ], fontsize=8)
    if chance is not None:
        ax.axhline(chance, color="gray", ls=":", lw=1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel(label)
    ax.grid(axis="y", alpha=0.3)


def render(results: str | Path, out_dir: str | Path = FIG_DIR) -> list[Path]:
    """Draw ``gpt2.png`` and ``gpt2.pdf`` into ``out_dir`` from a ``gpt2.json`` results file."""
    report = read_json(results)
    methods = report.get("methods") or {}
    if not any(m.get("f1") for m in methods.values()):
        raise ValueError(f"{results} holds no scored latents to plot")
    hv = report["config"]["harvest"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    _panel(axes[0], methods, "f1", "detection F1 per latent", None)
    _panel(axes[1], methods, "accuracy", "detection accuracy (balanced)", 0.5)
    fig.suptitle(f"explain-then-detect on {hv['model']} layer {hv['layer']} {hv['site']} ({hv['text']}); "
                 "diamonds: means", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_dir, "gpt2")


def main(argv: list[str] | None = None) -> int:
    return figure_main(render, "results/gpt2/gpt2.json", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
