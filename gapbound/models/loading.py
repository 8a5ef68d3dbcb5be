"""Load an SAE from any supported layout (detected from its files) and save one in the SAELens layout."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch

from .dictionary_learning import DL_CONFIG_FILE, DL_WEIGHTS_FILE, read_dictionary_learning
from .sae import SAE
from .saelens import CONFIG_FILE, WEIGHTS_FILE, parse_dtype, read_saelens, write_saelens

__all__ = ["load_sae", "save_sae", "detect_format"]


def detect_format(path: str | os.PathLike) -> str:
    """``"saelens"`` (``cfg.json`` + ``sae_weights.safetensors``) or ``"dictionary_learning"`` (``ae.pt`` + ``config.json``)."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"SAE directory {root} does not exist (expected {CONFIG_FILE} and {WEIGHTS_FILE} inside)")
    if (root / DL_WEIGHTS_FILE).is_file():
        return "dictionary_learning"
    if (root / CONFIG_FILE).is_file() or (root / WEIGHTS_FILE).is_file():
        return "saelens"
    if (root / DL_CONFIG_FILE).is_file():
        return "dictionary_learning"
    raise FileNotFoundError(f"SAE directory {root} has no {CONFIG_FILE} + {WEIGHTS_FILE} (SAELens) "
                            f"nor {DL_WEIGHTS_FILE} + {DL_CONFIG_FILE} (dictionary_learning)")


def load_sae(path: str | os.PathLike, dtype: str | torch.dtype | None = None, device: str | torch.device = "cpu") -> SAE:
    """Load an SAE saved by SAELens, dictionary_learning or :meth:`SAE.save`; ``encode`` matches the saving library's."""
    if detect_format(path) == "dictionary_learning":
        return read_dictionary_learning(path, dtype=None if dtype is None else parse_dtype(dtype), device=device)
    return read_saelens(path, dtype=dtype, device=device)


def save_sae(path: str | os.PathLike, sae: SAE, D: Any = None, b_dec: Any = None, **metadata: Any) -> Path:
    """Write ``sae`` in the SAELens layout; ``D`` / ``b_dec`` first replace its decoder (on a copy).

    Parameters
    ----------
    path : path-like
        Output directory (created).
    sae : SAE
        The SAE to write.
    D, b_dec : array-like, optional
        An ``M x N`` dictionary (and bias) trained separately, e.g. ``Dictionary.weight``.
    **metadata
        ``cfg.json["metadata"]`` fields (``hook_name``, ``model_name``, ...).
    """
    if not isinstance(sae, SAE):
        raise TypeError(f"sae must be a gapbound SAE, got {type(sae).__name__}")
    if D is not None or b_dec is not None:
        sae = copy.deepcopy(sae).set_decoder(sae.dictionary if D is None else D, b_dec)
    return write_saelens(sae, path, **metadata)

