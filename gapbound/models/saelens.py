"""Read and write SAEs in the SAELens on-disk layout, so the gap meter works on SAEs trained elsewhere.

A SAELens SAE directory holds ``cfg.json`` and ``sae_weights.safetensors``
with ``W_enc`` (``d_in x d_sae``), ``b_enc`` (``d_sae``), ``W_dec``
(``d_sae x d_in``) and ``b_dec`` (``d_in``), plus ``threshold`` (``d_sae``)
for JumpReLU SAEs. The SAELens forward pass is::

    sae_in = x - b_dec            (only if cfg["apply_b_dec_to_input"])
    acts   = act(sae_in @ W_enc + b_enc)
    x_hat  = acts @ W_dec + b_dec

with ``act`` ReLU (``architecture`` ``"standard"``), JumpReLU
(``z * (z > threshold)``) or TopK (``k`` from ``cfg["k"]`` or
``cfg["activation_fn_kwargs"]["k"]``). In gapbound's notation the decoder is
``x_hat = D s + b_dec`` with ``D = W_dec^T`` (``M x N``). Activation
normalisation other than ``"none"`` (e.g. SAELens's
``expected_average_only_in``) depends on a dataset statistic that is not in
the directory, so it is rejected rather than silently ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .encoders import SAE
from ..utils.io import atomic_write
from ..utils.validation import check_dictionary, check_int

__all__ = ["SAELensSAE", "load_sae", "save_sae", "WEIGHTS_FILE", "CONFIG_FILE"]

WEIGHTS_FILE = "sae_weights.safetensors"
CONFIG_FILE = "cfg.json"
_ARCHITECTURES = ("standard", "relu", "jumprelu", "topk")


class SAELensSAE(nn.Module):
    """An SAE with SAELens's parameter names and forward pass.

    Parameters
    ----------
    W_enc, b_enc, W_dec, b_dec : torch.Tensor
        Shapes ``(d_in, d_sae)``, ``(d_sae,)``, ``(d_sae, d_in)``, ``(d_in,)``.
    architecture : str
        ``"standard"`` (ReLU), ``"jumprelu"`` or ``"topk"``.
    apply_b_dec_to_input : bool
        Subtract ``b_dec`` from the input before encoding.
    threshold : torch.Tensor, optional
        JumpReLU thresholds (``d_sae``).
    k : int, optional
        TopK's number of active latents.
    cfg : dict, optional
        The full ``cfg.json`` contents, kept for saving.
    """

    def __init__(
        self, W_enc: torch.Tensor, b_enc: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor,
        architecture: str = "standard", apply_b_dec_to_input: bool = False, threshold: torch.Tensor | None = None,
        k: int | None = None, cfg: dict | None = None,
    ):
        super().__init__()
        d_in, d_sae = W_enc.shape
        expected = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
        for name, t in zip(expected, (W_enc, b_enc, W_dec, b_dec)):
            if tuple(t.shape) != expected[name]:
                raise ValueError(f"{name} must have shape {expected[name]} (d_in={d_in}, d_sae={d_sae}), got {tuple(t.shape)}")
            if not torch.isfinite(t).all():
                raise ValueError(f"{name} contains NaN or infinite values")
        architecture = "standard" if architecture == "relu" else architecture
        if architecture not in _ARCHITECTURES:
            raise ValueError(f"architecture must be one of {_ARCHITECTURES}, got {architecture!r}")
        if architecture == "jumprelu" and (threshold is None or tuple(threshold.shape) != (d_sae,)):
            raise ValueError(f"a jumprelu SAE needs a 'threshold' tensor of shape ({d_sae},)")
        if architecture == "topk":
            if k is None:
                raise ValueError("a topk SAE needs k in cfg.json ('k' or activation_fn_kwargs.k)")
            check_int("k", k, minimum=1, maximum=d_sae)
        self.W_enc, self.b_enc = nn.Parameter(W_enc), nn.Parameter(b_enc)
        self.W_dec, self.b_dec = nn.Parameter(W_dec), nn.Parameter(b_dec)
        self.threshold = None if threshold is None else nn.Parameter(threshold)
        self.architecture, self.apply_b_dec_to_input, self.k = architecture, bool(apply_b_dec_to_input), k
        self.cfg = dict(cfg or {})

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[1]

    @property
    def dictionary(self) -> torch.Tensor:
        """The decoder in gapbound's convention, ``D = W_dec^T`` (``d_in x d_sae``)."""
        return self.W_dec.detach().T

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent activations of a batch ``x`` (``n x d_in``)."""
        if x.ndim != 2 or x.shape[1] != self.d_in:
            raise ValueError(f"x must have shape (n, {self.d_in}), got {tuple(x.shape)}")
        x = x.to(self.W_enc.dtype)
        z = (x - self.b_dec if self.apply_b_dec_to_input else x) @ self.W_enc + self.b_enc
        if self.architecture == "jumprelu":
            return z * (z > self.threshold)
        if self.architecture == "topk":
            top = z.topk(self.k, dim=1)
            return torch.zeros_like(z).scatter(1, top.indices, torch.relu(top.values))
        return torch.relu(z)

    def decode(self, s: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``s @ W_dec + b_dec``."""
        return s @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    @classmethod
    def from_gapbound(cls, encoder: SAE, D: Any, b_dec: Any = None, cfg: dict | None = None) -> "SAELensSAE":
        """Wrap a gapbound :class:`~gapbound.models.encoders.SAE` and its ``M x N`` dictionary ``D``."""
        if not isinstance(encoder, SAE):
            raise TypeError(f"encoder must be a gapbound.models.encoders.SAE, got {type(encoder).__name__}")
        D = check_dictionary(D, rows=encoder.M, cols=encoder.N).detach().float()
        b = torch.zeros(encoder.M) if b_dec is None else torch.as_tensor(b_dec, dtype=torch.float32).reshape(-1)
        W = encoder.linear.weight.detach().float()
        thr = encoder.log_threshold.detach().exp().float() if encoder.activation == "jumprelu" else None
        arch = {"relu": "standard", "jumprelu": "jumprelu", "topk": "topk"}[encoder.activation]
        return cls(W.T.contiguous(), encoder.linear.bias.detach().float().clone(), D.T.contiguous(), b, arch,
                   apply_b_dec_to_input=False, threshold=thr, k=encoder.k, cfg=cfg)


