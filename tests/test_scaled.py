"""simulations.scaled: streamed data determinism, resume after SIGKILL, CLI errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from gapbound.utils.cli import run_cli
from gapbound.synthetic.data import CodeStream, make_problem
from gapbound.utils.io import read_json
from simulations import scaled

REPO = Path(__file__).resolve().parents[1]
# A config small enough for a test but with every moving part: two trained
# encoders, ITO, SC, several checkpoints per model.
TINY = ["--N", "60", "--M", "20", "--K", "3", "--steps", "80", "--n-samples", "2048", "--n-test", "64",
        "--hidden", "16", "--batch-size", "256", "--checkpoint-every", "10", "--curve-points", "2",
        "--ito-max-iter", "30", "--quiet", "--no-figures", "--jobs", "1"]


def _stream(args: list[str], seed: int) -> CodeStream:
    cfg = scaled.config_from_args(scaled.build_parser().parse_args(args))
    exp = cfg.experiment
    problem = make_problem(replace(exp.data, seed=seed))
    return CodeStream(problem.D, exp.data.K, exp.batch_size, seed=seed, n_samples=cfg.n_samples)


def test_stream_is_a_pure_function_of_seed_and_index():
    a, b = _stream(TINY, 3), _stream(TINY, 3)
    for i in (0, 3, 7, 8, 9):  # 8 batches of 256 make one pass over 2048 samples: 8 wraps to 0
        xa, sa = a.batch(i)
        xb, sb = b.batch(i)
        assert torch.equal(xa, xb) and torch.equal(sa, sb)
    assert torch.equal(a.batch(8)[1], a.batch(0)[1])
    assert not torch.equal(a.batch(1)[1], a.batch(0)[1])
    assert not torch.equal(_stream(TINY, 4).batch(0)[1], a.batch(0)[1])
    S = a.batch(5)[1]
    assert ((S > 0).sum(1) == 3).all() and torch.allclose(a.batch(5)[0], S @ a.D.T)


def test_presets_resolve_to_the_paper_protocol():
    cfg = scaled.config_from_args(scaled.build_parser().parse_args(["--preset", "paper"]))
    exp = cfg.experiment
    assert (exp.data.N, exp.data.M, exp.data.K) == (1000, 200, 20)
    assert (cfg.n_samples, exp.batch_size, exp.train.steps, exp.setting) == (500_000, 1024, 20_000, "known_z")
    assert exp.methods == ("SAE", "SAE+ITO", "MLP-32", "MLP-256", "MLP-1024", "SC")
    quick = scaled.config_from_args(scaled.build_parser().parse_args([]))
    assert quick.preset == "quick" and quick.experiment.train.steps < exp.train.steps


def _methods(out: Path) -> dict:
    report = read_json(out / "scaled.json")
    return {name: (m["mcc"], m["train_flops"], m["inference_flops"], m["curves"]) for name, m in report["methods"].items()}


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, capsys):
    straight = tmp_path / "straight"
    assert run_cli(scaled.main, [*TINY, "--out", str(straight)]) == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "simulations.scaled", *TINY, "--out", str(killed)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (found := list((killed / "checkpoints").glob("known_z-SAE-seed0-*.pt"))) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    first = found[0] if found else killed / "checkpoints" / "missing"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert first.exists() and not (killed / "scaled.json").exists()
    assert torch.load(first, weights_only=False)["step"] < 80

    assert run_cli(scaled.main, [*TINY, "--out", str(killed), "--resume"]) == 0
    assert _methods(killed) == _methods(straight)

    # Resuming with other settings is refused rather than silently mixing runs, and so is a
    # rerun without --resume; neither touches the finished results.
    before = (killed / "scaled.json").read_bytes()
    assert run_cli(scaled.main, [*[a if a != "80" else "90" for a in TINY], "--out", str(killed), "--resume"]) == 2
    assert "different configuration (train.steps: 80 -> 90)" in capsys.readouterr().err
    assert run_cli(scaled.main, [*TINY, "--out", str(killed)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (killed / "scaled.json").read_bytes() == before


def test_help_lists_presets(capsys):
    with pytest.raises(SystemExit) as exc:
        scaled.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--preset" in out and "--resume" in out and "--overwrite" in out and "paper" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--N", "-5"], "expected a positive integer"),
        (["--steps", "-1"], "expected a positive integer"),
        (["--preset", "huge"], "invalid choice: 'huge'"),
        (["--lr", "0"], "expected a positive number"),
        (["--hidden", "abc"], "expected a positive integer"),
    ],
)
def test_bad_arguments_are_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        scaled.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--N", "10", "--K", "20"], "K (active sources per sample) must be <= N=10"),
        (["--batch-size", "4096", "--n-samples", "1024"], "n_samples must be >= 4096"),
        (["--device", "tpu"], "device must be"),
        (["--seeds", "1", "1"], "seeds repeats [1]"),
        (["--n-test", "2000000000"], "GiB but only"),
    ],
)
def test_invalid_configurations_give_one_line_errors(argv, message, tmp_path, capsys):
    assert run_cli(scaled.main, [*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "scaled.json").exists()
