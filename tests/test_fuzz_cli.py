"""Fuzzing every command line: each generated argument list ends in a valid result or a one-line error (exit 2).

Never a traceback, never exit 1 (an unexpected exception), never a non-finite
number in a results file. The simulations' training is replaced by a fast
stand-in with the real result schema (training itself is covered by the
simulations' own tests): what is fuzzed here is everything around it, i.e.
argument parsing, configuration checks, memory checks, the output-directory
protocol, summaries, tables and figures.
"""

from __future__ import annotations

import io
import json
import math
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gapbound.synthetic.methods import parse_method
from gapbound.utils.cli import run_cli
from gapbound.utils.io import read_json

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

# Argument values a user (or a typo) might give: valid small ones, edge cases, absurd sizes, garbage.
INTS = st.sampled_from(["0", "1", "2", "3", "5", "8", "17", "-1", "-5", "1e3", "2.5", "abc", "", "10000000000000",
                        "0x10", " 4", "007"])
FLOATS = st.sampled_from(["0", "1e-3", "3e-4", "0.5", "-1", "nan", "inf", "-inf", "1e400", "abc", "", "1,5"])
TEXT = st.sampled_from(["cpu", "auto", "cuda", "cuda:7", "tpu", "", "known_d", "unknown", "SAE", "SAE+ITO", "MLP-8",
                        "MLP-0", "SC", "rnn", "sc", "all", "quick", "paper"])


def _fake_run_seed(cfg, seed, checkpoint_dir=None, problem=None, batches=None):
    """``run_seed``'s schema without training: deterministic numbers from the seed."""
    out = {}
    for name in cfg.methods:
        spec = parse_method(name)
        inference = ({"tol": 1e-6 if cfg.ito_tol is None else cfg.ito_tol, "converged_fraction": 1.0 if seed % 2 == 0 else 0.5,
                      "max_duality_gap": 1e-7 * (1 + seed), "iterations": 3} if spec.ito else None)
        out[name] = {"mcc": 0.5 + 0.01 * seed, "dict_mcc": 0.9 if cfg.setting == "unknown" else None,
                     "support_f1": 0.7, "train_flops": 100 * cfg.train.steps, "inference_flops": 50, "wall_s": 0.0,
                     "inference": inference, "curve": [[1, 0.1], [100 * cfg.train.steps + 50, 0.5 + 0.01 * seed]]}
    return out


def _outcome(main: Callable, argv: list[str], wrap: bool = True) -> tuple[int, str]:
    """Exit status and stderr of an entry point (argparse exits included).

    ``wrap``: the entry point is ``run_cli(main)`` (the simulations); otherwise
    ``main`` is the entry point itself and any exception escaping it is a traceback.
    """
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        try:
            rc = run_cli(main, argv) if wrap else main(argv)
        except SystemExit as exc:
            rc = exc.code
    return rc, err.getvalue()


def _assert_clean(rc: int, err: str, argv: list[str]) -> None:
    assert rc in (0, 2), f"exit {rc} for {argv}:\n{err}"
    assert "Traceback" not in err, err
    if rc == 2:
        lines = [line for line in err.strip().splitlines() if "error" in line]
        assert len(lines) == 1 and err.strip().splitlines()[-1] == lines[0], f"not one error line for {argv}:\n{err}"


def _assert_finite_results(out: Path) -> None:
    for path in out.glob("*.json"):
        doc = read_json(path)  # strict JSON: NaN/inf would not even parse
        for m in doc.get("methods", {}).values():
            assert math.isfinite(m["mcc_mean"])


def _argv(draw, flags: dict[str, tuple[st.SearchStrategy, int]]) -> list[str]:
    argv: list[str] = []
    for flag in draw(st.lists(st.sampled_from(sorted(flags)), max_size=5, unique=True)):
        values, nargs = flags[flag]
        if values is None:
            argv.append(flag)
        else:
            argv += [flag, *draw(st.lists(values, min_size=1, max_size=nargs))]
    return argv


