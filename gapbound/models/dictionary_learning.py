"""dictionary_learning's on-disk layout (``ae.pt`` + ``config.json``), read as its ``utils.load_dictionary`` does.

``config.json["trainer"]["dict_class"]`` names the class; the state dict in ``ae.pt``
is mapped onto :class:`~gapbound.models.SAE` so that ``encode`` equals the class's
default ``encode``:

- ``AutoEncoder``: ``relu(encoder(x - bias))``; like its ``from_pretrained``, the decoder
  columns are normalised to unit norm and the encoder rows and bias scaled to match;
- ``AutoEncoderNew``: ``relu(encoder(x))``, decoder with its own bias;
- ``AutoEncoderTopK``: TopK of ``relu(encoder(x - b_dec))``;
- ``BatchTopKSAE`` / ``MatryoshkaBatchTopKSAE``: at inference a global threshold,
  ``relu(z) * 1[relu(z) > threshold]`` (a JumpReLU with one threshold for every latent);
- ``JumpReluAutoEncoder``: ``relu(z * 1[z > threshold])`` with ``z = x W_enc + b_enc``
  (``apply_b_dec_to_input`` is false: it is not saved and defaults to false there);
- ``GatedAutoEncoder``: ``1[x_enc + gate_bias > 0] * relu(exp(r_mag) x_enc + mag_bias)``,
  ``x_enc = encoder(x - decoder_bias)``.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import torch

from .sae import SAE

__all__ = ["read_dictionary_learning", "DL_WEIGHTS_FILE", "DL_CONFIG_FILE", "DL_CLASSES"]

DL_WEIGHTS_FILE = "ae.pt"
DL_CONFIG_FILE = "config.json"
DL_CLASSES = ("AutoEncoder", "AutoEncoderNew", "AutoEncoderTopK", "BatchTopKSAE", "MatryoshkaBatchTopKSAE",
              "JumpReluAutoEncoder", "GatedAutoEncoder")
_KEYS = {
    "AutoEncoder": ("bias", "encoder.weight", "encoder.bias", "decoder.weight"),
    "AutoEncoderNew": ("encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"),
    "AutoEncoderTopK": ("encoder.weight", "encoder.bias", "decoder.weight", "b_dec", "k"),
    "BatchTopKSAE": ("encoder.weight", "encoder.bias", "decoder.weight", "b_dec", "k", "threshold"),
    "MatryoshkaBatchTopKSAE": ("W_enc", "b_enc", "W_dec", "b_dec", "k", "threshold"),
    "JumpReluAutoEncoder": ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"),
    "GatedAutoEncoder": ("encoder.weight", "decoder.weight", "decoder_bias", "r_mag", "gate_bias", "mag_bias"),
}


def read_dictionary_learning(path: str | os.PathLike, dtype: torch.dtype | None = None, device: str | torch.device = "cpu") -> SAE:
    """Load a dictionary_learning SAE directory (``ae.pt`` + ``config.json``).

    Raises
    ------
    FileNotFoundError
        If a file is missing.
    ValueError
        If the class is unsupported or the state dict does not match it.
    """
    root = Path(path)
    for name in (DL_CONFIG_FILE, DL_WEIGHTS_FILE):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root} has no {name} (dictionary_learning layout: {DL_WEIGHTS_FILE} + {DL_CONFIG_FILE})")
    try:
        cfg = json.loads((root / DL_CONFIG_FILE).read_text())
        dict_class = cfg["trainer"]["dict_class"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{root / DL_CONFIG_FILE} must be JSON with trainer.dict_class ({err})") from err
    if dict_class not in DL_CLASSES:
        raise ValueError(f"unsupported dictionary_learning class {dict_class!r} (supported: {', '.join(DL_CLASSES)})")
    try:
        state = torch.load(root / DL_WEIGHTS_FILE, map_location=device, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:  # truncated or not a torch file
        raise ValueError(f"{root / DL_WEIGHTS_FILE} is not a readable torch file ({str(err).splitlines()[0]}); "
                         "it is truncated or corrupted: save or download the SAE again") from None
    missing = [key for key in _KEYS[dict_class] if key not in state]
    if missing:
        raise ValueError(f"{root / DL_WEIGHTS_FILE} lacks {missing} for a {dict_class} (has {sorted(state)})")
    t = {key: value for key, value in state.items() if value.is_floating_point()}
    trainer = cfg["trainer"]
    metadata = {"format": "dictionary_learning", "dict_class": dict_class,
                **{key: trainer[key] for key in ("lm_name", "layer", "submodule_name") if key in trainer}}
    # classes with nn.Linear encoders evaluate W x + b as nn.Linear does; the W_enc ones as x @ W_enc + b_enc
    kw: dict = {"metadata": metadata, "matmul_form": "linear" if "encoder.weight" in state else "saelens"}
    if dict_class == "AutoEncoder":
        W, b, W_dec = t["encoder.weight"], t["encoder.bias"], t["decoder.weight"]
        norms = W_dec.norm(dim=0)
        if not torch.allclose(norms, torch.ones_like(norms)):  # AutoEncoder.from_pretrained(normalize_decoder=True)
            W_dec, W, b = W_dec / norms, W * norms[:, None], b * norms
        sae = SAE.from_weights(W.T, b, W_dec.T, t["bias"], "relu", **kw)
    elif dict_class == "AutoEncoderNew":
        sae = SAE.from_weights(t["encoder.weight"].T, t["encoder.bias"], t["decoder.weight"].T, t["decoder.bias"], "relu",
                               apply_b_dec_to_input=False, **kw)
    elif dict_class == "AutoEncoderTopK":
        sae = SAE.from_weights(t["encoder.weight"].T, t["encoder.bias"], t["decoder.weight"].T, t["b_dec"], "topk",
                               k=int(state["k"]), **kw)
    elif dict_class in ("BatchTopKSAE", "MatryoshkaBatchTopKSAE"):
        if dict_class == "BatchTopKSAE":
            W_enc, b_enc, W_dec = t["encoder.weight"].T, t["encoder.bias"], t["decoder.weight"].T
        else:
            W_enc, b_enc, W_dec = t["W_enc"], t["b_enc"], t["W_dec"]
        threshold = torch.full_like(b_enc, float(state["threshold"]))
        sae = SAE.from_weights(W_enc, b_enc, W_dec, t["b_dec"], "jumprelu", threshold=threshold, **kw)
        sae.metadata["k"] = int(state["k"])  # training-time batch sparsity; inference uses the threshold
    elif dict_class == "JumpReluAutoEncoder":
        sae = SAE.from_weights(t["W_enc"], t["b_enc"], t["W_dec"], t["b_dec"], "jumprelu", threshold=t["threshold"],
                               apply_b_dec_to_input=False, **kw)
    else:  # GatedAutoEncoder
        W = t["encoder.weight"]
        sae = SAE.from_weights(W.T, t["mag_bias"], t["decoder.weight"].T, t["decoder_bias"], "gated",
                               b_gate=t["gate_bias"], r_mag=t["r_mag"], **kw)
    return sae if dtype is None else sae.to(dtype)
