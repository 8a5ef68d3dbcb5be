"""Independent jobs give the same results on a local Dask cluster (via joblib) as on one machine."""

from __future__ import annotations

import pytest
from joblib import Parallel, delayed

pytest.importorskip("distributed")

from gapbound.synthetic.data import SyntheticConfig  # noqa: E402
from gapbound.synthetic.methods import ExperimentConfig  # noqa: E402
from gapbound.training import TrainConfig  # noqa: E402
from gapbound.training.distribute import parallel_backend  # noqa: E402
from simulations.synthetic import run_part  # noqa: E402


def _jobs(tmp):
    data = SyntheticConfig(n_train=128, n_test=128)
    cfgs = [ExperimentConfig(setting=s, data=data, methods=("SAE", "MLP-8"), batch_size=64, curve_points=2,
                             train=TrainConfig(steps=40, lr=1e-3, resample_every=20, progress=False))
            for s in ("known_z", "unknown")]
    return [delayed(run_part)(c, [0, 1], tmp, 1) for c in cfgs]  # batched jobs, as the CLI sends them


def _strip(parts):
    """Everything but wall times."""
    out = {}
    for setting, seed, part in (p for job in parts for p in job):
        out[(setting, seed)] = {m: {k: v for k, v in r.items() if k != "wall_s"} for m, r in part["methods"].items()}
    return out


@pytest.mark.slow  # two worker processes import torch and gapbound: ~90 s on the shared 2-core machine
def test_local_cluster_equals_single_machine(tmp_path):
    single = _strip(Parallel(n_jobs=1)(_jobs(tmp_path / "a")))
    # worker processes: the models are seeded through the global torch RNG (fork_rng), which threads would share
    with parallel_backend("local", n_workers=2, processes=True) as where:
        assert "2 workers" in where
        dask = _strip(Parallel(n_jobs=2)(_jobs(tmp_path / "b")))
    assert dask == single


def test_unreachable_scheduler_is_one_line_error():
    with pytest.raises(ValueError, match="cannot reach a Dask scheduler"):
        with parallel_backend("tcp://127.0.0.1:9", timeout=1.0):
            pass


@pytest.mark.slow
def test_phase_cells_on_a_local_cluster_equal_single_machine(tmp_path):
    """The phase grid's jobs (one per shape, seeds batched) on a 2-process Dask cluster: the single-machine rows."""
    from simulations import phase

    cfg = phase.PhaseConfig(hidden=8, n_train=64, n_test=64, batch_size=32,
                            train=TrainConfig(steps=20, lr=1e-3, progress=False))
    cells, skipped = phase.grid_cells([16, 32], [8], [3], seeds=[0, 1])
    single = phase.run_grid(cfg, cells, skipped, tmp_path / "a", jobs=1, progress=False)
    with parallel_backend("local", n_workers=2, processes=True):
        dask = phase.run_grid(cfg, cells, skipped, tmp_path / "b", jobs=2, progress=False)

    def strip(rows):
        return sorted(({k: v for k, v in r.items() if k != "wall_s"} for r in rows), key=lambda r: (r["N"], r["seed"], r["method"]))

    assert len(single["rows"]) == 2 * 2 * 3 and strip(dask["rows"]) == strip(single["rows"])
