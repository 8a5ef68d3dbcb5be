"""Phase diagrams: contours of test MCC over (log2 N, M), one panel per method (rows) and K (columns).

    python -m paper_figures.phase results/phase/phase.json

Cells are averaged over seeds. Grid points that are not valid problems
(``M >= N`` or ``K >= M``) or not yet computed are blank; computed cells are
marked with their MCC. Contours need at least a 2 x 2 block of computed cells;
panels with fewer show the cells' values only.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from gapbound.utils.io import read_json
from paper_figures.common import figure_main, save_figure, subplots


LEVELS = np.linspace(0.0, 1.0, 11)


def mcc_table(rows: list[dict]) -> dict[tuple[str, int], tuple[list[int], list[int], np.ndarray]]:
    """``(method, K) -> (Ns, Ms, grid)`` with ``grid[i, j]`` the seed-mean MCC at ``(Ms[i], Ns[j])`` (NaN: no cell)."""
    Ns = sorted({r["N"] for r in rows})
    Ms = sorted({r["M"] for r in rows})
    acc: dict[tuple[str, int, int, int], list[float]] = defaultdict(list)
    for r in rows:
        acc[(r["method"], r["K"], r["M"], r["N"])].append(r["mcc"])
    out = {}
    for method, K in sorted({(r["method"], r["K"]) for r in rows}):
        grid = np.full((len(Ms), len(Ns)), np.nan)
        for i, M in enumerate(Ms):
            for j, N in enumerate(Ns):
                if (v := acc.get((method, K, M, N))) is not None:
                    grid[i, j] = float(np.mean(v))
        out[(method, K)] = (Ns, Ms, grid)
    return out


def render(results_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Draw ``phase.{png,pdf}`` into ``out_dir`` from a ``phase.json`` document."""
    doc = read_json(results_path)
    if not doc["rows"]:
        raise ValueError(f"{results_path} has no computed cells yet")
    table = mcc_table(doc["rows"])
    methods = list(dict.fromkeys(r["method"] for r in doc["rows"]))
    Ks = sorted({K for _, K in table})
    fig, axes = subplots(len(methods), len(Ks), figsize=(3.6 * len(Ks), 3.1 * len(methods)), squeeze=False,
                             gridspec_kw={"hspace": 0.45})
    filled = None
    for a, method in enumerate(methods):
        for b, K in enumerate(Ks):
            ax = axes[a, b]
            if (method, K) not in table:
                ax.set_axis_off()
                continue
            Ns, Ms, grid = table[(method, K)]
            x = np.log2(Ns)
            if np.isfinite(grid).sum() >= 4 and len(Ns) > 1 and len(Ms) > 1:
                filled = ax.contourf(x, Ms, np.ma.masked_invalid(grid), levels=LEVELS, cmap="viridis", vmin=0, vmax=1)
            # Every computed cell is also a marker in the same colour scale, so a
            # panel with a single row of M (no contour possible) still reads.
            jj, ii = np.meshgrid(np.arange(len(Ns)), np.arange(len(Ms)))
            ok = np.isfinite(grid)
            ax.scatter(x[jj[ok]], np.asarray(Ms)[ii[ok]], c=grid[ok], cmap="viridis", vmin=0, vmax=1, s=60,
                       edgecolors="k", linewidths=0.6, zorder=3)
            for i, j in zip(ii[ok], jj[ok]):
                ax.annotate(f"{grid[i, j]:.2f}", (x[j], Ms[i]), textcoords="offset points", xytext=(0, 7),
                            ha="center", fontsize=7, zorder=4,
                            bbox={"boxstyle": "round,pad=0.1", "fc": "w", "ec": "none", "alpha": 0.7})
            ax.set_xticks(x, [str(n) for n in Ns])
            ax.set_yticks(Ms)
            ax.set_xlim(x.min() - 0.3, x.max() + 0.3)
            ax.set_ylim(min(Ms) - 3, max(Ms) + 5)
            ax.set_title(f"{method}, K={K}", fontsize=10)
            if a == len(methods) - 1:
                ax.set_xlabel("N (sources)")
            if b == 0:
                ax.set_ylabel("M (measurements)")
    if filled is not None:
        fig.colorbar(filled, ax=axes, shrink=0.8, label="test MCC")
    fig.suptitle(f"MCC phase diagrams ({doc['config']['setting']} setting, "
                 f"{doc['config']['train']['steps']} training steps)")
    return save_figure(fig, out_dir, "phase", bbox_inches="tight")


def main(argv: list[str] | None = None) -> int:
    return figure_main(render, "results/phase/phase.json", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
