"""Harvest and training throughput of the language-model experiment, in tokens per second.

    OMP_NUM_THREADS=1 python -m benchmarks.lm_throughput --threads 1            # offline preset's shapes
    python -m benchmarks.lm_throughput --model gpt2 --layer 6 --device cuda     # GPT-2 on a GPU

Harvest: contexts of 128 tokens of the offline corpus through the model up to
the site (the forward pass stops there), reported as tokens/s. Training: one
step of each method at the offline preset's shapes (SAE / MLP: TopK + AuxK on
``batch_size`` vectors; LCA: ``lca_iters`` inference iterations on
``lca_batch_size`` vectors, then the dictionary step), reported as training
tokens/s, min over ``--repeats`` timed blocks (the minimum is the least
disturbed by other jobs on a shared machine). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time

import numpy as np
import torch

from gapbound.lm.models import load_language_model, site_activations
from gapbound.lm.text import iter_contexts, iter_documents
from gapbound.lm.training import METHODS, build_model
from gapbound.utils.cli import add_debug_arg, positive_int, run_cli
from simulations.gpt2 import PRESETS


def _min_time(fn, repeats: int, inner: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def harvest_rate(model: str, layer: int, text: str, n_contexts: int, batch: int, device: str, repeats: int) -> dict:
    lm = load_language_model(model, device)
    ctx = np.stack(list(itertools.islice(
        iter_contexts(iter_documents(text), lm.tokenizer, 128, wrap=lm.masked, prepend_bos=not lm.masked), n_contexts)))
    sec = _min_time(lambda: [site_activations(lm, ctx[i:i + batch], layer, "resid_post") for i in range(0, len(ctx), batch)],
                    repeats, 1)
    return {"model": model, "layer": layer, "d_model": lm.d_model, "contexts": len(ctx), "tokens_per_s": ctx.size / sec}


def train_rates(d_model: int, k: int, repeats: int, device: str) -> dict:
    cfg = PRESETS["offline"].train
    out = {}
    gen = torch.Generator().manual_seed(0)
    for method in METHODS:
        model = build_model(method, d_model, k, cfg).to(device)
        batch = cfg.lca_batch_size if method == "LCA" else cfg.batch_size
        X = torch.randn(batch, d_model, generator=gen).to(device)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)

        def step() -> None:
            loss, _ = model.loss((X, None, None), 1.0 / d_model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.after_step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        sec = _min_time(step, repeats, 3)
        out[method] = {"batch": batch, "seconds_per_step": sec, "tokens_per_s": batch / sec}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.lm_throughput", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="minilm")
    p.add_argument("--layer", type=int, default=3)
    p.add_argument("--text", default="offline")
    p.add_argument("--contexts", type=positive_int, default=64)
    p.add_argument("--batch", type=positive_int, default=32, help="contexts per forward pass")
    p.add_argument("--k", type=positive_int, default=32, help="L0 target of the training steps")
    p.add_argument("--repeats", type=positive_int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=positive_int, default=None)
    add_debug_arg(p)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    hv = harvest_rate(args.model, args.layer, args.text, args.contexts, args.batch, args.device, args.repeats)
    result = {"threads": torch.get_num_threads(), "device": args.device, "harvest": hv,
              "train": train_rates(hv["d_model"], args.k, args.repeats, args.device)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, resume_hint=None))
