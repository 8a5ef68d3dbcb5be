"""The compute frontier end to end: points for every budget, the exact solve, resumption, the figure."""

from __future__ import annotations

import pytest

from gapbound.utils.io import read_json
from paper_figures.frontier import render
from simulations import frontier


def test_frontier_points_exact_solve_resume_and_figure(tmp_path):
    argv = ["--settings", "known_d", "--seeds", "0", "--steps", "40", "--widths", "8", "--budgets", "1", "3",
            "--out", str(tmp_path), "--quiet", "--no-figures"]
    assert frontier.main(argv) == 0
    path = tmp_path / "frontier.json"
    points = read_json(path)["points"]
    by_key = {(p["method"], p["budget"]): p for p in points}
    assert set(by_key) == {("SAE", None), ("MLP-8", None), *((m, b) for m in ("SAE+ITO", "SC") for b in (1, 3, "exact"))}
    for p in points:
        assert p["total_flops"] == p["train_flops"] + p["inference_flops"] and p["inference_flops"] > 0
    for m in ("SAE+ITO", "SC"):
        # More plain iterations cost more; the exact solve recovers the codes (known D) far better than one iteration.
        assert by_key[(m, 1)]["inference_flops"] < by_key[(m, 3)]["inference_flops"]
        assert by_key[(m, "exact")]["mcc"] > by_key[(m, 1)]["mcc"] + 0.05
        assert by_key[(m, "exact")]["mcc"] > 0.95
    # SAE+ITO starts from the trained SAE: same training FLOPs.
    assert by_key[("SAE+ITO", 1)]["train_flops"] == by_key[("SAE", None)]["train_flops"]
    exact = [p for p in points if p["budget"] == "exact"]
    assert all(p["converged_fraction"] == 1.0 and not p["unconverged"] for p in exact)
    parts = {p: p.stat().st_mtime_ns for p in (tmp_path / "parts").iterdir()}
    with pytest.raises(ValueError, match="add --resume"):
        frontier.main(argv)
    assert frontier.main([*argv, "--resume"]) == 0  # everything finished: nothing rerun
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "parts").iterdir()} == parts
    assert read_json(path)["points"] == points
    with pytest.raises(ValueError, match="different configuration"):
        frontier.main([*argv[:-2], "--ito-lam", "0.01", "--quiet", "--no-figures", "--resume"])
    figs = render(path, fig_dir=tmp_path)
    assert [f.suffix for f in figs] == [".png", ".pdf"] and all(f.stat().st_size > 0 for f in figs)
