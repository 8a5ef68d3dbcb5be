"""The SAE class and its file formats, against independent re-statements of SAELens's and dictionary_learning's encoders.

The reference functions below restate, line by line, what SAELens 6 (``sae_lens/saes/*.py``,
``loading/pretrained_sae_loaders.py``) and dictionary_learning (``dictionary.py``,
``trainers/*.py``) compute; ``tests/test_interop.py`` runs the libraries themselves.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import gapbound
from gapbound.models import SAE, detect_format, load_sae, save_sae


def random_weights(d_in=6, d_sae=20, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return {"W_enc": r(d_in, d_sae), "b_enc": 0.3 * r(d_sae), "W_dec": 0.7 * r(d_sae, d_in), "b_dec": r(d_in),
            "threshold": 0.5 * r(d_sae),  # some negative: SAELens's relu(z) * 1[z > theta] then never goes below 0
            "b_gate": 0.3 * r(d_sae), "b_mag": 0.3 * r(d_sae), "r_mag": 0.2 * r(d_sae)}


def saelens_reference(cfg: dict, w: dict, x: torch.Tensor) -> torch.Tensor:
    """SAELens 6 ``encode`` after ``load_from_disk`` (config defaults of ``handle_pre_6_0_config`` included)."""
    arch = cfg.get("architecture", "standard")
    act = cfg.get("activation_fn_str", cfg.get("activation_fn", "relu"))
    k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
    if arch == "standard" and act == "topk" and k is not None:
        arch = "topk"
    x = x.to(w["W_enc"].dtype)
    norm = cfg.get("normalize_activations", "none")
    if norm == "constant_norm_rescale":
        x = x * (x.shape[-1] ** 0.5 / x.norm(dim=-1, keepdim=True))
    elif norm == "layer_norm":
        x = x - x.mean(dim=-1, keepdim=True)
        x = x / (x.std(dim=-1, keepdim=True) + 1e-5)
    sae_in = x - w["b_dec"] * cfg.get("apply_b_dec_to_input", True)
    if arch == "gated":
        active = (sae_in @ w["W_enc"] + w["b_gate"] > 0).to(x.dtype)
        return active * torch.relu(sae_in @ (w["W_enc"] * w["r_mag"].exp()) + w["b_mag"])
    hidden_pre = sae_in @ w["W_enc"] + w["b_enc"]
    if arch == "jumprelu":
        return torch.relu(hidden_pre) * (hidden_pre > w["threshold"]).to(x.dtype)
    if arch == "topk":
        if cfg.get("rescale_acts_by_decoder_norm", False):
            hidden_pre = hidden_pre * w["W_dec"].norm(dim=-1)
        vals, idx = torch.topk(hidden_pre, k=k, dim=-1, sorted=False)
        return torch.zeros_like(hidden_pre).scatter(-1, idx, vals.relu())
    return torch.relu(hidden_pre)


def saelens_decode(cfg: dict, w: dict, s: torch.Tensor) -> torch.Tensor:
    if cfg.get("rescale_acts_by_decoder_norm", False):
        s = s / w["W_dec"].norm(dim=-1)
    return s @ w["W_dec"] + w["b_dec"]


TENSORS = {"standard": ["W_enc", "b_enc", "W_dec", "b_dec"], "topk": ["W_enc", "b_enc", "W_dec", "b_dec"],
           "jumprelu": ["W_enc", "b_enc", "W_dec", "b_dec", "threshold"],
           "gated": ["W_enc", "b_gate", "b_mag", "r_mag", "W_dec", "b_dec"]}


def write_saelens_dir(path, cfg, w):
    path.mkdir(parents=True, exist_ok=True)
    (path / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: w[k].contiguous() for k in TENSORS[cfg.get("architecture", "standard")]}, str(path / "sae_weights.safetensors"))
    return path


V6 = {"metadata": {"sae_lens_version": "6.5.0"}}
CASES = [
    ("standard", {"architecture": "standard", **V6}),
    ("standard, no b_dec on input", {"architecture": "standard", "apply_b_dec_to_input": False, **V6}),
    ("topk", {"architecture": "topk", "k": 4, **V6}),
    ("topk rescaled, unfolded", {"architecture": "topk", "k": 4, "rescale_acts_by_decoder_norm": True, **V6}),
    ("jumprelu, negative thresholds", {"architecture": "jumprelu", **V6}),
    ("gated", {"architecture": "gated", **V6}),
    ("constant_norm_rescale", {"architecture": "standard", "normalize_activations": "constant_norm_rescale", **V6}),
    ("layer_norm", {"architecture": "jumprelu", "normalize_activations": "layer_norm", **V6}),
    ("pre-6: no apply_b_dec_to_input", {"d_in": 6, "d_sae": 20}),
    ("pre-6: standard + activation_fn_str topk", {"architecture": "standard", "activation_fn_str": "topk",
                                                  "activation_fn_kwargs": {"k": 3}, "sae_lens_version": "3.20.0"}),
    ("pre-6: normalize_activations false", {"architecture": "standard", "normalize_activations": False}),
    ("bfloat16", {"architecture": "topk", "k": 4, "dtype": "bfloat16", **V6}),
    ("float64", {"architecture": "jumprelu", "dtype": "float64", **V6}),
]


@pytest.mark.parametrize("name, cfg", CASES, ids=[c[0] for c in CASES])
def test_reads_saelens_like_saelens(tmp_path, name, cfg):
    dtype = {"bfloat16": torch.bfloat16, "float64": torch.float64}.get(cfg.get("dtype"), torch.float32)
    w = random_weights(dtype=dtype)
    x = 2.0 * torch.randn(200, 6, generator=torch.Generator().manual_seed(1)) + 0.5
    sae = load_sae(write_saelens_dir(tmp_path / "sae", cfg, w))
    with torch.no_grad():
        codes = sae.encode(x)
        ref = saelens_reference(cfg, w, x)
        assert codes.dtype == dtype and (codes >= 0).all()
        atol = 1e-2 if dtype == torch.bfloat16 else 1e-6
        torch.testing.assert_close(codes, ref, atol=atol, rtol=0)
        torch.testing.assert_close(sae.decode(codes), saelens_decode(cfg, w, ref), atol=10 * atol, rtol=0)
        # gapbound's frame: decode(s) = s D^T + b_dec, with unit-norm atoms for a rescaled TopK SAE
        torch.testing.assert_close(codes.double() @ sae.dictionary.double().T + sae.b_dec.double(),
                                   sae.decode(codes).double(), atol=10 * atol, rtol=1e-3 if dtype == torch.bfloat16 else 1e-5)
        if cfg.get("rescale_acts_by_decoder_norm"):
            torch.testing.assert_close(sae.dictionary.norm(dim=0), torch.ones(20))
    # and it saves in a layout that reads back to the same encoder
    again = load_sae(sae.save(tmp_path / "again"))
    with torch.no_grad():
        assert torch.equal(again.encode(x), codes)


def test_unfolded_rescaled_topk_would_be_misread_without_the_flag(tmp_path):
    """The silent misread of issue 18: ignoring rescale_acts_by_decoder_norm changes the codes a lot."""
    w = random_weights()
    cfg = {"architecture": "topk", "k": 4, "rescale_acts_by_decoder_norm": True, **V6}
    x = torch.randn(100, 6)
    codes = load_sae(write_saelens_dir(tmp_path / "a", cfg, w)).encode(x).detach()
    plain = saelens_reference({**cfg, "rescale_acts_by_decoder_norm": False}, w, x)
    assert (codes - plain).abs().max() > 0.1
    torch.testing.assert_close(codes, saelens_reference(cfg, w, x), atol=1e-6, rtol=0)


def test_expected_average_only_in_reads_like_saelens_with_a_warning(tmp_path):
    w = random_weights()
    cfg = {"architecture": "standard", "normalize_activations": "expected_average_only_in", **V6}
    with pytest.warns(UserWarning, match="expected_average_only_in"):
        sae = load_sae(write_saelens_dir(tmp_path / "s", cfg, w))
    x = torch.randn(50, 6)
    torch.testing.assert_close(sae.encode(x).detach(), saelens_reference(cfg, w, x), atol=1e-6, rtol=0)
    # folding the dataset factor gives an SAE that reads raw activations
    factor = 3.0
    raw = sae.fold_input_normalisation(scale=1 / factor)
    torch.testing.assert_close(raw.encode(x).detach(), sae.encode(x * factor).detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "cfg, tensors, match",
    [
        ({"architecture": "transcoder", **V6}, None, r"unsupported architecture 'transcoder' .*supported: standard, topk, jumprelu, gated"),
        ({"architecture": "standard", "activation_fn_str": "topk"}, None, "topk.* no k"),
        ({"architecture": "standard", "activation_fn_str": "tanh-relu"}, None, "unsupported activation_fn 'tanh-relu'"),
        ({"architecture": "standard", "normalize_activations": "batch_norm", **V6}, None, "unsupported normalize_activations"),
        ({"architecture": "standard", "dtype": "int8", **V6}, None, "unsupported dtype"),
        ({"architecture": "standard", "d_in": 7, **V6}, None, "d_in=7 does not match"),
        ({"architecture": "jumprelu", **V6}, ["W_enc", "b_enc", "W_dec", "b_dec"], r"lacks tensors \['threshold'\]"),
        ({"architecture": "standard", **V6}, ["W_enc", "b_enc", "W_dec", "b_dec", "W_skip"], "W_skip.*unsupported variant"),
        ({"architecture": "standard", **V6}, ["W_enc", "b_enc", "W_dec", "b_dec", "scaling_factor"], "scaling_factor"),
    ],
)
def test_refuses_what_it_cannot_read_exactly(tmp_path, cfg, tensors, match):
    w = {**random_weights(), "W_skip": torch.randn(6, 6), "scaling_factor": torch.full((20,), 2.0)}
    d = tmp_path / "s"
    d.mkdir()
    (d / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: w[k] for k in tensors or TENSORS.get(cfg["architecture"], TENSORS["standard"])}, str(d / "sae_weights.safetensors"))
    with pytest.raises(ValueError, match=match):
        load_sae(d)


def test_all_ones_scaling_factor_is_dropped_like_saelens(tmp_path):
    w = {**random_weights(), "scaling_factor": torch.ones(20)}
    d = tmp_path / "s"
    d.mkdir()
    (d / "cfg.json").write_text(json.dumps({"architecture": "standard", **V6}))
    save_file({k: w[k] for k in ["W_enc", "b_enc", "W_dec", "b_dec", "scaling_factor"]}, str(d / "sae_weights.safetensors"))
    x = torch.randn(10, 6)
    torch.testing.assert_close(load_sae(d).encode(x).detach(), saelens_reference({}, w, x), atol=1e-6, rtol=0)


def test_missing_files_and_bad_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_sae(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        load_sae(tmp_path / "empty")
    d = tmp_path / "bad"
    d.mkdir()
    (d / "cfg.json").write_text("{not json")
    save_file({"W_enc": torch.zeros(2, 3)}, str(d / "sae_weights.safetensors"))
    with pytest.raises(ValueError, match="not valid JSON"):
        load_sae(d)


# ---------------------------------------------------------------- dictionary_learning
def dl_state(dict_class: str, d=6, n=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    if dict_class == "AutoEncoder":
        return {"bias": r(d), "encoder.weight": r(n, d), "encoder.bias": r(n), "decoder.weight": 2 * r(d, n)}
    if dict_class == "AutoEncoderNew":
        return {"encoder.weight": r(n, d), "encoder.bias": r(n), "decoder.weight": r(d, n), "decoder.bias": r(d)}
    if dict_class in ("AutoEncoderTopK", "BatchTopKSAE"):
        return {"encoder.weight": r(n, d), "encoder.bias": r(n), "decoder.weight": r(d, n), "b_dec": r(d),
                "k": torch.tensor(4, dtype=torch.int), "threshold": torch.tensor(0.3)}
    if dict_class == "MatryoshkaBatchTopKSAE":
        return {"W_enc": r(d, n), "b_enc": r(n), "W_dec": r(n, d), "b_dec": r(d), "k": torch.tensor(4, dtype=torch.int),
                "threshold": torch.tensor(0.3), "group_sizes": torch.tensor([5, 15])}
    if dict_class == "JumpReluAutoEncoder":
        return {"W_enc": r(d, n), "b_enc": r(n), "W_dec": r(n, d), "b_dec": r(d), "threshold": 0.5 * r(n)}
    return {"encoder.weight": r(n, d), "decoder.weight": r(d, n), "decoder_bias": r(d), "r_mag": 0.2 * r(n),
            "gate_bias": r(n), "mag_bias": r(n)}


def dl_reference(dict_class: str, s: dict, x: torch.Tensor) -> torch.Tensor:
    """dictionary_learning's default ``encode`` after ``utils.load_dictionary``."""
    relu = torch.relu
    if dict_class == "AutoEncoder":  # from_pretrained(normalize_decoder=True)
        norms = s["decoder.weight"].norm(dim=0)
        W, b = s["encoder.weight"] * norms[:, None], s["encoder.bias"] * norms
        return relu((x - s["bias"]) @ W.T + b)
    if dict_class == "AutoEncoderNew":
        return relu(x @ s["encoder.weight"].T + s["encoder.bias"])
    if dict_class in ("AutoEncoderTopK", "BatchTopKSAE"):
        post = relu((x - s["b_dec"]) @ s["encoder.weight"].T + s["encoder.bias"])
        if dict_class == "BatchTopKSAE":  # use_threshold=True by default
            return post * (post > s["threshold"])
        top = post.topk(int(s["k"]), sorted=False, dim=-1)
        return torch.zeros_like(post).scatter_(-1, top.indices, top.values)
    if dict_class == "MatryoshkaBatchTopKSAE":
        post = relu((x - s["b_dec"]) @ s["W_enc"] + s["b_enc"])
        return post * (post > s["threshold"])
    if dict_class == "JumpReluAutoEncoder":
        pre = x @ s["W_enc"] + s["b_enc"]
        return relu(pre * (pre > s["threshold"]))
    x_enc = (x - s["decoder_bias"]) @ s["encoder.weight"].T
    gate = (x_enc + s["gate_bias"] > 0).float()
    return gate * relu(s["r_mag"].exp() * x_enc + s["mag_bias"])


