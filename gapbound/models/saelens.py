"""SAELens's on-disk layout (``cfg.json`` + ``sae_weights.safetensors``): read what SAELens saves, write what it reads.

Reading follows SAELens 6's ``SAE.load_from_disk`` and its encoders exactly:

- architectures ``standard`` (ReLU), ``topk`` (with ``rescale_acts_by_decoder_norm``),
  ``jumprelu`` (SAELens also saves BatchTopK and Matryoshka SAEs as ``jumprelu``) and
  ``gated``; anything else (transcoders, ...) is refused as unsupported;
- configs older than SAELens 6.0 get SAELens's defaults for missing keys
  (``apply_b_dec_to_input`` true, ``activation_fn_str: "topk"`` with a ``k`` meaning
  a TopK SAE, boolean ``normalize_activations``);
- ``normalize_activations``: ``constant_norm_rescale`` and ``layer_norm`` are per-sample
  run-time normalisations and are applied by :meth:`SAE.normalise`; ``expected_average_only_in``
  (a dataset factor) and ``covariance_whitening`` (a dataset affine map) are not applied by
  SAELens at run time either (the input must already be transformed), so encoding matches
  SAELens and a warning says so;
- tensors are cast to ``cfg["dtype"]`` (or the ``dtype`` argument), as SAELens does.

Writing produces the current (6.x) layout, readable by ``sae_lens.SAE.load_from_disk``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..utils.io import atomic_write, atomic_write_json
from .sae import CALLER_SIDE_NORMS, INPUT_NORMS, SAE

__all__ = ["read_saelens", "write_saelens", "saelens_config", "parse_dtype", "CONFIG_FILE", "WEIGHTS_FILE", "SAELENS_ARCHITECTURES"]

CONFIG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SAELENS_ARCHITECTURES = ("standard", "topk", "jumprelu", "gated")
LAYOUT_VERSION = "6.0.0"  # the cfg.json layout written; SAELens converts configs without a version as pre-6.0
_ACTIVATION = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu", "gated": "gated"}
_TENSORS = {
    "standard": ("W_enc", "b_enc", "W_dec", "b_dec"),
    "topk": ("W_enc", "b_enc", "W_dec", "b_dec"),
    "jumprelu": ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"),
    "gated": ("W_enc", "b_gate", "b_mag", "r_mag", "W_dec", "b_dec"),
}
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
# provenance keys older configs keep at the top level; SAELens 6 moves them under "metadata"
_METADATA_KEYS = ("model_name", "hook_name", "hook_head_index", "hook_layer", "context_size", "prepend_bos",
                  "dataset_path", "model_from_pretrained_kwargs", "seqpos_slice", "exclude_special_tokens",
                  "model_class_name", "sae_lens_training_version", "neuronpedia_id")


def parse_dtype(name: Any) -> torch.dtype:
    """A torch dtype from SAELens's names (``"float32"``, ``"torch.bfloat16"``, ...)."""
    if isinstance(name, torch.dtype):
        return name
    key = str(name).replace("torch.", "")
    if key not in _DTYPES:
        raise ValueError(f"unsupported dtype {name!r} (supported: {', '.join(_DTYPES)})")
    return _DTYPES[key]


