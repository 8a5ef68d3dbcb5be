"""simulations.phase: grid validity, cell skipping across invocations, atomic results, CLI errors."""

from __future__ import annotations

import pytest

from gapbound.utils.cli import run_cli
from gapbound.utils.io import read_json
from gapbound.training import TrainConfig
from simulations import phase


def test_full_grid_skips_exactly_the_invalid_points():
    g = phase.FULL_GRID
    cells, skipped = phase.grid_cells(g["N"], g["M"], g["K"], seeds=[0])
    assert len(cells) + len(skipped) == 5 * 3 * 3
    assert all(c.M < c.N and c.K < c.M for c in cells)
    assert all(s["M"] >= s["N"] or s["K"] >= s["M"] for s in skipped)
    # N=16 keeps only (M=8, K=3); K=15 survives only with M=16, 32 < N.
    assert [(c.M, c.K) for c in cells if c.N == 16] == [(8, 3)]
    assert len(cells) == 26
    assert {s["reason"].split(":")[0] for s in skipped if (s["N"], s["M"], s["K"]) == (16, 16, 3)} == {"M=16 >= N=16"}


TINY = phase.PhaseConfig(hidden=8, n_train=64, n_test=64, batch_size=32,
                         train=TrainConfig(steps=5, lr=1e-3, progress=False))


def test_finished_cells_are_skipped_and_new_ones_appended(tmp_path, monkeypatch):
    cells, skipped = phase.grid_cells([16, 32], [8], [3, 9], seeds=[0])
    assert len(cells) == 2 and len(skipped) == 2
    doc = phase.run_grid(TINY, cells, skipped, tmp_path, jobs=1, progress=False)
    assert len(doc["rows"]) == 2 * 3
    assert {r["method"] for r in doc["rows"]} == {"SAE", "MLP-8", "SC"}
    assert all(0.0 <= r["mcc"] <= 1.0 for r in doc["rows"])
    assert read_json(tmp_path / "phase.json") == doc

    calls = []
    real = phase.run_cells
    monkeypatch.setattr(phase, "run_cells", lambda cfg, cells, *a: calls.extend(cells) or real(cfg, cells, *a))
    with pytest.raises(ValueError, match="add --resume"):
        phase.run_grid(TINY, cells, skipped, tmp_path, jobs=1, progress=False)
    again = phase.run_grid(TINY, cells, skipped, tmp_path, jobs=1, resume=True, progress=False)
    assert calls == [] and again["rows"] == doc["rows"]

    more, more_skipped = phase.grid_cells([16, 32, 64], [8], [3], seeds=[0])
    grown = phase.run_grid(TINY, more, more_skipped, tmp_path, jobs=1, resume=True, progress=False)
    assert calls == [phase.Cell(64, 8, 3, 0)]
    assert grown["rows"][:6] == doc["rows"] and len(grown["rows"]) == 9
    assert read_json(tmp_path / "phase.json")["rows"] == grown["rows"]
    assert len(grown["skipped"]) == 2  # the earlier run's skipped points are kept too
    sc = [r for r in grown["rows"] if r["method"] == "SC"]
    assert all(0.0 <= r["converged_fraction"] <= 1.0 for r in sc)


def test_a_cell_finished_by_another_run_is_never_lost(tmp_path):
    """Two invocations filling one grid: the summary is rebuilt from every finished cell on disk."""
    a, _ = phase.grid_cells([16], [8], [3], seeds=[0])
    b, _ = phase.grid_cells([32], [8], [3], seeds=[0])
    phase.run_grid(TINY, a, [], tmp_path, jobs=1, progress=False)
    doc = phase.run_grid(TINY, b, [], tmp_path, jobs=1, resume=True, progress=False)
    assert {(r["N"], r["method"]) for r in doc["rows"]} == {(N, m) for N in (16, 32) for m in ("SAE", "MLP-8", "SC")}


def test_results_of_another_configuration_are_not_mixed(tmp_path):
    cells, skipped = phase.grid_cells([16], [8], [3], seeds=[0])
    phase.run_grid(TINY, cells, skipped, tmp_path, jobs=1, progress=False)
    other = phase.PhaseConfig(**{**TINY.__dict__, "hidden": 16})
    with pytest.raises(ValueError, match="different configuration"):
        phase.run_grid(other, cells, skipped, tmp_path, jobs=1, progress=False)