DL_CLASSES = ["AutoEncoder", "AutoEncoderNew", "AutoEncoderTopK", "BatchTopKSAE", "MatryoshkaBatchTopKSAE",
              "JumpReluAutoEncoder", "GatedAutoEncoder"]


@pytest.mark.parametrize("dict_class", DL_CLASSES)
def test_reads_dictionary_learning_like_dictionary_learning(tmp_path, dict_class):
    state = dl_state(dict_class)
    d = tmp_path / "ae"
    d.mkdir()
    torch.save(state, d / "ae.pt")
    (d / "config.json").write_text(json.dumps({"trainer": {"dict_class": dict_class, "k": 4, "layer": 3, "lm_name": "gpt2"}}))
    assert detect_format(d) == "dictionary_learning"
    sae = SAE.load(d)
    x = 2 * torch.randn(300, 6)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), dl_reference(dict_class, state, x), atol=1e-5, rtol=1e-5)
    assert sae.metadata["layer"] == 3 and sae.metadata["dict_class"] == dict_class


def test_dictionary_learning_refusals(tmp_path):
    d = tmp_path / "ae"
    d.mkdir()
    torch.save({"W": torch.zeros(2)}, d / "ae.pt")
    (d / "config.json").write_text(json.dumps({"trainer": {"dict_class": "CrossCoder"}}))
    with pytest.raises(ValueError, match=r"unsupported dictionary_learning class 'CrossCoder' \(supported: AutoEncoder"):
        load_sae(d)
    (d / "config.json").write_text(json.dumps({"trainer": {"dict_class": "AutoEncoder"}}))
    with pytest.raises(ValueError, match="lacks"):
        load_sae(d)


