"""The language-model experiment end to end on a tiny random GPT-2 (harvest, shard, train, evaluate, score, plot)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from gapbound.inference import objective, solve
from gapbound.lm import training as lt
from gapbound.models import Dictionary
from gapbound.models.coding import SparseCoding
from gapbound.training import l1_to_lam
from simulations import gpt2 as sim

from test_harvest_fixtures import make_tiny_gpt2, write_text

TINY = ["--layer", "1", "--context-length", "16", "--steps", "40", "--lca-steps", "20", "--n-latents", "8", "--l0", "4", "8",
        "--quiet", "--no-figures", "--threads", "1"]


@pytest.fixture(scope="module")
def tiny_preset(monkeypatch_module):
    from dataclasses import replace

    q = sim.PRESETS["quick"]
    small = replace(q, harvest=replace(q.harvest, contexts_per_shard=6),
                    train=replace(q.train, expansion=2, mlp_hidden_mult=2, batch_size=64, lca_batch_size=32,
                                  window=8, gap_samples=64, eval_batch=256, dead_steps=5, aux_k=16))
    monkeypatch_module.setitem(sim.PRESETS, "quick", small)
    return small


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_preset):
    model = make_tiny_gpt2(tmp_path_factory.mktemp("tiny_gpt2"))
    text = write_text(tmp_path_factory.mktemp("text") / "corpus.txt", repeats=60)
    out = tmp_path_factory.mktemp("out") / "run"
    argv = ["--model", str(model), "--text", str(text), "--out", str(out), "--quick", *TINY]
    assert sim.main(argv) == 0
    return argv, out, json.loads((out / "gpt2.json").read_text())


def test_results_schema_and_sanity(run):
    _, _, report = run
    assert set(report["frontier"]) == {"SAE", "MLP", "LCA"}
    assert report["store"]["d_model"] == 32 and report["store"]["layer"] == 1
    splits = report["splits"]
    assert not set(splits["train"]) & set(splits["test"]) and set(splits["explain"]) <= set(splits["train"])
    for key, m in report["methods"].items():
        assert 0 <= m["nmse"] < 1.5, key
        assert 0 <= m["dead_latents"] <= m["n_latents"] == 64
        if not key.startswith("LCA"):
            assert m["l0"] == pytest.approx(m["k"])  # TopK: the L0 target exactly
        assert len(m["f1"]) == m["autointerp"]["scored"] <= 8
        assert 0 < m["train_cpu_seconds"] and 0 < m["eval_cpu_seconds"]
        assert all(0 <= f <= 1 for f in m["f1"])
        if len(m["f1"]) > 1:
            assert m["f1_ci"][0] <= m["f1_mean"] <= m["f1_ci"][1]
        gap = m["gap"]
        assert 0 <= gap["gap_mean"] <= gap["gap_upper_mean"] + 1e-9
        assert gap["lasso_opt_mean"] <= gap["lasso_sae_mean"]
    assert [p["k"] for p in report["frontier"]["SAE"]] == [4, 8]
    assert set(report["matched_l0"]["methods"]) == {"SAE", "MLP", "LCA"} and report["matched_l0"]["k"] == 4


def test_rerun_needs_resume_and_reuses_finished_parts(run, monkeypatch):
    argv, out, report = run
    with pytest.raises(ValueError, match="--resume"):
        sim.main(argv)
    monkeypatch.setattr(sim, "run_method", lambda *a, **k: pytest.fail("a finished (method, k) was retrained"))
    assert sim.main([*argv, "--resume"]) == 0
    assert json.loads((out / "gpt2.json").read_text())["methods"] == report["methods"]
    with pytest.raises(ValueError, match="n_latents"):
        sim.main([*argv, "--resume", "--n-latents", "3"])


def test_figure_renders(run, tmp_path):
    from paper_figures.gpt2 import render

    _, out, _ = run
    paths = render(out / "gpt2.json", tmp_path)
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)


def test_lca_codes_solve_the_training_objective():
    gen = torch.Generator().manual_seed(0)
    D = Dictionary(16, 40)
    model = SparseCoding(D, inner_iter=2000, method="lca")
    X = torch.randn(32, 16, generator=gen)
    loss, codes = model.loss((X, None, None), l1=0.05)
    assert float(model.lam) == pytest.approx(l1_to_lam(0.05, 16))
    best = solve(D.weight.detach(), X, float(model.lam), method="fista", max_iter=5000, tol=1e-9).codes
    W = D.weight.detach()
    assert (codes >= 0).all()
    np.testing.assert_allclose(objective(W, X, codes, float(model.lam)), objective(W, X, best, float(model.lam)), rtol=1e-3)
    np.testing.assert_allclose(model.encode(X), codes, atol=1e-6)  # encode uses the lam of the last step


def test_lca_sparsity_target_moves_lam_towards_the_target_l0():
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(256, 16, generator=gen)
    for target in (2, 10):
        model = SparseCoding(Dictionary(16, 64), inner_iter=200, method="lca", target_l0=target, gain=0.5)
        for _ in range(60):
            _, codes = model.loss((X, None, None), l1=0.01)
        l0 = float((codes > 0).sum(1).float().mean())
        assert abs(l0 - target) / target < 0.25, (target, l0)


def test_topk_auxk_revives_dead_latents_and_only_them():
    from gapbound.lm.objectives import TopKAutoencoder
    from gapbound.models import SAE

    gen = torch.Generator().manual_seed(2)
    X = torch.randn(128, 8, generator=gen)
    model = TopKAutoencoder(SAE(8, 32, activation="topk", k=2), Dictionary(8, 32), k=2, aux_k=4, dead_steps=1)
    model.since_fired.fill_(5)
    model.since_fired[:16] = 0  # latents 0-15 alive, 16-31 dead
    with torch.no_grad():
        model.encoder.linear.bias[:16] = 100.0  # alive latents always win the top k; dead ones stay positive somewhere
    loss, codes = model.loss((X, None, None), 0.0)
    assert (codes[:, 16:] == 0).all()
    loss.backward()
    grad = model.encoder.linear.weight.grad
    assert grad[16:].abs().sum() > 0  # the AuxK term reaches the dead latents
    mse_only = TopKAutoencoder(SAE(8, 32, activation="topk", k=2), Dictionary(8, 32), k=2, aux_coef=0.0)
    assert mse_only.loss((X, None, None), 0.0)[0] > 0


def test_bad_configuration_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="method must be one of"):
        lt.build_model("ICA", 8, 2, lt.LMConfig())
    with pytest.raises(ValueError, match="expansion must be >= 1"):
        lt.LMConfig(expansion=0)
    with pytest.raises(ValueError, match="registered solver"):
        SparseCoding(Dictionary(4, 8), method="annealing")
    with pytest.raises(ValueError, match="no lam yet"):
        SparseCoding(Dictionary(4, 8)).encode(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="at least 2 shards"):
        sim.split_shards(1, 0.15)
    from gapbound.utils.cli import run_cli

    argv = ["--model", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--quiet", "--quick", "--no-figures"]
    assert run_cli(sim.main, argv) == 2


def test_trained_sae_exports_to_saelens_reading_raw_activations(tmp_path):
    """The SAE leaves training with its centring/scaling folded in: SAELens encodes raw activations to the trained codes."""
    sae_lens = pytest.importorskip("sae_lens")
    from gapbound.models import SAE

    torch.manual_seed(5)
    model = lt.build_model("SAE", 12, 3, lt.LMConfig(expansion=2, seed=5))
    with torch.no_grad():
        model.encoder.linear.bias.normal_()
    norm = lt.Normaliser(torch.randn(12) * 3, 0.25)  # trained on (x - mean) * 0.25
    x = 4 * torch.randn(64, 12) + norm.mean
    path = lt.raw_sae(model, norm, hook_name="blocks.1.hook_resid_post", model_name="tiny", context_size=16).save(tmp_path / "s")
    theirs = sae_lens.SAE.load_from_disk(path)
    assert theirs.cfg.metadata.hook_name == "blocks.1.hook_resid_post"
    with torch.no_grad():
        want = model.encode(norm(x))
        got = theirs.encode(x)
        assert torch.equal(got > 0, want > 0)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        raw_recon = model.dictionary(want) / norm.scale + norm.mean
        torch.testing.assert_close(theirs.decode(got), raw_recon, atol=1e-4, rtol=1e-5)
        assert torch.equal(SAE.load(path).encode(x), got)  # gapbound reads its own export as SAELens does
    with pytest.raises(TypeError, match="only the SAE method"):
        lt.raw_sae(lt.build_model("MLP", 12, 3, lt.LMConfig(expansion=2)), norm)


def test_simulation_saves_each_sae_for_saelens(run):
    _, out, report = run
    for k in (4, 8):
        path = out / "saes" / f"SAE-k{k}"
        cfg = json.loads((path / "cfg.json").read_text())
        assert cfg["architecture"] == "topk" and cfg["k"] == k and cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_post"
        assert report["methods"][f"SAE-k{k}"]["saelens_dir"] == str(path)


def test_matched_nmse_reads_each_sweep_at_every_reference():
    def part(method, k, nmse, f1):
        return {"method": method, "result": {"k": k, "l0": float(k), "nmse": nmse, "f1_mean": f1, "f1_ci": [f1, f1],
                                             "dead_fraction": 0.0, "dead_latents": 0, "accuracy_mean": 0.5,
                                             "accuracy_ci": [0.5, 0.5], "f1": [f1], "gap": {"gap_rel": 0.1, "certified": True}}}
    parts = {f"{m}-k{k}": part(m, k, n, f) for m, k, n, f in [
        ("SAE", 16, 0.30, 0.50), ("SAE", 32, 0.20, 0.40), ("MLP", 16, 0.40, 0.70), ("MLP", 32, 0.25, 0.60),
        ("MLP", 64, 0.15, 0.50), ("LCA", 32, 0.50, 0.45), ("LCA", 64, 0.35, 0.40)]}
    s = sim.summarise(parts, 32)
    mlp_at_sae = s["matched_nmse"]["methods"]["MLP"]
    assert s["matched_nmse"]["target_nmse"] == 0.20
    assert mlp_at_sae["f1_mean"] == pytest.approx(0.55) and mlp_at_sae["l0"] == pytest.approx(48.0)
    assert s["matched_nmse"]["methods"]["LCA"]["f1_mean"] is None  # 0.20 is outside LCA's NMSE range
    at_mlp = s["matched_nmse_by_reference"]["MLP"]["methods"]
    assert at_mlp["SAE"]["f1_mean"] == pytest.approx(0.45) and at_mlp["MLP"]["f1_mean"] == pytest.approx(0.60)
    assert "matched NMSE (LCA at k=32: 0.500)" in sim.format_table(s)
    assert s["matched_l0"]["methods"]["MLP"]["f1_minus_sae"] == pytest.approx(0.2)


def test_f1_difference_interval_covers_the_difference_of_means():
    gen = np.random.default_rng(0)
    a, b = gen.uniform(0.3, 0.9, 200), gen.uniform(0.2, 0.8, 200)
    lo, hi = lt.mean_diff_ci(a, b)
    assert lo < a.mean() - b.mean() < hi and 0 < lo  # a difference of 0.1 with n = 200 is resolved
    lo, hi = lt.mean_diff_ci(a, a[::-1].copy())
    assert lo < 0 < hi


def test_merge_from_adopts_parts_of_the_same_configuration_only(run, tmp_path, monkeypatch):
    argv, out, report = run
    monkeypatch.setattr(sim, "run_method", lambda *a, **k: pytest.fail("a part available to merge was retrained"))
    merged = tmp_path / "merged"
    base = [a if a != str(out) else str(merged) for a in argv]
    assert sim.main([*base, "--store", str(out / "store"), "--merge-from", str(out)]) == 0
    assert json.loads((merged / "gpt2.json").read_text())["methods"] == report["methods"]
    with pytest.raises(ValueError, match="another configuration"):
        sim.main([*base, "--out", str(tmp_path / "other"), "--store", str(out / "store"), "--merge-from", str(out),
                  "--n-latents", "3"])


def test_carry_from_adopts_only_parts_whose_method_reads_none_of_the_changed_settings(run, tmp_path, monkeypatch):
    argv, out, report = run
    calls = []
    real = sim.run_method

    def spy(method, k, *a, **kw):
        calls.append((method, k))
        return real(method, k, *a, **kw)

    monkeypatch.setattr(sim, "run_method", spy)
    carried = tmp_path / "carried"
    base = [a if a != str(out) else str(carried) for a in argv]
    assert sim.main([*base, "--store", str(out / "store"), "--carry-from", str(out), "--lca-steps", "10"]) == 0
    assert sorted(calls) == [("LCA", 4), ("LCA", 8)]  # lca_steps changed: only LCA is retrained
    new = json.loads((carried / "gpt2.json").read_text())["methods"]
    for key in ("SAE-k4", "SAE-k8", "MLP-k4", "MLP-k8"):
        assert new[key] == report["methods"][key]
        part = json.loads((carried / "parts" / f"{key}.json").read_text())
        assert part["carried_from"]["differs_in"] == ["lca_steps"] and part["carried_from"]["out"] == str(out)
    assert sorted(json.loads((carried / "gpt2.json").read_text())["carried_from"]) == ["MLP-k4", "MLP-k8", "SAE-k4", "SAE-k8"]
    assert new["LCA-k4"]["steps"] == 10
    with pytest.raises(ValueError, match="not only training settings"):
        sim.main([*base, "--out", str(tmp_path / "other"), "--store", str(out / "store"), "--carry-from", str(out),
                  "--context-length", "12"])
    with pytest.raises(ValueError, match="no readable experiment.json"):
        sim.main([*base, "--out", str(tmp_path / "third"), "--carry-from", str(tmp_path)])


def test_mlp_dead_steps_sets_the_mlps_auxk_window_only():
    cfg = lt.LMConfig(expansion=2, mlp_hidden_mult=2, dead_steps=100, mlp_dead_steps=20)
    assert lt.build_model("MLP", 8, 2, cfg).dead_steps == 20
    assert lt.build_model("SAE", 8, 2, cfg).dead_steps == 100
    assert lt.build_model("MLP", 8, 2, lt.LMConfig(expansion=2, mlp_hidden_mult=2, dead_steps=100)).dead_steps == 100
    assert "mlp_dead_steps" in lt.method_fields("MLP")
    assert "mlp_dead_steps" not in lt.method_fields("SAE") | lt.method_fields("LCA")
    assert "dead_steps" in lt.method_fields("SAE") and "dead_steps" not in lt.method_fields("LCA")
    with pytest.raises(ValueError, match="mlp_dead_steps"):
        lt.LMConfig(mlp_dead_steps=0)