SIZES = {"--N": (INTS, 1), "--M": (INTS, 1), "--K": (INTS, 1), "--seeds": (INTS, 3), "--n-test": (INTS, 1),
         "--batch-size": (INTS, 1), "--lr": (FLOATS, 1), "--device": (TEXT, 1), "--jobs": (INTS, 1),
         "--resume": (None, 0), "--overwrite": (None, 0), "--steps": (INTS, 1)}
SIMULATIONS = {
    "synthetic": {**SIZES, "--setting": (TEXT, 1), "--methods": (TEXT, 3), "--n-train": (INTS, 1), "--l1": (FLOATS, 1),
                  "--ito-lam": (FLOATS, 1), "--resample-every": (INTS, 1), "--quick": (None, 0)},
    "scaled": {**SIZES, "--preset": (TEXT, 1), "--hidden": (INTS, 2), "--n-samples": (INTS, 1),
               "--checkpoint-every": (INTS, 1), "--curve-points": (INTS, 1), "--ito-max-iter": (INTS, 1),
               "--threads": (INTS, 1)},
    "phase": {**{k: (v, 3) if k in ("--N", "--M", "--K") else (v, n) for k, (v, n) in SIZES.items()},
              "--setting": (TEXT, 1), "--hidden": (INTS, 1), "--n-train": (INTS, 1), "--quick": (None, 0)},
    "frontier": {"--settings": (TEXT, 2), "--seeds": (INTS, 2), "--budgets": (INTS, 3), "--widths": (INTS, 2),
                 "--steps": (INTS, 1), "--ito-lam": (FLOATS, 1), "--device": (TEXT, 1), "--quick": (None, 0),
                 "--full": (None, 0), "--resume": (None, 0), "--overwrite": (None, 0)},
}


@pytest.mark.parametrize("name", sorted(SIMULATIONS))
def test_simulation_command_lines(name, monkeypatch):
    import importlib

    module = importlib.import_module(f"simulations.{name}")
    if hasattr(module, "run_seed"):  # phase calls only run_seeds (one job per shape, seeds batched)
        monkeypatch.setattr(module, "run_seed", _fake_run_seed)
    if hasattr(module, "run_seeds"):  # the batched engine: all seeds of a setting at once
        monkeypatch.setattr(module, "run_seeds", lambda cfg, seeds, checkpoint_dir=None, **kw:
                            [_fake_run_seed(cfg, s) for s in seeds])

    @FUZZ
    @given(st.data())
    def run(data):
        argv = _argv(data.draw, SIMULATIONS[name])
        with tempfile.TemporaryDirectory() as tmp:
            full = [*argv, "--out", tmp, "--no-figures", "--quiet", "--jobs", "1"]
            rc, err = _outcome(module.main, full)
            _assert_clean(rc, err, full)
            if rc == 0:
                _assert_finite_results(Path(tmp))
                # the same command again: refused without --resume / --overwrite, accepted with them
                again = [a for a in full if a not in ("--resume", "--overwrite")]
                assert _outcome(module.main, again)[0] == 2
                rc2, err2 = _outcome(module.main, [*again, "--resume"])
                assert rc2 == 0, err2

    run()


def _valid_doc(kind: str) -> dict:
    methods = {"SAE": {"mcc": [0.5], "mcc_mean": 0.5, "mcc_std": 0.0, "dict_mcc_mean": None, "train_flops": 10,
                       "inference_flops": 5, "wall_s": 1.0, "curves": [[[1, 0.2], [15, 0.5]]]}}
    if kind == "scaled":
        return {"setting": "known_z", "config": {"data": {"N": 8, "M": 4, "K": 2}, "preset": "quick"}, "methods": methods}
    if kind == "phase":
        return {"config": {"setting": "known_z", "train": {"steps": 10}},
                "rows": [{"method": "SAE", "N": n, "M": 8, "K": 3, "seed": 0, "mcc": 0.5} for n in (16, 32)]}
    if kind == "frontier":
        return {"points": [{"setting": "known_d", "seed": 0, "method": "SC", "budget": b, "mcc": 0.5,
                            "train_flops": 0, "inference_flops": 10 * (b if b != "exact" else 50),
                            "total_flops": 10 * (b if b != "exact" else 50)} for b in (1, 3, "exact")]}
    return {"setting": "known_d", "methods": methods}


JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=5), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                    max_leaves=12)


def _mutate(doc, draw):
    """Drop a key, or replace a value by random JSON, somewhere in ``doc``."""
    if isinstance(doc, dict) and doc:
        key = draw(st.sampled_from(sorted(doc)))
        action = draw(st.sampled_from(["drop", "replace", "recurse"]))
        if action == "drop":
            return {k: v for k, v in doc.items() if k != key}
        return {**doc, key: draw(JSON) if action == "replace" else _mutate(doc[key], draw)}
    if isinstance(doc, list) and doc:
        i = draw(st.integers(0, len(doc) - 1))
        return [*doc[:i], _mutate(doc[i], draw), *doc[i + 1:]]
    return draw(JSON)


@pytest.mark.parametrize("name", ["synthetic", "scaled", "phase", "frontier"])
def test_figure_command_lines(name):
    import importlib

    module = importlib.import_module(f"paper_figures.{name}")

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.data())
    def run(data):
        with tempfile.TemporaryDirectory() as tmp:
            doc = _mutate(_valid_doc(name), data.draw) if data.draw(st.booleans()) else data.draw(JSON)
            results = Path(tmp) / ("known_d.json" if name == "synthetic" else "r.json")
            kind = data.draw(st.sampled_from(["json", "garbage", "folder", "missing"]))
            if kind == "json":
                results.write_text(json.dumps(doc))
            elif kind == "garbage":
                results.write_bytes(data.draw(st.binary(max_size=40)))
            target = Path(tmp) if (name == "synthetic" or kind == "folder") else results
            argv = [str(target), "--out", str(Path(tmp) / "figs")]
            err = io.StringIO()
            with redirect_stderr(err), redirect_stdout(io.StringIO()):
                rc = module.main(argv)
            _assert_clean(rc, err.getvalue(), argv)

    run()


def test_a_valid_document_draws_every_figure(tmp_path):
    """The generator's base documents are valid: the fuzz above starts from documents that render."""
    import importlib

    for name in ("synthetic", "scaled", "phase", "frontier"):
        results = tmp_path / name / ("known_d.json" if name == "synthetic" else "r.json")
        results.parent.mkdir()
        results.write_text(json.dumps(_valid_doc(name)))
        target = results.parent if name == "synthetic" else results
        assert importlib.import_module(f"paper_figures.{name}").main([str(target)]) == 0
        assert list((results.parent / "figures").glob("*.png"))


@FUZZ
@given(st.data())
def test_certify_command_line(data):
    from gapbound.theory.cli import main

    argv = _argv(data.draw, {"--N": (st.sampled_from(["-1", "0", "1", "4", "6", "8", "x", "1e9"]), 1),
                             "--M": (st.sampled_from(["0", "1", "3", "4", "-2", "y"]), 1),
                             "--K": (st.sampled_from(["-1", "0", "1", "2", "3", "9", "z"]), 1),
                             "--seed": (INTS, 1), "--max-partners": (INTS, 1), "--jumprelu-budget": (INTS, 1),
                             "--design": (st.sampled_from(["pairs", "exact", "bogus"]), 1), "--json": (None, 0)})
    with tempfile.TemporaryDirectory() as tmp:
        if data.draw(st.booleans()):
            path = Path(tmp) / "D.npy"
            choice = data.draw(st.sampled_from(["complex", "int", "empty", "1d", "nan", "garbage", "npz", "ok"]))
            arrays = {"complex": np.ones((4, 6), complex), "int": np.ones((4, 6), int), "empty": np.zeros((0,)),
                      "1d": np.ones(5), "nan": np.full((4, 6), np.nan), "ok": np.random.default_rng(0).normal(size=(4, 6))}
            if choice == "garbage":
                path.write_bytes(b"\x93NUMPY garbage")
            elif choice == "npz":
                np.savez(path.with_suffix(".npz"), a=np.ones(3))
                path.with_suffix(".npz").rename(path)
            else:
                np.save(path, arrays[choice])
            argv += ["--dictionary", str(path)]
        rc, err = _outcome(main, argv, wrap=False)
    _assert_clean(rc, err, argv)