# ---------------------------------------------------------------- gapbound's own SAEs
@pytest.mark.parametrize("activation, kw", [("relu", {}), ("topk", {"k": 3}), ("jumprelu", {"threshold": 0.05}), ("gated", {})])
def test_save_load_round_trip_through_the_facade(tmp_path, activation, kw):
    torch.manual_seed(1)
    sae = gapbound.SAE(8, 16, activation=activation, **kw)
    D = torch.randn(8, 16)
    sae.set_decoder(D, torch.randn(8))
    path = sae.save(tmp_path / "sae", hook_name="blocks.0.hook_resid_pre", context_size=128)
    cfg = json.loads((path / "cfg.json").read_text())
    assert cfg["d_in"] == 8 and cfg["d_sae"] == 16 and cfg["metadata"]["hook_name"] == "blocks.0.hook_resid_pre"
    assert cfg["apply_b_dec_to_input"] is False  # gapbound's SAEs absorb b_dec into the encoder bias
    back = gapbound.SAE.load(path)
    X = torch.randn(20, 8)
    with torch.no_grad():
        assert torch.equal(back.encode(X), sae.encode(X))
        torch.testing.assert_close(back.dictionary, D)
        torch.testing.assert_close(back.decode(back.encode(X)), back.encode(X) @ D.T + sae.b_dec)
    assert back.metadata["context_size"] == 128


