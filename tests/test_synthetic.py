"""The synthetic experiment end to end: every method learns, the CLI's schema, resumption and errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from gapbound.synthetic.data import SyntheticConfig, make_generator, make_problem
from gapbound.synthetic.methods import ExperimentConfig, parse_method, run_seed
from gapbound.synthetic.metrics import mcc
from gapbound.training.loop import TrainConfig
from simulations import synthetic

SMALL = SyntheticConfig(n_train=256, n_test=256)


def _chance_mcc(seed: int = 0) -> float:
    """MCC of random non-negative latents that share the true codes' sparsity: the chance level."""
    p = make_problem(SMALL)
    g = make_generator(seed, 99)
    noise = torch.rand(p.S_test.shape, generator=g) * (torch.rand(p.S_test.shape, generator=g) < 3 / 16)
    return mcc(p.S_test, noise)


@pytest.mark.parametrize("setting", ["known_z", "known_d", "unknown"])
def test_every_method_beats_chance_and_its_initialisation(setting):
    cfg = ExperimentConfig(setting=setting, data=SMALL, batch_size=128, curve_points=4,
                           train=TrainConfig(steps=300, lr=3e-3, progress=False),
                           methods=("SAE", "SAE+ITO", "MLP-32", "SC"))
    out = run_seed(cfg, seed=0)
    chance = _chance_mcc()
    assert chance < 0.2
    for name, r in out.items():
        assert r["mcc"] > chance + 0.2, f"{name} did not learn: {r['mcc']:.3f} vs chance {chance:.3f}"
        assert r["inference_flops"] > 0 and r["wall_s"] > 0
        trained = not (name == "SC" and setting != "unknown")
        assert (r["train_flops"] > 0) == trained
        if trained:
            assert r["curve"][0][0] == 0, "curves start at zero FLOPs"
            xs = [pt[0] for pt in r["curve"]]
            assert xs == sorted(xs), "cumulative FLOPs never decrease"
    if setting != "unknown":
        # with the true dictionary, per-sample inference is (nearly) exact, the amortised encoder is not
        assert out["SAE+ITO"]["mcc"] > 0.95 and out["SAE+ITO"]["mcc"] > out["SAE"]["mcc"]
    else:
        assert all(r["dict_mcc"] is not None and 0 < r["dict_mcc"] <= 1 for r in out.values())
    if setting == "known_d":
        assert all(out[m]["dict_mcc"] is None for m in out), "no dictionary is learned with D known"


def test_cli_writes_schema_and_resumes(tmp_path):
    args = ["--setting", "known_d", "--seeds", "0", "1", "--steps", "30", "--methods", "SAE", "SAE+ITO", "MLP-8", "SC",
            "--n-train", "128", "--n-test", "128", "--out", str(tmp_path), "--no-figures", "--quiet", "--jobs", "1"]
    assert synthetic.main(args) == 0
    report = json.loads((tmp_path / "known_d.json").read_text())
    assert report["setting"] == "known_d"
    assert report["config"]["seeds"] == [0, 1] and report["config"]["train"]["steps"] == 30
    assert set(report["methods"]) == {"SAE", "SAE+ITO", "MLP-8", "SC"}
    for m in report["methods"].values():
        assert len(m["mcc"]) == 2 and m["mcc_mean"] == pytest.approx(np.mean(m["mcc"]))
        assert m["mcc_std"] == pytest.approx(np.std(m["mcc"]))
        assert m["dict_mcc_mean"] is None
        for key in ("train_flops", "inference_flops", "wall_s", "curves"):
            assert key in m
    # a second invocation finds both parts done and recomputes nothing
    before = (tmp_path / "parts" / "known_d-seed0.json").stat().st_mtime_ns
    assert synthetic.main(args) == 0
    assert (tmp_path / "parts" / "known_d-seed0.json").stat().st_mtime_ns == before
    # the same output folder with another configuration is refused, not silently mixed
    with pytest.raises(ValueError, match="different configuration"):
        synthetic.main([*args[:6], "31", *args[7:]])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--setting", "known_q"], "invalid choice"),
        (["--steps", "-5"], "non-negative integer"),
        (["--N", "4", "--K", "5"], "K"),
        (["--M", "0"], "positive integer"),
        (["--methods", "RNN"], "unknown method"),
        (["--device", "tpu"], "device"),
    ],
)
def test_cli_bad_arguments_are_clear(argv, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "simulations.synthetic", *argv, "--out", str(tmp_path), "--no-figures"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help():
    proc = subprocess.run([sys.executable, "-m", "simulations.synthetic", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--setting" in proc.stdout and "--quick" in proc.stdout


def test_parse_method():
    assert parse_method("mlp-64").hidden == 64 and parse_method("sae+ito").kind == "sae_ito"
    with pytest.raises(ValueError, match="unknown method"):
        parse_method("MLP-0")