def saelens_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg.json`` contents with SAELens's defaults for missing keys, old (pre-6.0) configs converted.

    Raises
    ------
    ValueError
        For an old config whose activation SAELens 6 would silently read as ReLU
        (``topk`` without ``k``, or another activation such as ``tanh-relu``).
    """
    cfg = dict(cfg)
    version = cfg.get("sae_lens_version") or (cfg.get("metadata") or {}).get("sae_lens_version")
    major = str(version or "0").split(".")[0]
    pre6 = not major.isdigit() or int(major) < 6  # SAELens: version < 6.0.0-rc.0
    if pre6:
        for old, new in (("hook_point", "hook_name"), ("hook_point_head_index", "hook_head_index"), ("activation_fn_str", "activation_fn")):
            if old in cfg and new not in cfg:
                cfg[new] = cfg.pop(old)
        cfg.setdefault("apply_b_dec_to_input", True)
        cfg.setdefault("architecture", "standard")
        activation = cfg.get("activation_fn") or "relu"
        k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
        if cfg["architecture"] == "standard" and activation == "topk":
            if k is None:
                raise ValueError("cfg.json has activation_fn 'topk' but no k (activation_fn_kwargs.k); cannot tell the TopK size")
            cfg["architecture"], cfg["k"] = "topk", k
        elif cfg["architecture"] == "standard" and activation != "relu":
            raise ValueError(f"unsupported activation_fn {activation!r} for architecture 'standard' (supported: relu, topk)")
        if cfg["architecture"] == "topk" and "k" not in cfg and k is not None:
            cfg["k"] = k
        if isinstance(cfg.get("normalize_activations"), bool):
            cfg["normalize_activations"] = "expected_average_only_in" if cfg["normalize_activations"] else "none"
        metadata = {key: cfg[key] for key in _METADATA_KEYS if key in cfg}
        cfg["metadata"] = {**metadata, **(cfg.get("metadata") or {})}
    cfg.setdefault("apply_b_dec_to_input", True)  # SAEConfig's default in SAELens 6
    if cfg.get("normalize_activations") is None:
        cfg["normalize_activations"] = "none"
    cfg.setdefault("dtype", "float32")
    return cfg


def read_saelens(path: str | os.PathLike, dtype: str | torch.dtype | None = None, device: str | torch.device = "cpu") -> SAE:
    """Load an SAE from a SAELens directory so that ``encode`` equals SAELens's ``encode``.

    Raises
    ------
    FileNotFoundError
        If the directory or one of its two files is missing.
    ValueError
        If the config asks for an unsupported architecture or mode, or tensors are missing or mis-shaped.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"SAE directory {root} does not exist (expected {CONFIG_FILE} and {WEIGHTS_FILE} inside)")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (root / name).is_file():
            raise FileNotFoundError(f"SAE directory {root} has no {name} (SAELens layout: {CONFIG_FILE} + {WEIGHTS_FILE})")
    try:
        raw = json.loads((root / CONFIG_FILE).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{root / CONFIG_FILE} is not valid JSON: {err}") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{root / CONFIG_FILE} must hold a JSON object")
    cfg = saelens_config(raw)
    arch = cfg["architecture"]
    if arch not in SAELENS_ARCHITECTURES:
        raise ValueError(f"unsupported architecture {arch!r} in {root / CONFIG_FILE} (supported: {', '.join(SAELENS_ARCHITECTURES)})")
    norm = cfg["normalize_activations"]
    if norm not in INPUT_NORMS:
        raise ValueError(f"unsupported normalize_activations {norm!r} in {root / CONFIG_FILE} (supported: {', '.join(INPUT_NORMS)})")
    target = parse_dtype(cfg["dtype"] if dtype is None else dtype)
    try:
        raw_tensors = load_file(str(root / WEIGHTS_FILE), device=str(device))
    except SafetensorError as err:  # truncated or not a safetensors file at all
        raise ValueError(f"{root / WEIGHTS_FILE} is not a readable safetensors file ({err}); "
                         "it is truncated or corrupted: save or download the SAE again") from None
    tensors = {k: v.to(target) for k, v in raw_tensors.items()}
    scaling = tensors.pop("scaling_factor", None)
    if scaling is not None and not torch.allclose(scaling, torch.ones_like(scaling)):
        raise ValueError(f"unsupported: {root / WEIGHTS_FILE} has a fine-tuning scaling_factor that is not all ones "
                         "(SAELens 6 refuses it too unless finetuning_scaling_factor is set)")
    needed = _TENSORS[arch]
    missing = [n for n in needed if n not in tensors]
    if missing:
        raise ValueError(f"{root / WEIGHTS_FILE} lacks tensors {missing} for a {arch} SAE (has {sorted(tensors)})")
    extra = sorted(set(tensors) - set(needed))
    if extra:
        raise ValueError(f"{root / WEIGHTS_FILE} has tensors {extra} that a SAELens {arch} SAE does not have; unsupported variant")
    d_in, d_sae = tensors["W_enc"].shape
    for name, value in (("d_in", d_in), ("d_sae", d_sae)):
        if name in cfg and cfg[name] != value:
            raise ValueError(f"cfg.json {name}={cfg[name]} does not match W_enc of shape {tuple(tensors['W_enc'].shape)}")
    if norm in CALLER_SIDE_NORMS:
        warnings.warn(f"{root}: normalize_activations={norm!r} is a dataset-wide transform that SAELens does not apply "
                      "at run time; pass activations already transformed (for a scaling factor, or fold it with "
                      "SAE.fold_input_normalisation(scale=1/factor))", UserWarning, stacklevel=2)
    metadata = {**(cfg.get("metadata") or {}), "format": "saelens"}
    if cfg.get("reshape_activations", "none") != "none":
        metadata["reshape_activations"] = cfg["reshape_activations"]  # hook_z: inputs are flattened (n_heads * d_head)
    k = cfg.get("k")
    b_enc = tensors["b_mag"] if arch == "gated" else tensors["b_enc"]
    return SAE.from_weights(
        tensors["W_enc"], b_enc, tensors["W_dec"], tensors["b_dec"], _ACTIVATION[arch], k=None if k is None else int(k),
        threshold=tensors.get("threshold"), b_gate=tensors.get("b_gate"), r_mag=tensors.get("r_mag"),
        apply_b_dec_to_input=bool(cfg["apply_b_dec_to_input"]),
        rescale_acts_by_decoder_norm=bool(cfg.get("rescale_acts_by_decoder_norm", False)) and arch == "topk",
        input_norm=norm, metadata=metadata,
    )


