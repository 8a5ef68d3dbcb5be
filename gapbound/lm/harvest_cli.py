"""Command line of the harvest stage: ``python -m gapbound.lm.harvest --out STORE [...]``."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from .harvest import OFFLINE_MODEL, OFFLINE_TEXT, HarvestConfig, config_from_sae, harvest
from .shards import ShardStore
from ..utils.cli import add_debug_arg, run_cli

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gapbound.lm.harvest",
        description="Harvest language-model activations (with their tokens) into a resumable shard store.",
    )
    d = HarvestConfig()
    p.add_argument("--model", default=None, help=f"hub name (gpt2), local directory, or '{OFFLINE_MODEL}' (default)")
    p.add_argument("--text", default=None,
                   help=f"'openwebtext' (online), '{OFFLINE_TEXT}' (default: English text from Python and Debian "
                        "packages, see python -m gapbound.lm.corpus), 'pydoc', or a text file/directory")
    p.add_argument("--layer", type=int, default=None, help="block index (default: middle block)")
    p.add_argument("--site", default=None,
                   help="resid_pre, resid_post (default), mlp_out, attn_z, or a TransformerLens hook name "
                        "(blocks.3.hook_resid_pre, blocks.3.hook_resid_post, blocks.3.hook_mlp_out, blocks.3.attn.hook_z)")
    p.add_argument("--from-sae", default=None, metavar="DIR",
                   help="read hook name, context size, BOS and model from an SAELens SAE's cfg.json in DIR")
    p.add_argument("--context-length", type=int, default=None, help=f"tokens per context (default {d.context_length})")
    p.add_argument("--no-prepend-bos", dest="prepend_bos", action="store_false", default=None,
                   help="do not start contexts of causal models with BOS (default: prepend, as SAELens does)")
    p.add_argument("--max-tokens", type=int, default=None, help="stop after this many tokens (default: whole text)")
    p.add_argument("--contexts-per-shard", type=int, default=d.contexts_per_shard)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--dtype", choices=("float32", "float16"), default=d.dtype)
    p.add_argument("--device", default=d.device)
    p.add_argument("--repair", action="store_true", help="drop corrupted shards (and later ones) before resuming")
    p.add_argument("--out", required=True, help="store directory (resumed if it exists)")
    add_debug_arg(p)
    return p


def config_from_args(args: argparse.Namespace) -> HarvestConfig:
    """Command-line options over ``--from-sae``'s settings over the defaults."""
    given = {k: v for k, v in {"model": args.model, "text": args.text, "layer": args.layer, "site": args.site,
                               "context_length": args.context_length, "prepend_bos": args.prepend_bos}.items()
             if v is not None}
    rest = {"max_tokens": args.max_tokens, "contexts_per_shard": args.contexts_per_shard,
            "batch_size": args.batch_size, "dtype": args.dtype, "device": args.device}
    if args.from_sae:
        base = config_from_sae(args.from_sae)
        if "site" in given and "layer" not in given and given["site"].startswith("blocks."):
            base = replace(base, layer=None)
        return replace(base, **given, **rest)
    return HarvestConfig(**{"model": OFFLINE_MODEL, "text": OFFLINE_TEXT, **given, **rest})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    if args.repair and Path(args.out, "manifest.json").exists():
        print(f"repair: dropped {ShardStore.open(args.out).repair()} shard(s)")
    t0 = time.perf_counter()
    store = harvest(config, args.out)
    print(f"{store.n_contexts} contexts in {store.n_shards} shards at {store.root} "
          f"({time.perf_counter() - t0:.1f} s){' [text exhausted]' if store.complete else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main, resume_hint="finished shards are kept; rerun the same command to continue"))