def test_help_and_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        phase.main(["--help"])
    assert exc.value.code == 0 and "dask" in capsys.readouterr().out
    for argv, message in ((["--N", "-16"], "expected a positive integer"),
                          (["--setting", "nope"], "invalid choice"),
                          (["--K", "0"], "expected a positive integer")):
        with pytest.raises(SystemExit) as exc:
            phase.main(argv)
        assert exc.value.code == 2 and message in capsys.readouterr().err
    # Every point invalid (K >= M): a one-line error, no results file.
    assert run_cli(phase.main, ["--N", "16", "--M", "8", "--K", "9", "--out", str(tmp_path)]) == 2
    assert "no valid (N, M, K) cell" in capsys.readouterr().err
    assert not (tmp_path / "phase.json").exists()


def test_unconverged_inference_is_flagged(tmp_path, monkeypatch, capsys):
    """A cell whose per-sample inference missed its tolerance gets one warning line naming it."""
    real = phase.run_cells

    def fake(cfg, cells, *a):
        out = real(cfg, cells, *a)
        for rows in out:
            for r in rows:
                if r["method"] == "SC":
                    r.update(converged_fraction=0.25, max_duality_gap=3e-3, inference_tol=1e-7, unconverged=True)
        return out

    monkeypatch.setattr(phase, "run_cells", fake)
    cells, skipped = phase.grid_cells([16], [8], [3], seeds=[0])
    doc = phase.run_grid(TINY, cells, skipped, tmp_path, jobs=1, progress=False)
    err = capsys.readouterr().err
    assert [r["unconverged"] for r in doc["rows"] if r["method"] == "SC"] == [True]
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "SC at N=16, M=8, K=3, seed 0 (75 % of samples unconverged, largest gap 0.003" in warning[0]
    monkeypatch.setattr(phase, "run_cells", real)
    capsys.readouterr()
    phase.run_grid(TINY, *phase.grid_cells([32], [8], [3], seeds=[0]), tmp_path / "clean", jobs=1, progress=False)
    assert "warning:" not in capsys.readouterr().err


def test_seeds_of_a_shape_batched_equal_one_cell_each(tmp_path):
    """Cells of one shape run as one batched job; each cell's rows equal its own one-cell run (up to rounding)."""
    cells, _ = phase.grid_cells([16], [8], [3], seeds=[0, 1])
    both = phase.run_cells(TINY, cells)
    for cell, rows in zip(cells, both):
        alone = phase.run_cell(TINY, cell)
        assert [r["method"] for r in rows] == [r["method"] for r in alone]
        assert [r["mcc"] for r in rows] == pytest.approx([r["mcc"] for r in alone], abs=1e-4)
        assert all(r["seed"] == cell.seed for r in rows)
    with pytest.raises(ValueError, match="one \\(N, M, K\\) shape"):
        phase.run_cells(TINY, phase.grid_cells([16, 32], [8], [3], seeds=[0])[0])


@pytest.mark.slow
def test_ctrl_c_with_workers_keeps_finished_cells_and_resumes(tmp_path):
    """Ctrl-C (SIGINT to the process group) with --jobs 2: one-line resume hint, exit 130, finished cells kept."""
    from _interrupt import interrupt

    from gapbound.utils.cli import RESUME_HINT

    out = tmp_path / "o"
    args = ["simulations.phase", "--N", "16", "32", "64", "128", "--M", "8", "--K", "3", "--steps", "3000",
            "--n-train", "256", "--n-test", "128", "--hidden", "16", "--jobs", "2", "--out", str(out), "--no-figures", "--quiet"]
    code, err = interrupt(args, lambda: len(list((out / "parts").glob("*.json"))) >= 1)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == f"interrupted: {RESUME_HINT}" and "Traceback" not in err, err
    kept = {p.name: p.read_text() for p in (out / "parts").glob("*.json")}
    assert kept and len(kept) < 4
    assert run_cli(phase.main, [*args[1:], "--resume"]) == 0
    doc = read_json(out / "phase.json")
    assert {(r["N"], r["method"]) for r in doc["rows"]} == {(N, m) for N in (16, 32, 64, 128) for m in ("SAE", "MLP-16", "SC")}
    assert {p.name: p.read_text() for p in (out / "parts").glob("*.json") if p.name in kept} == kept  # untouched
