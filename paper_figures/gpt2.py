"""The language-model comparison (the paper's interpretability claim), from ``OUT/gpt2.json``.

    python -m paper_figures.gpt2 results/lm_offline3/gpt2.json [--out DIR]

Left: the NMSE-L0 frontier of each method over the L0 sweep (lower left is
better). Middle: mean explain-then-detect F1 per L0 target with bootstrap 95 %
confidence intervals. Right: the distribution of per-latent F1 at matched L0
(the paper: SAE 0.64, MLP 0.69 over 200 GPT-2 latents each, with an LLM
explainer; here the token-pattern scorer), labelled with NMSE, dead latents
and the amortisation gap as the squared-error cut of optimal codes at the
encoder's own L1 norm (comparable across methods; the relative LASSO gap
depends on the LASSO weight each method's codes imply).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from gapbound.utils.io import read_json
from paper_figures.common import figure_main, save_figure, subplots

COLORS = {"SAE": "tab:blue", "MLP": "tab:purple", "LCA": "tab:green"}


def _l1_cut(runs: dict, name: str, k: int) -> str:
    """The amortisation gap comparable across methods: how much optimal codes with the encoder's L1 norm cut its squared error."""
    cut = runs[f"{name}-k{k}"]["gap"].get("sq_err_matched_l1_reduction")
    return "n/a" if cut is None else f"{100 * cut:.0f}%"


def render(results: str | Path, out_dir: str | Path) -> list[Path]:
    """Draw ``gpt2.png`` and ``gpt2.pdf`` into ``out_dir`` from a ``gpt2.json`` results file."""
    report = read_json(results)
    frontier = report.get("frontier") or {}
    if not frontier:
        raise ValueError(f"{results} holds no finished (method, L0) runs to plot")
    fig, (ax_f, ax_i, ax_b) = subplots(1, 3, figsize=(13, 4), layout="constrained")
    for name, pts in frontier.items():
        color = COLORS.get(name, "tab:gray")
        l0 = [p["l0"] for p in pts]
        ax_f.plot(l0, [p["nmse"] for p in pts], "o-", color=color, label=name)
        for p in pts:
            ax_f.annotate(f"k={p['k']}", (p["l0"], p["nmse"]), xytext=(4, 3), textcoords="offset points", fontsize=7)
        f1 = np.array([p["f1_mean"] for p in pts])
        ci = np.array([p["f1_ci"] for p in pts], dtype=float).reshape(-1, 2)
        ax_i.errorbar(l0, f1, yerr=[f1 - ci[:, 0], ci[:, 1] - f1], fmt="o-", color=color, capsize=3, label=name)
    for ax, label in ((ax_f, "NMSE (held out)"), (ax_i, "mean detection F1 (95% CI)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("L0 (mean active latents per token)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    matched = report["matched_l0"]
    names = [n for n, m in matched["methods"].items() if m["n_scored"]]
    runs = report["methods"]
    data = [np.asarray(runs[f"{n}-k{matched['k']}"]["f1"], dtype=float) for n in names]
    if data:
        box = ax_b.boxplot(data, patch_artist=True, widths=0.55)
        for patch, name in zip(box["boxes"], names):
            patch.set_facecolor(COLORS.get(name, "tab:gray"))
            patch.set_alpha(0.45)
        for i, d in enumerate(data, start=1):
            ax_b.plot(i, d.mean(), "D", color="black", ms=5, zorder=3)
        ax_b.set_xticks(range(1, len(names) + 1), [
            f"{n} (n={len(d)})\nNMSE {matched['methods'][n]['nmse']:.2f}, dead {100 * matched['methods'][n]['dead_fraction']:.0f}%"
            f"\nL1-matched cut {_l1_cut(runs, n, matched['k'])}" for n, d in zip(names, data)], fontsize=7)
    ax_b.set_ylim(-0.02, 1.02)
    ax_b.set_ylabel(f"detection F1 per latent at k={matched['k']}")
    ax_b.grid(axis="y", alpha=0.3)
    store = report["store"]
    fig.suptitle(f"{store.get('hook_name') or store['site']} of {report['config']['harvest']['model']} on "
                 f"{store['tokens']:,} tokens ({store['text'].split(':')[0]}); F1 of the token-pattern scorer", fontsize=10)
    return save_figure(fig, out_dir, "gpt2")


def main(argv: list[str] | None = None) -> int:
    return figure_main(render, "results/lm_offline3/gpt2.json", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
