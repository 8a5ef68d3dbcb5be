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
    real = phase.run_cell
    monkeypatch.setattr(phase, "run_cell", lambda cfg, cell, *a: calls.append(cell) or real(cfg, cell, *a))
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
