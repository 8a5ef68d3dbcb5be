"""The scaled known-Z experiment (N=1000, M=200, K=20): MCC against FLOPs, and MCC per method.

    python -m paper_figures.scaled results/scaled/scaled.json

Left: each method's test MCC during training against cumulative training
FLOPs, the final marker adding the FLOPs of encoding the test set (for SAE+ITO
and SC: per-sample optimisation under the true dictionary). Right: final test
MCC per method, annotated with its wall time.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gapbound.utils.io import read_json
from paper_figures.common import figure_main, save_figure, subplots
from paper_figures.synthetic import plot_setting


def render(results_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Draw ``scaled.{png,pdf}`` into ``out_dir`` from a ``scaled.json`` report."""
    report = read_json(results_path)
    data = report["config"]["data"]
    fig, (ax_curve, ax_bar) = subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.4, 1]})
    plot_setting(report, ax_curve)
    ax_curve.set_title(f"Known Z at scale: N={data['N']}, M={data['M']}, K={data['K']} "
                       f"({report['config']['preset']} preset)")
    names = list(report["methods"])
    mccs = [report["methods"][n]["mcc_mean"] for n in names]
    bars = ax_bar.bar(names, mccs, color="tab:gray")
    for bar, name in zip(bars, names):
        m = report["methods"][name]
        # a resumed run whose earlier seconds were not recorded: the label is a lower bound, and says so
        label = f"{'≥' if m.get('wall_s_partial') else ''}{m['wall_s']:.0f} s"
        ax_bar.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    ax_bar.set_ylim(0, 1.08)
    ax_bar.set_ylabel("test MCC (label: wall time)")
    if any(m.get("wall_s_partial") for m in report["methods"].values()):
        ax_bar.set_title("≥: lower bound (run resumed from unrecorded time)", fontsize=9)
    ax_bar.tick_params(axis="x", rotation=30)
    ax_bar.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, out_dir, "scaled")


def main(argv: list[str] | None = None) -> int:
    return figure_main(render, "results/scaled/scaled.json", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
