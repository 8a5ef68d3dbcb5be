"""The experiment-directory protocol, atomic writes and the command-line error conventions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gapbound.utils.cli import RESUME_HINT, run_cli
from gapbound.utils.experiment import ExperimentError, config_diff, fingerprint, open_experiment
from gapbound.utils.io import atomic_write, atomic_write_json, read_json

REPO = Path(__file__).resolve().parents[1]
CFG = {"data": {"N": 16, "K": 3}, "lr": 1e-3}


def _run(out: Path, config: dict = CFG, **kw):
    return open_experiment(out, "demo", config, outputs=("demo.json",), **kw)


def test_new_run_resume_overwrite_and_refusals(tmp_path):
    out = tmp_path / "out"
    with _run(out) as exp:
        assert not exp.resumed and not exp.has_part("seed0")
        exp.write_part("seed0", {"value": 1.5})
        exp.write_result("demo.json", {"total": 1.5})
        exp.finish()
    manifest = read_json(out / "experiment.json")
    assert manifest["status"] == "finished" and manifest["fingerprint"] == fingerprint(CFG)

    with pytest.raises(ExperimentError, match="finished run with this configuration; add --resume"):
        _run(out)
    with _run(out, resume=True) as exp:  # resumed: finished parts are kept and more may be added
        assert exp.resumed and exp.has_part("seed0") and exp.read_part("seed0")["value"] == 1.5
        exp.write_part("seed1", {"value": 2.5})
        assert sorted(exp.parts()) == ["seed0", "seed1"]

    other = {"data": {"N": 16, "K": 4}, "lr": 1e-3}
    for kw in ({}, {"resume": True}):
        with pytest.raises(ExperimentError, match=r"different configuration \(data.K: 3 -> 4\).*--overwrite"):
            _run(out, other, **kw)
    assert read_json(out / "demo.json")["total"] == 1.5  # refusals change nothing

    (out / "notes.txt").write_text("mine")
    with _run(out, other, overwrite=True) as exp:
        assert exp.parts() == {} and not (out / "demo.json").exists()
    assert (out / "notes.txt").read_text() == "mine"  # only the protocol's own files are removed


def test_out_must_be_a_usable_folder(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ExperimentError, match="is an existing file"):
        _run(f)
    with pytest.raises(ExperimentError, match="exclude each other"):
        _run(tmp_path / "o", resume=True, overwrite=True)
    legacy = tmp_path / "legacy"
    (legacy / "parts").mkdir(parents=True)
    with pytest.raises(ExperimentError, match="did not write"):
        _run(legacy, resume=True)
    (tmp_path / "other").mkdir()
    with open_experiment(tmp_path / "other", "phase", CFG):
        pass
    with pytest.raises(ExperimentError, match="holds a 'phase' run"):
        _run(tmp_path / "other", resume=True)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "experiment.json").write_text("{not json")
    with pytest.raises(ExperimentError, match="damaged"):
        _run(damaged, resume=True)


def test_parts_of_another_configuration_are_refused(tmp_path):
    with _run(tmp_path) as exp:
        exp.write_part("seed0", {"value": 1})
    part = tmp_path / "parts" / "seed0.json"
    part.write_text(json.dumps({"value": 1, "fingerprint": "0" * 16}))  # e.g. copied in from another run
    with _run(tmp_path, resume=True) as exp, pytest.raises(ExperimentError, match="not written by this configuration"):
        exp.has_part("seed0")


def test_the_lock_refuses_a_second_writer_and_is_released(tmp_path):
    with _run(tmp_path):
        with pytest.raises(ExperimentError, match="in use by another process"):
            _run(tmp_path, resume=True)
    with _run(tmp_path, resume=True):  # released on exit
        pass


def test_a_second_process_is_refused_while_the_first_runs(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from gapbound.utils.experiment import open_experiment
        with open_experiment({str(tmp_path)!r}, "synthetic", {{}}):
            print("locked", flush=True); time.sleep(3600)
        """)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = subprocess.run([sys.executable, "-m", "simulations.synthetic", "--setting", "known_d", "--seeds", "0",
                               "--steps", "1", "--out", str(tmp_path), "--resume", "--no-figures", "--quiet"],
                              capture_output=True, text=True, cwd=REPO, timeout=600)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2 and "in use by another process" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_stale_temporaries_of_killed_writes_are_removed(tmp_path):
    with _run(tmp_path):
        pass
    stale = [tmp_path / ".demo.json.abc.tmp", tmp_path / "parts" / ".seed0.json.x.tmp"]
    for p in stale:
        p.parent.mkdir(exist_ok=True)
        p.write_text("half")
    with _run(tmp_path, resume=True):
        assert not any(p.exists() for p in stale)


def test_atomic_write_keeps_the_old_file_and_leaves_no_temporary_on_failure(tmp_path):
    target = tmp_path / "r.json"
    atomic_write_json(target, {"a": 1})

    def fail(tmp: str) -> None:
        Path(tmp).write_text("half written")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(target, fail)
    assert read_json(target) == {"a": 1} and os.listdir(tmp_path) == ["r.json"]
    with pytest.raises(TypeError, match="not JSON serializable"):
        atomic_write_json(target, {"a": object()})
    assert read_json(target) == {"a": 1} and os.listdir(tmp_path) == ["r.json"]
    atomic_write_json(target, {"nan": float("nan")})  # non-finite floats become null, strict JSON
    assert read_json(target) == {"nan": None}


def test_fingerprint_and_diff():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 1.5})
    assert config_diff({"a": {"b": 1}, "c": 2}, {"a": {"b": 2}, "c": 2}) == "a.b: 1 -> 2"
    assert "(+2 more)" in config_diff({f"k{i}": i for i in range(6)}, {f"k{i}": -i - 1 for i in range(6)})


@pytest.mark.parametrize(
    "exc, code, text",
    [
        (ValueError("--N must be >= 1\nsecond line"), 2, "error: --N must be >= 1"),
        (FileNotFoundError(2, "No such file or directory", "x.json"), 2, "error: No such file or directory: x.json"),
        (MemoryError("needs 9 GiB"), 2, "error: out of memory (needs 9 GiB); use smaller sizes or fewer --jobs"),
        (KeyboardInterrupt(), 130, f"interrupted: {RESUME_HINT}"),
        (RuntimeError("bug"), 1, "internal error: RuntimeError: bug (rerun with --debug for the traceback)"),
    ],
)
def test_run_cli_ends_every_error_in_one_line(exc, code, text, capsys):
    def main(argv):
        raise exc

    assert run_cli(main, []) == code
    err = capsys.readouterr().err
    assert err.strip() == text
    with pytest.raises(type(exc)):
        run_cli(main, ["--debug"])


def test_ctrl_c_in_a_simulation_ends_cleanly_with_the_resume_hint(tmp_path):
    """SIGINT during training: one line saying how to resume, exit 130, the run left resumable."""
    from _interrupt import interrupt

    args = ["simulations.synthetic", "--setting", "known_d", "--seeds", "0", "--steps", "20000", "--methods", "SAE",
            "--n-train", "64", "--n-test", "64", "--out", str(tmp_path), "--no-figures", "--quiet", "--jobs", "1"]
    code, err = interrupt(args, lambda: any((tmp_path / "checkpoints").glob("*.pt")))
    assert code == 130, err
    assert err.strip().splitlines()[-1] == f"interrupted: {RESUME_HINT}" and "Traceback" not in err
    assert read_json(tmp_path / "experiment.json")["status"] == "running"
