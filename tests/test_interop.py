"""Interop with the libraries themselves: SAEs built and saved by SAELens and dictionary_learning, read by gapbound.

Needs the ``interop`` extra (``pip install -c constraints/torch.txt -e .[interop]``, then
``pip uninstall -y torchvision``: see ``docs/sae_formats.md``); skipped cleanly without it.
Encodings are compared to 1e-6 (float32; bfloat16 exactly, the arithmetic being the same).
"""

from __future__ import annotations

import json

import pytest
import torch

from gapbound.models import SAE, load_sae

sae_lens = pytest.importorskip("sae_lens", reason="interop extra not installed (sae-lens)")

D_IN, D_SAE = 16, 64


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Every parameter random (not the libraries' structured initialisation), so every code path counts."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype)
            p.copy_(0.3 * noise if ("b_" in name or "bias" in name or "r_mag" in name or "threshold" in name) else noise)


def saelens_sae(kind: str, seed: int = 0, **cfg):
    from sae_lens import (GatedSAE, GatedSAEConfig, JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig,
                          TopKSAE, TopKSAEConfig)

    classes = {"standard": (StandardSAE, StandardSAEConfig), "topk": (TopKSAE, TopKSAEConfig),
               "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig), "gated": (GatedSAE, GatedSAEConfig)}
    cls, cfg_cls = classes[kind]
    sae = cls(cfg_cls(d_in=D_IN, d_sae=D_SAE, **cfg))
    randomise(sae, seed)
    return sae


SAELENS_CASES = [
    ("standard", {}),
    ("standard", {"apply_b_dec_to_input": False}),
    ("standard", {"normalize_activations": "layer_norm"}),
    ("standard", {"normalize_activations": "constant_norm_rescale"}),
    ("topk", {"k": 8}),
    ("topk", {"k": 8, "rescale_acts_by_decoder_norm": True}),
    ("jumprelu", {}),  # random thresholds: about half negative
    ("gated", {}),
    ("topk", {"k": 8, "dtype": "bfloat16"}),
    ("jumprelu", {"dtype": "float64"}),
]


def inputs(dtype=torch.float32, n=512, seed=1):
    return (2.0 * torch.randn(n, D_IN, generator=torch.Generator().manual_seed(seed)) + 0.3).to(dtype)


def assert_codes_equal(ours, theirs, dtype):
    assert ours.dtype == theirs.dtype == dtype
    torch.testing.assert_close(ours, theirs, atol=0 if dtype == torch.bfloat16 else 1e-6, rtol=0)


@pytest.mark.parametrize("kind, cfg", SAELENS_CASES, ids=[f"{k}-{'-'.join(f'{a}={b}' for a, b in c.items())}" for k, c in SAELENS_CASES])
def test_saelens_saved_sae_encodes_like_saelens(tmp_path, kind, cfg):
    theirs = saelens_sae(kind, **cfg)
    theirs.save_model(tmp_path / "sae")
    ours = load_sae(tmp_path / "sae")
    dtype = {"bfloat16": torch.bfloat16, "float64": torch.float64}.get(cfg.get("dtype"), torch.float32)
    x = inputs()
    with torch.no_grad():
        s_theirs = theirs.encode(x)
        s_ours = ours.encode(x)
        assert_codes_equal(s_ours, s_theirs, dtype)
        if cfg.get("normalize_activations", "none") == "none":  # SAELens's decode un-normalises with state from encode
            torch.testing.assert_close(ours.decode(s_ours), theirs.decode(s_theirs), atol=1e-5 if dtype != torch.bfloat16 else 0,
                                       rtol=1e-5 if dtype != torch.bfloat16 else 0)


@pytest.mark.parametrize("kind, cfg", [("standard", {}), ("topk", {"k": 8}), ("jumprelu", {}), ("gated", {})])
def test_gapbound_saved_sae_loads_in_saelens(tmp_path, kind, cfg):
    activation = {"standard": "relu"}.get(kind, kind)
    torch.manual_seed(3)
    ours = SAE(D_IN, D_SAE, activation, **cfg, threshold=0.2)
    randomise(ours, 3)
    ours.save(tmp_path / "sae", hook_name="blocks.3.hook_resid_pre", model_name="gpt2", context_size=128)
    theirs = sae_lens.SAE.load_from_disk(tmp_path / "sae")
    assert theirs.cfg.architecture() == kind and theirs.cfg.metadata.hook_name == "blocks.3.hook_resid_pre"
    x = inputs()
    with torch.no_grad():
        assert_codes_equal(ours.encode(x), theirs.encode(x), torch.float32)


def test_folded_language_model_sae_loads_in_saelens(tmp_path):
    torch.manual_seed(4)
    trained = SAE(D_IN, D_SAE, "topk", k=8).set_decoder(torch.randn(D_IN, D_SAE))
    mean, scale = torch.randn(D_IN), 3.0
    trained.fold_input_normalisation(mean, scale).save(tmp_path / "sae")
    theirs = sae_lens.SAE.load_from_disk(tmp_path / "sae")
    x = scale * inputs() + mean
    with torch.no_grad():
        torch.testing.assert_close(theirs.encode(x), trained.encode((x - mean) / scale), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(theirs(x), scale * trained.decode(trained.encode((x - mean) / scale)) + mean, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("training", ["topk", "batchtopk", "matryoshka_batchtopk", "jumprelu"])
def test_saelens_training_saes_saved_for_inference(tmp_path, training):
    """BatchTopK and Matryoshka SAEs are saved as JumpReLU SAEs; TopK with its decoder norms folded."""
    from sae_lens import (BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig, JumpReLUTrainingSAE,
                          JumpReLUTrainingSAEConfig, MatryoshkaBatchTopKTrainingSAE, MatryoshkaBatchTopKTrainingSAEConfig,
                          TopKTrainingSAE, TopKTrainingSAEConfig)

    cls, cfg = {
        "topk": (TopKTrainingSAE, TopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=8)),
        "batchtopk": (BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=8)),
        "matryoshka_batchtopk": (MatryoshkaBatchTopKTrainingSAE, MatryoshkaBatchTopKTrainingSAEConfig(
            d_in=D_IN, d_sae=D_SAE, k=8, matryoshka_widths=[16, D_SAE])),
        "jumprelu": (JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE)),
    }[training]
    sae = cls(cfg)
    randomise(sae, 5)
    if hasattr(sae, "topk_threshold"):
        sae.topk_threshold.fill_(0.7)
    sae.save_inference_model(tmp_path / "sae")
    reference = sae_lens.SAE.load_from_disk(tmp_path / "sae")
    ours = load_sae(tmp_path / "sae")
    x = inputs()
    with torch.no_grad():
        assert_codes_equal(ours.encode(x), reference.encode(x), torch.float32)


OLD_CONFIGS = [
    {"d_in": D_IN, "d_sae": D_SAE, "dtype": "float32"},  # no apply_b_dec_to_input: SAELens reads true
    {"d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "architecture": "standard", "activation_fn_str": "topk",
     "activation_fn_kwargs": {"k": 8}, "sae_lens_version": "3.20.0", "hook_point": "blocks.2.hook_resid_pre"},
    {"d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "normalize_activations": False, "apply_b_dec_to_input": False},
]


@pytest.mark.parametrize("cfg", OLD_CONFIGS, ids=["no-apply_b_dec", "standard-topk", "bool-normalize"])
def test_old_saelens_configs_read_with_saelens_defaults(tmp_path, cfg):
    from safetensors.torch import save_file

    sae = saelens_sae("standard", seed=7)
    d = tmp_path / "old"
    d.mkdir()
    save_file({k: v.detach().contiguous() for k, v in sae.state_dict().items()}, str(d / "sae_weights.safetensors"))
    (d / "cfg.json").write_text(json.dumps(cfg))
    reference = sae_lens.SAE.load_from_disk(d)
    ours = load_sae(d)
    x = inputs()
    with torch.no_grad():
        assert_codes_equal(ours.encode(x), reference.encode(x), torch.float32)
    assert ours.apply_b_dec_to_input is reference.cfg.apply_b_dec_to_input


# ---------------------------------------------------------------- dictionary_learning
def dictionary_learning_sae(dict_class: str, seed: int = 0):
    from dictionary_learning.dictionary import AutoEncoder, AutoEncoderNew, GatedAutoEncoder, JumpReluAutoEncoder
    from dictionary_learning.trainers.batch_top_k import BatchTopKSAE
    from dictionary_learning.trainers.matryoshka_batch_top_k import MatryoshkaBatchTopKSAE
    from dictionary_learning.trainers.top_k import AutoEncoderTopK

    ae = {
        "AutoEncoder": lambda: AutoEncoder(D_IN, D_SAE),
        "AutoEncoderNew": lambda: AutoEncoderNew(D_IN, D_SAE),
        "GatedAutoEncoder": lambda: GatedAutoEncoder(D_IN, D_SAE),
        "JumpReluAutoEncoder": lambda: JumpReluAutoEncoder(D_IN, D_SAE),
        "AutoEncoderTopK": lambda: AutoEncoderTopK(D_IN, D_SAE, k=8),
        "BatchTopKSAE": lambda: BatchTopKSAE(D_IN, D_SAE, k=8),
        "MatryoshkaBatchTopKSAE": lambda: MatryoshkaBatchTopKSAE(D_IN, D_SAE, k=8, group_sizes=[16, D_SAE - 16]),
    }[dict_class]()
    randomise(ae, seed)
    if hasattr(ae, "threshold") and ae.threshold.ndim == 0:
        ae.threshold.fill_(0.4)  # a trained BatchTopK SAE's inference threshold
    return ae


@pytest.mark.parametrize("dict_class", ["AutoEncoder", "AutoEncoderNew", "GatedAutoEncoder", "JumpReluAutoEncoder",
                                        "AutoEncoderTopK", "BatchTopKSAE", "MatryoshkaBatchTopKSAE"])
def test_dictionary_learning_saved_sae_encodes_like_dictionary_learning(tmp_path, dict_class):
    pytest.importorskip("dictionary_learning", reason="interop extra not installed (dictionary-learning)")
    from dictionary_learning.utils import load_dictionary

    ae = dictionary_learning_sae(dict_class)
    d = tmp_path / "ae"
    d.mkdir()
    torch.save(ae.state_dict(), d / "ae.pt")
    (d / "config.json").write_text(json.dumps({"trainer": {"dict_class": dict_class, "k": 8, "layer": 3}}))
    reference, _ = load_dictionary(str(d), "cpu")
    ours = load_sae(d)
    x = inputs()
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), reference.encode(x), atol=1e-6, rtol=0)
        torch.testing.assert_close(ours.decode(ours.encode(x)), reference.decode(reference.encode(x)), atol=1e-5, rtol=0)
