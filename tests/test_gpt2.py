"""The language-model experiment end to end on a tiny random GPT-2 (harvest, shard, train, evaluate, score, plot)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from gapbound.lm import training as lt
from gapbound.models.encoders import Dictionary
from gapbound.inference import objective, solve
from simulations import gpt2 as sim

from test_harvest_fixtures import make_tiny_gpt2, write_text

TINY = ["--context-length", "16", "--contexts-per-shard", "6", "--steps", "40", "--batch-size", "64",
        "--expansion", "2", "--mlp-hidden-mult", "2", "--lca-iters", "10", "--n-latents", "8", "--window", "8", "--quiet", "--no-figures"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    model = make_tiny_gpt2(tmp_path_factory.mktemp("tiny_gpt2"))
    text = write_text(tmp_path_factory.mktemp("text") / "corpus.txt", repeats=60)
    out = tmp_path_factory.mktemp("out")
    argv = ["--model", str(model), "--text", str(text), "--out", str(out), "--quick", *TINY]
    assert sim.main(argv) == 0
    return argv, out, json.loads((out / "gpt2.json").read_text())


def test_results_schema_and_sanity(run):
    _, _, report = run
    assert set(report["methods"]) == {"SAE", "MLP", "LCA"}
    assert report["config"]["harvest"]["d_model"] == 32 and report["config"]["harvest"]["layer"] == 1
    splits = report["config"]["splits"]
    assert not set(splits["train"]) & set(splits["test"]) and set(splits["explain"]) <= set(splits["train"])
    for name, m in report["methods"].items():
        assert 0 <= m["nmse"] < 1.5, name
        assert 0 <= m["l0"] <= m["n_latents"] == 64
        assert 0 <= m["dead_latents"] <= 64
        assert len(m["f1"]) == m["autointerp"]["scored"] <= 8
        assert all(0 <= f <= 1 for f in m["f1"])
        if m["f1"]:
            assert m["f1_mean"] == pytest.approx(np.mean(m["f1"]))
        gap = m["gap"]
        assert 0 <= gap["gap_mean"] <= gap["gap_upper_mean"] + 1e-9
        assert gap["lasso_opt_mean"] <= gap["lasso_sae_mean"] and gap["lam"] == pytest.approx(m["l1"] * 32 / 2)


def test_rerun_reuses_finished_methods_and_store(run, monkeypatch):
    argv, out, report = run
    monkeypatch.setattr(sim, "run_method", lambda *a, **k: pytest.fail("a finished method was retrained"))
    monkeypatch.setattr(sim, "harvest", lambda cfg, d, **k: __import__("gapbound.lm.shards").lm.shards.ShardStore.open(d))
    assert sim.main(argv) == 0
    assert json.loads((out / "gpt2.json").read_text())["methods"] == report["methods"]
    with pytest.raises(ValueError, match="different settings"):
        sim.main([*argv, "--n-latents", "3"])


def test_figure_renders(run, tmp_path):
    from paper_figures.gpt2 import render

    _, out, _ = run
    paths = render(out / "gpt2.json", tmp_path)
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)


def test_lca_codes_solve_the_training_objective():
    torch.manual_seed(0)
    D = Dictionary(16, 40)
    model = lt.InferredCoding(D, l1=0.05, method="lca", max_iter=2000)
    X = torch.randn(32, 16)
    codes = model.encode(X)
    best = solve(D.weight.detach(), X, model.lam, method="fista", max_iter=5000, tol=1e-9).codes
    W = D.weight.detach()
    assert model.lam == pytest.approx(0.05 * 16 / 2)
    assert (codes >= 0).all()
    np.testing.assert_allclose(objective(W, X, codes, model.lam), objective(W, X, best, model.lam), rtol=1e-3)


def test_bad_configuration_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="method must be one of"):
        lt.build_model("ICA", 8, lt.QUICK)
    with pytest.raises(ValueError, match="expansion must be >= 1"):
        lt.LMConfig(expansion=0)
    with pytest.raises(ValueError, match="registered solver"):
        lt.InferredCoding(Dictionary(4, 8), l1=0.1, method="annealing")
    with pytest.raises(ValueError, match="at least 2 shards"):
        sim.split_shards(1, 0.15)
    assert sim.main(["--model", str(tmp_path / "missing"), "--out", str(tmp_path), "--quiet"]) == 2