def test_language_model_normalisation_folds_into_a_saelens_sae(tmp_path):
    """An SAE trained on (x - mean) / scale saves as one SAELens applies to raw activations."""
    torch.manual_seed(2)
    sae = SAE(8, 16, "topk", k=3).set_decoder(torch.randn(8, 16), torch.zeros(8))
    mean, scale = torch.randn(8), 4.0
    x = scale * torch.randn(30, 8) + mean
    raw = load_sae(save_sae(tmp_path / "s", sae.fold_input_normalisation(mean, scale)))
    with torch.no_grad():
        torch.testing.assert_close(raw.encode(x), sae.encode((x - mean) / scale), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(raw.decode(raw.encode(x)), scale * sae.decode(sae.encode((x - mean) / scale)) + mean,
                                   atol=1e-4, rtol=1e-5)


def test_loading_draws_no_random_numbers(tmp_path):
    path = SAE(6, 20).save(tmp_path / "s")
    torch.manual_seed(5)
    load_sae(path)
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(3))


def test_from_weights_validates():
    w = random_weights()
    with pytest.raises(ValueError, match=r"W_dec must have shape \(20, 6\)"):
        SAE.from_weights(w["W_enc"], w["b_enc"], w["W_enc"], w["b_dec"])
    with pytest.raises(ValueError, match="needs a 'threshold'"):
        SAE.from_weights(w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"], "jumprelu")
    with pytest.raises(ValueError, match="NaN"):
        SAE.from_weights(w["W_enc"], w["b_enc"] * np.nan, w["W_dec"], w["b_dec"])
    with pytest.raises(TypeError, match="gapbound SAE"):
        save_sae("x", object())
