"""Harvest language-model activations into a resumable shard store.

The paper trains its encoders on GPT-2 small residual-stream activations from
OpenWebText in contexts of 128 tokens. :func:`harvest` cuts a text source
(:mod:`gapbound.lm.text`) into fixed-length contexts, runs a language model
(:mod:`gapbound.lm.models`) up to one site of one layer, and records the
activations with their tokens into a :class:`gapbound.lm.shards.ShardStore`.
Contexts of causal models start with BOS by default, as SAELens's do; masked
models' contexts are wrapped in ``[CLS] ... [SEP]``. The BOS / CLS / SEP
positions are stored but excluded from training and evaluation (the store's
``positions``), since their activations are outliers that carry no text.

:func:`config_from_sae` reads an SAELens SAE's ``cfg.json`` (hook name,
context size, BOS, model) so that ``--from-sae DIR`` harvests the activations
that SAE was trained on. Command line: ``python -m gapbound.lm.harvest``
(:mod:`gapbound.lm.harvest_cli`).
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .models import (  # noqa: F401  (re-exported: the public names of the harvest stage)
    OFFLINE_MODEL, SITES, LanguageModel, hook_name, load_language_model, parse_hook_name, resolve_model_source,
    site_activations, site_module,
)
from .shards import ShardStore
from .text import UnavailableError, iter_contexts, iter_documents, text_id  # noqa: F401
from ..utils.validation import check_int

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
    "config_from_sae",
    "harvest",
]

OFFLINE_TEXT = "offline"
# TransformerLens model names SAELens configs use -> Hugging Face names
_TL_MODELS = {"gpt2-small": "gpt2", "gpt2-medium": "gpt2-medium", "gpt2-large": "gpt2-large", "gpt2-xl": "gpt2-xl",
              "pythia-70m-deduped": "EleutherAI/pythia-70m-deduped", "pythia-70m": "EleutherAI/pythia-70m"}
_TL_DATASETS = {"Skylion007/openwebtext": "openwebtext", "openwebtext": "openwebtext"}


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
        One of :data:`SITES`, or a TransformerLens hook name (``blocks.3.hook_resid_pre``),
        which also sets ``layer``.
    text : str
        ``"openwebtext"``, ``"offline"``, ``"pydoc"`` or a path (see :func:`iter_documents`).
    context_length : int
        Tokens per context, special tokens included (the paper: 128).
    prepend_bos : bool
        Start every context of a causal model with BOS (SAELens's default).
        Masked models always wrap contexts in ``[CLS] ... [SEP]``.
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
    prepend_bos: bool = True
    max_tokens: int | None = None
    contexts_per_shard: int = 512
    batch_size: int = 32
    dtype: str = "float32"
    device: str = "auto"

    def resolved(self) -> "HarvestConfig":
        """The same configuration with a hook-name ``site`` split into ``layer`` and ``site``."""
        if self.site in SITES or not isinstance(self.site, str) or not self.site.startswith("blocks."):
            return self
        layer, site = parse_hook_name(self.site)
        if self.layer is not None and self.layer != layer:
            raise ValueError(f"layer={self.layer} contradicts the hook name {self.site!r}")
        return replace(self, layer=layer, site=site)

    def validate(self) -> None:
        check_int("context_length", self.context_length, minimum=1)
        check_int("contexts_per_shard", self.contexts_per_shard, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        if self.max_tokens is not None:
            check_int("max_tokens", self.max_tokens, minimum=self.context_length)
        if self.layer is not None:
            check_int("layer", self.layer, minimum=0)
        if self.site not in SITES:
            if not (isinstance(self.site, str) and self.site.startswith("blocks.")):
                raise ValueError(f"site must be one of {SITES} or a hook name such as blocks.3.hook_resid_post, got {self.site!r}")
            parse_hook_name(self.site)
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be 'float32' or 'float16', got {self.dtype!r}")
        if not isinstance(self.prepend_bos, bool):
            raise TypeError(f"prepend_bos must be True or False, got {self.prepend_bos!r}")


def config_from_sae(sae_dir: str | os.PathLike, **overrides) -> HarvestConfig:
    """A :class:`HarvestConfig` matching what an SAELens SAE was trained on.

    Reads ``cfg.json`` (SAELens 6 keeps these under ``metadata``; older files
    at the top level): ``hook_name``, ``context_size``, ``prepend_bos``
    (SAELens's default True when missing), ``model_name`` (TransformerLens
    names such as ``gpt2-small`` map to Hugging Face names) and
    ``dataset_path``. ``overrides`` replace any field (e.g. ``text="offline"``
    when the SAE's dataset is not reachable).

    Raises
    ------
    ValueError
        No ``cfg.json``, no hook name in it, or a hook name this harvester does not support.
    """
    path = Path(sae_dir) / "cfg.json"
    if not path.is_file():
        raise ValueError(f"--from-sae {sae_dir}: no cfg.json there (expected an SAE saved in the SAELens layout)")
    cfg = json.loads(path.read_text())
    meta = {**cfg, **(cfg.get("metadata") or {})}
    hook = meta.get("hook_name") or meta.get("hook_point")
    if not hook:
        raise ValueError(f"{path} names no hook_name; pass --site/--layer instead of --from-sae")
    if meta.get("hook_head_index") is not None:
        raise ValueError(f"{path}: SAEs on a single attention head (hook_head_index) are not supported")
    layer, site = parse_hook_name(hook)
    fields: dict = {"layer": layer, "site": site}
    if meta.get("context_size"):
        fields["context_length"] = int(meta["context_size"])
    fields["prepend_bos"] = bool(meta.get("prepend_bos", True))
    if meta.get("model_name"):
        fields["model"] = _TL_MODELS.get(meta["model_name"], meta["model_name"])
    if meta.get("dataset_path") in _TL_DATASETS:
        fields["text"] = _TL_DATASETS[meta["dataset_path"]]
    return replace(HarvestConfig(**fields), **overrides)


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
    config = config.resolved()
    if lm is None:
        lm = load_language_model(config.model, config.device)
    elif lm.name != config.model:
        raise ValueError(f"lm was loaded as {lm.name!r} but config.model is {config.model!r}")
    layer = lm.n_layers // 2 if config.layer is None else config.layer
    site_module(lm, layer, config.site)  # fail now on a bad layer or a site this architecture lacks
    L = config.context_length
    if lm.max_positions is not None and L > lm.max_positions:
        raise ValueError(f"context_length={L} exceeds the {lm.max_positions} positions {lm.name!r} supports")
    if lm.masked and L < 3:
        raise ValueError(f"context_length must be >= 3 for a masked model ([CLS] + tokens + [SEP]), got {L}")
    bos = config.prepend_bos and not lm.masked
    contexts = iter_contexts(iter_documents(config.text), lm.tokenizer, L, wrap=lm.masked, prepend_bos=bos)
    first = next(contexts, None)
    if first is None:
        raise ValueError(f"the text source {config.text!r} holds fewer than one context of {L} tokens")
    contexts = itertools.chain([first], contexts)

    fingerprint = {"model": config.model, "layer": layer, "site": config.site, "text": text_id(config.text),
                   "context_length": L}
    if bos:  # recorded only when on, so stores harvested before the option existed still open
        fingerprint["prepend_bos"] = True
    store = ShardStore.open_or_create(
        out_dir,
        fingerprint,
        d_model=lm.d_model,
        context_length=L,
        dtype=config.dtype,
        positions=(1, L - 1) if lm.masked else ((1, L) if bos else (0, L)),
        meta={"tokenizer": lm.source, "model_type": lm.model.config.model_type, "n_layers": lm.n_layers,
              "masked": lm.masked, "hook_name": hook_name(layer, config.site), "prepend_bos": bos},
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


if __name__ == "__main__":
    from .harvest_cli import main
    from ..utils.cli import run_cli

    raise SystemExit(run_cli(main, resume_hint="finished shards are kept; rerun the same command to continue"))
