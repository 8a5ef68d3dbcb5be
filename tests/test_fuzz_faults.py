"""The fault battery of issue 15, rerun: each case is one adversarial use of an entry point or the API.

Every case must end in a valid result or a one-line error (exit 2 / ValueError /
TypeError) naming the problem, never a traceback, never a silently wrong
number, never lost finished work. Run as a script to print the counts per
fault class (the table in ``docs/robustness.md``)::

    python tests/test_fuzz_faults.py          # all cases, counts per class and outcome
    python tests/test_fuzz_faults.py meter    # only the cases whose fault class or name contains "meter"

The cases start real processes (the entry points as users run them), so the
module is marked slow; the in-process fuzz suites cover the same code paths fast.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
pytestmark = pytest.mark.slow


class Traceback(AssertionError):
    """An entry point ended in a raw traceback or an unexpected exception (exit 1)."""


class SilentlyWrong(AssertionError):
    """A wrong input or state was accepted and produced a number."""


class LostWork(AssertionError):
    """Finished results were changed or removed."""


ENTRY = {"gapbound.certify": "gapbound.theory.cli", "gapbound.meter": "gapbound.meter.cli"}


def cli(module: str, *args: str) -> tuple[int, str]:
    """Exit status and stderr of ``python -m module args``, run in this process (as ``runpy`` would call it).

    The simulations' ``__main__`` is ``run_cli(main)``; the other entry points' is ``main``
    itself. An exception escaping the entry point is reported as exit 1 with its traceback.
    """
    import importlib
    import io
    import traceback
    from contextlib import redirect_stderr, redirect_stdout

    from gapbound.utils.cli import run_cli

    main = importlib.import_module(ENTRY.get(module, module)).main
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        try:
            rc = run_cli(main, list(args)) if module.startswith("simulations.") else main(list(args))
        except SystemExit as exc:
            rc = exc.code
        except BaseException:  # noqa: BLE001 - what a user would see as a traceback
            traceback.print_exc(file=err)
            rc = 1
    return rc, err.getvalue()


def refused(module: str, *args: str, match: str = "") -> str:
    """The command must end with exit 2 and one error line (containing ``match``)."""
    rc, err = cli(module, *args)
    lines = err.strip().splitlines()
    if "Traceback" in err or rc not in (0, 2):
        raise Traceback(f"exit {rc}: {lines[-1] if lines else ''}")
    if rc == 0:
        raise SilentlyWrong(f"accepted: {module} {' '.join(args)}")
    errors = [line for line in lines if "error" in line]
    assert len(errors) == 1 and lines[-1] == errors[0] and match in errors[0], err
    return errors[0]


def api_refused(f: Callable, *args, error: type = (ValueError, TypeError), **kw) -> None:
    try:
        f(*args, **kw)
    except error as err:
        assert "\n" not in str(err).strip()
        return
    except Exception as err:  # noqa: BLE001 - anything else is the fault being counted
        raise Traceback(f"{type(err).__name__}: {err}") from None
    raise SilentlyWrong(f"{getattr(f, '__name__', f)} accepted the input")


TINY_SYN = ["--setting", "known_d", "--seeds", "0", "--steps", "30", "--methods", "SAE", "SAE+ITO", "SC",
            "--n-train", "64", "--n-test", "64", "--no-figures", "--quiet", "--jobs", "1"]
TINY_PHASE = ["--N", "16", "--M", "8", "--K", "3", "--steps", "5", "--hidden", "8", "--n-train", "64", "--n-test", "64",
              "--batch-size", "32", "--no-figures", "--quiet", "--jobs", "1"]


def _finished_synthetic(tmp: Path) -> Path:
    out = tmp / "syn"
    rc, err = cli("simulations.synthetic", *TINY_SYN, "--out", str(out))
    assert rc == 0, err
    return out


def _unchanged(out: Path, action: Callable[[], None]) -> None:
    before = {p: p.read_bytes() for p in out.rglob("*.json") if p.name != "experiment.json"}
    action()
    after = {p: p.read_bytes() for p in out.rglob("*.json") if p.name != "experiment.json"}
    if before != after:
        raise LostWork(f"results in {out} changed")


# ------------------------------------------------------------------------------------------------ cases


def out_is_a_file(module: str) -> Callable[[Path], None]:
    def case(tmp: Path) -> None:
        (tmp / "f").write_text("x")
        refused(module, "--out", str(tmp / "f"), "--no-figures", match="existing file")
    return case


def figures_dir_is_a_file(module: str) -> Callable[[Path], None]:
    def case(tmp: Path) -> None:
        (tmp / "f").write_text("x")
        refused(module, "--out", str(tmp / "o"), "--figures-dir", str(tmp / "f"), match="existing file")
    return case


def bad_argument(module: str, *args: str, match: str = "") -> Callable[[Path], None]:
    def case(tmp: Path) -> None:
        refused(module, *args, "--out", str(tmp / "o"), "--no-figures", match=match)
    return case


def rerun_without_resume(tmp: Path) -> None:
    out = _finished_synthetic(tmp)
    _unchanged(out, lambda: refused("simulations.synthetic", *TINY_SYN, "--out", str(out), match="--resume"))


def other_config_with_resume(tmp: Path) -> None:
    out = _finished_synthetic(tmp)
    _unchanged(out, lambda: refused("simulations.synthetic", *TINY_SYN, "--K", "2", "--out", str(out), "--resume",
                                    match="different configuration"))


def killed_then_other_k(tmp: Path) -> None:
    """SIGKILL after the first checkpoint, rerun with another K: refused; same K with --resume: same result."""
    args = [*TINY_SYN[:5], "3000", *TINY_SYN[6:]]
    straight, killed = tmp / "straight", tmp / "killed"
    assert cli("simulations.synthetic", *args, "--out", str(straight))[0] == 0
    proc = subprocess.Popen([sys.executable, "-m", "simulations.synthetic", *args, "--out", str(killed)], cwd=REPO,
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list((killed / "checkpoints").glob("*.pt")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    refused("simulations.synthetic", *args, "--K", "2", "--out", str(killed), "--resume", match="different configuration")
    assert cli("simulations.synthetic", *args, "--out", str(killed), "--resume")[0] == 0
    a, b = (json.loads((d / "known_d.json").read_text())["methods"] for d in (straight, killed))
    if {m: v["mcc"] for m, v in a.items()} != {m: v["mcc"] for m, v in b.items()}:
        raise SilentlyWrong("resumed run differs from the uninterrupted one")


def two_writers(tmp: Path) -> None:
    out = tmp / "o"
    holder = subprocess.Popen([sys.executable, "-c", "import time\nfrom gapbound.utils.experiment import open_experiment\n"
                               f"e = open_experiment({str(out)!r}, 'synthetic', {{}})\nprint('locked', flush=True)\n"
                               "time.sleep(3600)"], cwd=REPO, env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused("simulations.synthetic", *TINY_SYN, "--out", str(out), "--resume", match="in use")
    finally:
        holder.kill()
        holder.wait()


def two_phase_runs(tmp: Path) -> None:
    out = tmp / "phase"
    assert cli("simulations.phase", *TINY_PHASE, "--out", str(out))[0] == 0
    assert cli("simulations.phase", *[a if a != "16" else "32" for a in TINY_PHASE], "--out", str(out), "--resume")[0] == 0
    rows = json.loads((out / "phase.json").read_text())["rows"]
    if {r["N"] for r in rows} != {16, 32}:
        raise LostWork("a phase cell of the first run is missing")


def damaged_file(which: str) -> Callable[[Path], None]:
    def case(tmp: Path) -> None:
        out = _finished_synthetic(tmp)
        target = {"manifest": out / "experiment.json", "part": out / "parts" / "known_d-seed0.json",
                  "checkpoint": next((out / "checkpoints").glob("*SAE*.pt"))}[which]
        target.write_bytes(target.read_bytes()[:40])
        if which == "checkpoint":
            (out / "parts" / "known_d-seed0.json").unlink()  # force the resume through the checkpoint
        refused("simulations.synthetic", *TINY_SYN, "--out", str(out), "--resume")
    return case


def unconverged_is_flagged(tmp: Path) -> None:
    from gapbound.synthetic.data import SyntheticConfig
    from gapbound.synthetic.methods import ExperimentConfig, run_seed, summarise
    from gapbound.training import TrainConfig

    base = dict(setting="known_d", data=SyntheticConfig(n_train=64, n_test=64), train=TrainConfig(steps=0, progress=False),
                methods=("SC",))
    tight = summarise([run_seed(ExperimentConfig(**base, ito_tol=1e-13, ito_max_iter=20), 0)], [0])["SC"]
    if not (tight["unconverged"] and tight["converged_fraction"] < 1):
        raise SilentlyWrong("an unreachable tolerance was reported as converged")
    default = summarise([run_seed(ExperimentConfig(**base), 0)], [0])["SC"]
    if default["unconverged"] or default["converged_fraction"] != 1.0:
        raise SilentlyWrong(f"the default tolerance is not reachable: {default['converged_fraction']}")


def api_case(name: str) -> Callable[[Path], None]:
    def case(tmp: Path) -> None:
        import gapbound
        from gapbound.synthetic.metrics import mcc

        D = np.linalg.qr(np.random.default_rng(0).normal(size=(6, 6)))[0][:, :4]
        X = np.abs(np.random.default_rng(1).normal(size=(5, 6)))
        if name == "solve complex X":
            api_refused(gapbound.solve, D, X + 1j, 0.1, error=TypeError)
        elif name == "solve complex D":
            api_refused(gapbound.solve, D + 0j, X, 0.1, error=TypeError)
        elif name == "certify complex D":
            api_refused(gapbound.certify, D.astype(complex), 2, error=TypeError)
        elif name == "mcc complex":
            api_refused(mcc, X, X + 1j, error=TypeError)
        elif name == "measure_gap complex":
            api_refused(gapbound.measure_gap, gapbound.SAE(6, 4), X=X + 1j, error=TypeError)
        elif name == "solve int X":
            Xi = np.round(X * 3).astype(int)
            try:  # refused with a clear message, or cast explicitly: both are allowed
                a = gapbound.solve(D, Xi, 0.1).codes
            except (ValueError, TypeError):
                return
            b = gapbound.solve(D, Xi.astype(float), 0.1).codes
            if not np.allclose(a.double().numpy(), b.double().numpy(), atol=1e-5):
                raise SilentlyWrong("integer input gave another result than its float cast")
        elif name == "certify int D":
            try:
                res = gapbound.certify(np.eye(4, 6, dtype=int) + np.eye(4, 6, 2, dtype=int), 2)
            except (ValueError, TypeError):
                return
            if res is None:
                raise SilentlyWrong("no result")
        elif name == "SAE k=2.5":
            api_refused(gapbound.SAE, 6, 4, activation="topk", k=2.5)
        elif name == "SAE/dictionary dtype mismatch":
            sae = gapbound.SAE(6, 4)
            try:
                rep = gapbound.measure_gap(sae, D=sae.W_dec.detach().double().T if hasattr(sae, "W_dec") else D, X=X)
            except (ValueError, TypeError):
                return
            except Exception as err:  # noqa: BLE001
                raise Traceback(f"{type(err).__name__}: {err}") from None
            assert rep is not None
        elif name == "duplicate seeds (summarise)":
            from gapbound.synthetic.methods import summarise
            api_refused(summarise, [{}, {}], [0, 0])
    return case


def figure_case(module: str, kind: str) -> Callable[[Path], None]:
    def case(tmp: Path) -> None:
        path = tmp / "r.json"
        if kind == "folder":
            path = tmp
        elif kind == "wrong schema":
            path.write_text(json.dumps({"points": 3, "rows": [1], "methods": {"x": 1}, "config": []}))
        elif kind == "garbage":
            path.write_bytes(b"\x00\xffnot json")
        refused(module, str(path), "--out", str(tmp / "figs"))
    return case


def meter_case(kind: str) -> Callable[[Path], None]:
    def case(tmp: Path) -> None:
        import gapbound

        sae_dir = tmp / "sae"
        gapbound.SAE(6, 12).save(sae_dir)
        acts = tmp / "x.npy"
        np.save(acts, np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32))
        if kind == "truncated safetensors":
            w = next(sae_dir.glob("*.safetensors"))
            w.write_bytes(w.read_bytes()[:50])
        elif kind == "garbage safetensors":
            next(sae_dir.glob("*.safetensors")).write_bytes(b"garbage" * 10)
        elif kind == "malformed cfg.json":
            (sae_dir / "cfg.json").write_text("{'d_in': 6,")
        elif kind == "npz activations":
            np.savez(tmp / "x.npz", a=np.ones((3, 6)))
            acts = tmp / "x.npz"
        elif kind == "empty npy":
            np.save(acts, np.zeros((0, 6), np.float32))
        elif kind == "complex activations":
            np.save(acts, np.ones((4, 6), complex))
        elif kind == "out is a folder":
            refused("gapbound.meter", str(sae_dir), str(acts), "--out", str(tmp))
            return
        refused("gapbound.meter", str(sae_dir), str(acts))
    return case


def certify_case(kind: str) -> Callable[[Path], None]:
    def case(tmp: Path) -> None:
        path = tmp / "D.npy"
        if kind == "garbage":
            path.write_bytes(b"\x93NUMPY\x01\x00garbage")
        elif kind == "complex":
            np.save(path, np.ones((4, 6), complex))
        elif kind == "missing":
            path = tmp / "missing.npy"
        refused("gapbound.certify", "--dictionary", str(path), "--K", "2")
    return case


def memory(module: str, *args: str) -> Callable[[Path], None]:
    def case(tmp: Path) -> None:
        t0 = time.perf_counter()
        refused(module, *args, "--out", str(tmp / "o"), "--no-figures", match="GiB")
        assert time.perf_counter() - t0 < 120, "the size was found only after work"
    return case


def ctrl_c(tmp: Path) -> None:
    from _interrupt import interrupt

    out = tmp / "o"
    args = ["simulations.synthetic", *TINY_SYN[:5], "100000", *TINY_SYN[6:], "--out", str(out)]
    code, err = interrupt(args, lambda: any((out / "checkpoints").glob("*.pt")), start_timeout=300, end_timeout=120)
    if "Traceback" in err:
        raise Traceback("KeyboardInterrupt traceback")
    assert code == 130 and "--resume" in err.strip().splitlines()[-1], err


@dataclass(frozen=True)
class Case:
    fault: str
    name: str
    run: Callable[[Path], None]


SIMS = ("simulations.synthetic", "simulations.scaled", "simulations.phase", "simulations.frontier")
FIGS = ("paper_figures.synthetic", "paper_figures.scaled", "paper_figures.phase", "paper_figures.frontier")
CASES = [
    *(Case("--out / --figures-dir an existing file", f"{m} --out file", out_is_a_file(m)) for m in SIMS),
    *(Case("--out / --figures-dir an existing file", f"{m} --figures-dir file", figures_dir_is_a_file(m)) for m in SIMS),
    Case("rerun / other settings into one --out", "rerun without --resume", rerun_without_resume),
    Case("rerun / other settings into one --out", "other K with --resume", other_config_with_resume),
    Case("rerun / other settings into one --out", "SIGKILL, rerun with other K", killed_then_other_k),
    Case("concurrent writers", "two processes, one --out", two_writers),
    Case("concurrent writers", "two phase runs, one --out", two_phase_runs),
    *(Case("damaged files on resume", f"damaged {w}", damaged_file(w)) for w in ("manifest", "part", "checkpoint")),
    *(Case("duplicate seeds", f"{m} --seeds 0 0", bad_argument(m, "--seeds", "0", "0", match="repeats")) for m in SIMS),
    Case("duplicate seeds", "summarise([..], [0, 0])", api_case("duplicate seeds (summarise)")),
    *(Case("bad argument values", f"{m} {' '.join(a)}", bad_argument(m, *a)) for m, a in (
        ("simulations.synthetic", ("--lr", "nan")), ("simulations.synthetic", ("--N", "4", "--K", "5")),
        ("simulations.scaled", ("--device", "tpu")), ("simulations.phase", ("--K", "0")),
        ("simulations.frontier", ("--ito-lam", "-1")), ("simulations.synthetic", ("--methods", "RNN")))),
    *(Case("sizes that cannot fit in memory", f"{m} {' '.join(a)}", memory(m, *a)) for m, a in (
        ("simulations.synthetic", ("--n-train", "100000000000")), ("simulations.scaled", ("--n-test", "10000000000")),
        ("simulations.phase", ("--N", "100000000", "--M", "8", "--K", "3")))),
    Case("unconverged inference", "fixed unreachable tol flagged; default reachable", unconverged_is_flagged),
    *(Case("complex / integer / half input to the API", n, api_case(n)) for n in (
        "solve complex X", "solve complex D", "certify complex D", "mcc complex", "measure_gap complex", "solve int X",
        "certify int D", "SAE k=2.5", "SAE/dictionary dtype mismatch")),
    *(Case("figure scripts given the wrong file", f"{m} {k}", figure_case(m, k))
      for m in FIGS for k in ("folder", "wrong schema", "garbage", "missing")),
    *(Case("meter given broken files", f"meter {k}", meter_case(k)) for k in (
        "truncated safetensors", "garbage safetensors", "malformed cfg.json", "npz activations", "empty npy",
        "complex activations", "out is a folder")),
    *(Case("certify given broken files", f"certify {k}", certify_case(k)) for k in ("garbage", "complex", "missing")),
    Case("Ctrl-C", "SIGINT during training", ctrl_c),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault(case, tmp_path):
    case.run(tmp_path)


def main(only: list[str]) -> int:
    """Run every case (or those whose fault class or name contains one of ``only``); print the counts per class."""
    counts: dict[str, Counter] = {}
    failures = []
    for case in CASES:
        if only and not any(o in case.fault or o in case.name for o in only):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            try:
                case.run(Path(tmp))
                outcome = "handled"
            except (Traceback, SilentlyWrong, LostWork) as err:
                outcome = type(err).__name__
                failures.append(f"{case.name}: {outcome}: {err}")
            except Exception as err:  # noqa: BLE001 - a failed expectation of the case itself
                outcome = "Traceback"
                failures.append(f"{case.name}: {type(err).__name__}: {str(err).strip().splitlines()[-1:]}")
        counts.setdefault(case.fault, Counter())[outcome] += 1
        print(f"{outcome:>13}  {case.name}", file=sys.stderr, flush=True)
    print("| fault class | cases | handled | traceback | silently wrong | lost work |\n|---|---|---|---|---|---|")
    for fault, c in counts.items():
        print(f"| {fault} | {sum(c.values())} | {c['handled']} | {c['Traceback']} | {c['SilentlyWrong']} | {c['LostWork']} |")
    total = sum(counts.values(), Counter())
    print(f"| **all** | {sum(total.values())} | {total['handled']} | {total['Traceback']} | {total['SilentlyWrong']} "
          f"| {total['LostWork']} |")
    print("\n".join(failures), file=sys.stderr)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main(sys.argv[1:]))
