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
from gapbound.training import TrainConfig
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
    for name in ("SAE+ITO", "SC"):  # convergence of per-sample inference is carried into the results
        m = report["methods"][name]
        assert 0.0 <= m["converged_fraction"] <= 1.0 and m["max_duality_gap"] >= 0.0
        assert m["unconverged"] == (m["converged_fraction"] < 1.0)
    assert report["methods"]["SAE"]["converged_fraction"] is None
    # rerunning into a finished run needs --resume (then nothing is recomputed) ...
    with pytest.raises(ValueError, match="add --resume"):
        synthetic.main(args)
    before = (tmp_path / "parts" / "known_d-seed0.json").stat().st_mtime_ns
    assert synthetic.main([*args, "--resume"]) == 0
    assert (tmp_path / "parts" / "known_d-seed0.json").stat().st_mtime_ns == before
    # ... and another configuration is refused, naming the difference, not silently mixed
    with pytest.raises(ValueError, match=r"different configuration \(known_d.train.steps: 30 -> 31"):
        synthetic.main([*args[:6], "31", *args[7:], "--resume"])
    # --overwrite starts afresh
    assert synthetic.main([*args[:6], "31", *args[7:], "--overwrite"]) == 0
    assert json.loads((tmp_path / "known_d.json").read_text())["config"]["train"]["steps"] == 31


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--setting", "known_q"], "invalid choice"),
        (["--steps", "-5"], "non-negative integer"),
        (["--N", "4", "--K", "5"], "K"),
        (["--M", "0"], "positive integer"),
        (["--methods", "RNN"], "unknown method"),
        (["--device", "tpu"], "device"),
        (["--seeds", "0", "0"], "--seeds repeats [0]"),
        (["--methods", "SAE", "sae"], "repeat a method"),
        (["--resume", "--overwrite"], "not allowed with argument"),
    ],
)
def test_cli_bad_arguments_are_clear(argv, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "simulations.synthetic", *argv, "--out", str(tmp_path), "--no-figures"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help():
    proc = subprocess.run([sys.executable, "-m", "simulations.synthetic", "--help"], capture_output=True, text=True, timeout=300)  # imports alone take ~60 s on the loaded 2-core machine
    assert proc.returncode == 0 and "--setting" in proc.stdout and "--quick" in proc.stdout


def test_parse_method():
    assert parse_method("mlp-64").hidden == 64 and parse_method("mlp-64").base == "MLP-64"
    ito = parse_method("sae+ito")
    assert (ito.name, ito.base, ito.encoder, ito.ito) == ("SAE+ITO", "SAE", "sae", True)
    assert parse_method("SC").encoder is None and parse_method("SC").ito
    for bad in ("MLP-0", "MLP-", "SAE+", "RNN"):
        with pytest.raises(ValueError, match="unknown method"):
            parse_method(bad)
    with pytest.raises(TypeError, match="strings"):
        parse_method(3)


def test_a_method_is_one_registry_entry(monkeypatch):
    """A new method (here: the MLP's codes refined by ITO) needs only a registry entry to run end to end."""
    from gapbound.synthetic import methods

    monkeypatch.setitem(methods.METHODS, r"MLP-(\d+)\+ITO",
                        lambda m: methods.MethodSpec(f"MLP-{m[1]}+ITO", f"MLP-{m[1]}", "mlp", hidden=int(m[1]), ito=True))
    cfg = methods.ExperimentConfig(setting="known_d", data=SyntheticConfig(n_train=64, n_test=64),
                                   train=TrainConfig(steps=5, progress=False), methods=("MLP-8", "MLP-8+ITO"))
    out = methods.run_seed(cfg, 0)
    assert out["MLP-8"]["train_flops"] == out["MLP-8+ITO"]["train_flops"] > 0  # one training shared
    assert out["MLP-8+ITO"]["inference_flops"] > out["MLP-8"]["inference_flops"]
    assert out["MLP-8+ITO"]["inference"] is not None and out["MLP-8"]["inference"] is None


def test_batched_checkpoint_name_does_not_depend_on_how_the_folder_is_spelled(tmp_path, monkeypatch):
    """Resuming with ``--out DIR`` given relative or absolute must find the same stacked checkpoint."""
    from gapbound.synthetic.batched import _batched_checkpoint

    cfg = ExperimentConfig(setting="known_z", data=SyntheticConfig(), train=TrainConfig(steps=10), methods=("SAE",))
    spec = parse_method("SAE")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out" / "checkpoints").mkdir(parents=True)
    relative = _batched_checkpoint("out/checkpoints", cfg, spec, [0, 1])
    absolute = _batched_checkpoint(str(tmp_path / "out" / "checkpoints"), cfg, spec, [0, 1])
    assert relative.rsplit("/", 1)[1] == absolute.rsplit("/", 1)[1]
    assert _batched_checkpoint("out/checkpoints", cfg, spec, [0, 2]) != relative  # the seed list still matters