def write_saelens(sae: SAE, path: str | os.PathLike, **metadata: Any) -> Path:
    """Write ``sae`` in the current SAELens layout under directory ``path`` (created); returns ``path``.

    ``metadata`` (``hook_name``, ``model_name``, ``context_size``, ``prepend_bos``, ...)
    is merged over ``sae.metadata`` into ``cfg.json["metadata"]``.
    """
    if not isinstance(sae, SAE):
        raise TypeError(f"sae must be a gapbound SAE, got {type(sae).__name__}")
    arch = {v: k for k, v in _ACTIVATION.items()}[sae.activation]
    dtype = sae.linear.weight.dtype
    tensors = {"W_enc": sae.linear.weight.T, "W_dec": sae.W_dec, "b_dec": sae.b_dec}
    if arch == "gated":
        tensors.update(b_mag=sae.linear.bias, b_gate=sae.b_gate, r_mag=sae.r_mag)
    else:
        tensors["b_enc"] = sae.linear.bias
    if arch == "jumprelu":
        tensors["threshold"] = sae.threshold.to(dtype)
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in tensors.items()}
    meta = {**sae.metadata, **metadata}
    meta.pop("format", None)
    reshape = meta.pop("reshape_activations", "none")
    meta.setdefault("sae_lens_version", LAYOUT_VERSION)
    meta.setdefault("sae_lens_training_version", None)
    cfg: dict[str, Any] = {
        "architecture": arch, "d_in": sae.M, "d_sae": sae.N, "dtype": str(dtype).replace("torch.", ""), "device": "cpu",
        "apply_b_dec_to_input": sae.apply_b_dec_to_input, "normalize_activations": sae.input_norm,
        "reshape_activations": reshape, "metadata": meta,
    }
    if arch == "topk":
        cfg.update(k=sae.k, rescale_acts_by_decoder_norm=sae.rescale_acts_by_decoder_norm)
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp))
    atomic_write_json(out / CONFIG_FILE, cfg)
    return out