def save_sae(path: str | os.PathLike, sae: SAELensSAE | SAE, D: Any = None, b_dec: Any = None, **cfg_extra: Any) -> Path:
    """Write ``sae`` in the SAELens layout (``cfg.json`` + ``sae_weights.safetensors``) under directory ``path``.

    Parameters
    ----------
    path : path-like
        Output directory (created).
    sae : SAELensSAE or gapbound SAE
        A gapbound :class:`~gapbound.models.encoders.SAE` needs its dictionary ``D`` (``M x N``).
    D, b_dec : array-like, optional
        Decoder and decoder bias for a gapbound SAE.
    **cfg_extra
        Extra ``cfg.json`` fields (e.g. ``hook_name``, ``model_name``).
    """
    if isinstance(sae, SAE):
        if D is None:
            raise ValueError("saving a gapbound SAE needs its dictionary D (M x N)")
        sae = SAELensSAE.from_gapbound(sae, D, b_dec)
    elif not isinstance(sae, SAELensSAE):
        raise TypeError(f"sae must be a SAELensSAE or gapbound SAE, got {type(sae).__name__}")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {name: getattr(sae, name).detach().cpu().contiguous() for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    if sae.threshold is not None:
        tensors["threshold"] = sae.threshold.detach().cpu().contiguous()
    cfg = {**sae.cfg, "d_in": sae.d_in, "d_sae": sae.d_sae, "architecture": sae.architecture,
           "activation_fn_str": {"standard": "relu", "jumprelu": "jumprelu", "topk": "topk"}[sae.architecture],
           "apply_b_dec_to_input": sae.apply_b_dec_to_input, "normalize_activations": "none",
           "dtype": str(sae.W_enc.dtype).replace("torch.", ""), **cfg_extra}
    if sae.k is not None:
        cfg["k"] = sae.k
        cfg["activation_fn_kwargs"] = {"k": sae.k}
    atomic_write(out / WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp))
    atomic_write(out / CONFIG_FILE, lambda tmp: Path(tmp).write_text(json.dumps(cfg, indent=1)))
    return out


def load_sae(path: str | os.PathLike, device: str | torch.device = "cpu") -> SAELensSAE:
    """Load an SAE saved in the SAELens layout from directory ``path``.

    Raises
    ------
    FileNotFoundError
        If the directory or one of its two files is missing.
    ValueError
        If tensors are missing or mis-shaped, or the config asks for an unsupported feature.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"SAE directory {root} does not exist (expected {CONFIG_FILE} and {WEIGHTS_FILE} inside)")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (root / name).is_file():
            raise FileNotFoundError(f"SAE directory {root} has no {name} (SAELens layout: {CONFIG_FILE} + {WEIGHTS_FILE})")
    try:
        cfg = json.loads((root / CONFIG_FILE).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{root / CONFIG_FILE} is not valid JSON: {err}") from err
    tensors = load_file(str(root / WEIGHTS_FILE), device=str(device))
    missing = [n for n in ("W_enc", "b_enc", "W_dec", "b_dec") if n not in tensors]
    if missing:
        raise ValueError(f"{root / WEIGHTS_FILE} lacks tensors {missing} (has {sorted(tensors)})")
    norm = cfg.get("normalize_activations", "none") or "none"
    if norm != "none":
        raise ValueError(f"cfg.json normalize_activations={norm!r} needs a dataset scaling factor not stored here; "
                         "normalise the activations yourself and set it to 'none'")
    arch = cfg.get("architecture", cfg.get("activation_fn_str", "standard"))
    k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
    for name, dim in (("d_in", 0), ("d_sae", 1)):
        if name in cfg and cfg[name] != tensors["W_enc"].shape[dim]:
            raise ValueError(f"cfg.json {name}={cfg[name]} does not match W_enc of shape {tuple(tensors['W_enc'].shape)}")
    return SAELensSAE(tensors["W_enc"], tensors["b_enc"], tensors["W_dec"], tensors["b_dec"], arch,
                      bool(cfg.get("apply_b_dec_to_input", False)), tensors.get("threshold"),
                      None if k is None else int(k), cfg)
