"""Offline text sources, hook names, BOS, attn_z and --from-sae (issue 16's corpus, issue 18's harvest bullet)."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from gapbound.lm import corpus, harvest as hv
from gapbound.lm.harvest_cli import main as harvest_main
from gapbound.lm.models import hook_name, parse_hook_name

from test_harvest_fixtures import tiny  # noqa: F401 (a fixture)



def test_hook_names_round_trip_and_bad_names_are_refused():
    for layer, site in itertools.product((0, 11), hv.SITES):
        assert parse_hook_name(hook_name(layer, site)) == (layer, site)
    assert parse_hook_name("blocks.3.attn.hook_z") == (3, "attn_z")
    for bad in ("blocks.3.hook_resid_mid", "blocks.x.hook_resid_pre", "resid_pre", "blocks.3.hook_z"):
        with pytest.raises(ValueError, match="unsupported hook name"):
            parse_hook_name(bad)


def test_hook_name_site_equals_layer_and_site(tiny, tmp_path):
    directory, text, lm = tiny
    base = dict(model=str(directory), text=str(text), context_length=16, max_tokens=16 * 4, contexts_per_shard=2)
    a = hv.harvest(hv.HarvestConfig(site="blocks.1.hook_resid_pre", **base), tmp_path / "a", lm=lm, progress=False)
    b = hv.harvest(hv.HarvestConfig(layer=1, site="resid_pre", **base), tmp_path / "b", lm=lm, progress=False)
    np.testing.assert_array_equal(a.activations(), b.activations())
    assert a.meta["hook_name"] == "blocks.1.hook_resid_pre"
    with pytest.raises(ValueError, match="contradicts"):
        hv.harvest(hv.HarvestConfig(layer=0, site="blocks.1.hook_resid_pre", **base), tmp_path / "c", lm=lm, progress=False)


def test_attn_z_is_the_heads_output_before_the_projection(tiny):
    _, _, lm = tiny
    ids = np.arange(2 * 10).reshape(2, 10) % 100 + 5
    z = torch.from_numpy(hv.site_activations(lm, ids, 1, "attn_z"))
    with torch.no_grad():
        h = lm.model(input_ids=torch.as_tensor(ids), output_hidden_states=True).hidden_states[1]
        block = lm.blocks[1]
        attn_out = block.attn(block.ln_1(h))[0]
    np.testing.assert_allclose(block.attn.c_proj(z).detach().numpy(), attn_out.detach().numpy(), atol=1e-5)


def test_bos_is_prepended_by_default_and_excluded_from_training_positions(tiny, tmp_path):
    directory, text, lm = tiny
    cfg = hv.HarvestConfig(model=str(directory), text=str(text), layer=1, context_length=16, max_tokens=16 * 4,
                           contexts_per_shard=2)
    store = hv.harvest(cfg, tmp_path / "bos", lm=lm, progress=False)
    assert (store.tokens()[:, 0] == lm.tokenizer.cls_token_id).all() and store.positions == (1, 16)
    assert store.fingerprint["prepend_bos"] is True and store.meta["prepend_bos"] is True
    plain = hv.harvest(hv.HarvestConfig(**{**cfg.__dict__, "prepend_bos": False}), tmp_path / "plain", lm=lm, progress=False)
    assert plain.positions == (0, 16) and "prepend_bos" not in plain.fingerprint
    # the content after BOS is the plain stream's first 15 tokens
    np.testing.assert_array_equal(store.tokens()[0, 1:], plain.tokens()[0, :15])


def test_from_sae_reads_hook_context_and_bos_from_an_saelens_config(tiny, tmp_path):
    from gapbound.models import SAE

    directory, text, lm = tiny
    sae_dir = SAE(32, 64).save(tmp_path / "sae", hook_name="blocks.0.hook_mlp_out", context_size=12, prepend_bos=False,
                               model_name=str(directory))
    cfg = hv.config_from_sae(sae_dir)
    assert (cfg.layer, cfg.site, cfg.context_length, cfg.prepend_bos, cfg.model) == (0, "mlp_out", 12, False, str(directory))
    old = tmp_path / "old"  # an older SAELens file: keys at the top level, no prepend_bos (SAELens default True)
    old.mkdir()
    (old / "cfg.json").write_text(json.dumps({"hook_name": "blocks.1.hook_resid_pre", "context_size": 128,
                                              "model_name": "gpt2-small", "dataset_path": "Skylion007/openwebtext"}))
    cfg = hv.config_from_sae(old)
    assert (cfg.layer, cfg.site, cfg.prepend_bos, cfg.model, cfg.text) == (1, "resid_pre", True, "gpt2", "openwebtext")
    assert harvest_main(["--from-sae", str(sae_dir), "--text", str(text), "--max-tokens", "48", "--device", "cpu",
                         "--out", str(tmp_path / "store")]) == 0
    store = hv.ShardStore.open(tmp_path / "store")
    assert store.context_length == 12 and store.fingerprint["site"] == "mlp_out" and store.positions == (0, 12)
    with pytest.raises(ValueError, match="no cfg.json"):
        hv.config_from_sae(tmp_path)


def test_offline_sources_are_named_deduplicated_and_interleaved():
    with pytest.raises(ValueError, match="unknown offline text source"):
        corpus.resolve_offline("offline:nosuch")
    assert "pydoc" in corpus.installed_sources()  # ships with Python itself
    assert corpus.install_command().startswith("apt-get install")
    pieces = list(itertools.islice(corpus.iter_offline("offline:pydoc"), 400))
    paragraphs = [" ".join(p.lower().split()) for piece in pieces for p in re.split(r"\n\s*\n", piece)]
    assert len(paragraphs) == len(set(paragraphs))  # no paragraph twice
    assert max(map(len, pieces)) < 4000 + max(len(p) for p in paragraphs) + 2
    present = corpus.installed_sources()
    if len(present) < 3:
        pytest.skip("the Debian text packages are not installed (python -m gapbound.lm.corpus --install)")
    head = list(itertools.islice(corpus.iter_offline("offline"), 200))
    # interleaving: the first pieces already come from every installed source (a source's first piece can
    # differ when an earlier source emitted one of its paragraphs, hence one exception allowed)
    firsts = {name: next(corpus._pieces(name, set(), 4000)) for name in present}
    assert sum(any(f[:200] == h[:200] for h in head) for f in firsts.values()) >= len(present) - 1
