"""Tightness of the certified witness bounds over a fixed panel of random dictionaries.

For each dictionary (N=16, M=8, seeds ``--seed`` onwards) and witness design, compute the certified bound of
every encoder class (``relu``, ``jumprelu``, ``topk`` with k = K, ``linear-gated``) and the best witness-set
error of encoders of each class trained on the same codes (:func:`gapbound.training.witness.fit_encoder`:
smoothed gates, best iterate, per-latent best rows for ReLU and JumpReLU), two ways:

* ``cold``: ``--restarts`` random initialisations only;
* ``best``: the cold encoder's rows plus warm starts from the bounds' own minimising rows (ReLU: the ReLU
  bound's; JumpReLU: the JumpReLU and ReLU bounds'; TopK: the ReLU, JumpReLU and TopK bounds', the
  weights-only TopK bound's (``topk_hinge=False``, the bound of sessions 6-7) and the best ReLU and
  JumpReLU encoders found here), so the best encoder of the class found by any means here,
  evaluated by its own forward pass;

and report ``ratio = bound / error`` (<= 1 by validity) against both, per class (linear-gated: against the
best of the three classes). Results are checkpointed per dictionary (resume by re-running with the same
options) and written atomically as JSON (``tightness.json``) with the tables as Markdown (``tightness.md``).

    OMP_NUM_THREADS=1 python benchmarks/certify_tightness.py --out results/certify_tightness_s8 --seed 100 --n-dicts 20
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gapbound.synthetic.data import random_dictionary
from gapbound.theory import lower_bound, witness_codes
from gapbound.training.witness import encoder_rows, fit_encoder

PANEL = [("pairs", 2), ("exact", 2), ("exact", 3)]  # (design, K): 'pairs' serves every K >= 2; 'exact' has exactly K non-zeros
# each trained class and the bounds whose rows warm-start it
WARM = {"relu": ("relu",), "jumprelu": ("jumprelu", "relu"), "topk": ("relu", "jumprelu", "topk", "topk-weights")}
# and from the best encoders found for these classes (trained first)
WARM_TRAINED = {"topk": ("relu", "jumprelu")}


def atomic_write(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def evaluate(seed: int, design: str, K: int, N: int, M: int, restarts: int, steps: int) -> dict:
    """One dictionary: every class's certified bound, its time and flags, and its cold and best trained errors."""
    D = random_dictionary(M, N, seed, dtype=torch.float64)
    codes = witness_codes(N, K, design)
    out: dict = {"seed": seed, "design": design, "K": K, "n_codes": len(codes)}
    bounds = {}
    for cls in ("linear-gated", "relu", "jumprelu", "topk"):
        c0, t0 = time.process_time(), time.perf_counter()
        bounds[cls] = lower_bound(D, codes, cls, topk_k=K if cls == "topk" else None)
        out[f"bound_{cls}"] = bounds[cls].bound
        out[f"cpu_seconds_{cls}"], out[f"seconds_{cls}"] = time.process_time() - c0, time.perf_counter() - t0
        out[f"optimal_{cls}"] = bounds[cls].optimal
        out[f"truncated_{cls}"] = len(bounds[cls].truncated_rows)
    c0 = time.process_time()
    bounds["topk-weights"] = lower_bound(D, codes, "topk", topk_k=K, topk_hinge=False)  # session 7's TopK rows
    trained: dict = {}
    for cls, warm in WARM.items():
        k = K if cls == "topk" else None
        cold, enc = fit_encoder(D, codes, cls, k=k, restarts=restarts, steps=steps, seed=seed)
        starts = ([bounds[b].weights for b in warm] + [encoder_rows(enc)]
                  + [encoder_rows(trained[c]) for c in WARM_TRAINED.get(cls, ())])
        best, enc_best = fit_encoder(D, codes, cls, k=k, restarts=len(starts), steps=steps, seed=seed, init=starts)
        trained[cls] = enc_best if best < cold else enc
        out[f"trained_cold_{cls}"], out[f"trained_best_{cls}"] = cold, min(best, cold)
        out[f"ratio_{cls}"] = out[f"bound_{cls}"] / out[f"trained_best_{cls}"]
        out[f"ratio_cold_{cls}"] = out[f"bound_{cls}"] / cold
    out["cpu_seconds_training"] = time.process_time() - c0  # (with the weights-only TopK bound, a warm start)
    best_all = min(out[f"trained_best_{c}"] for c in WARM)
    out["ratio_linear-gated"] = out["bound_linear-gated"] / best_all
    out["valid"] = bool(all(out[f"bound_{c}"] <= out[f"trained_best_{c}"] for c in WARM)
                        and out["bound_linear-gated"] <= best_all)
    return out


def summarise(rows: list[dict]) -> dict:
    out = {}
    for design, K in PANEL:
        sel = [r for r in rows if r["design"] == design and r["K"] == K]
        if not sel:
            continue
        entry: dict = {"n": len(sel), "all_valid": all(r["valid"] for r in sel)}
        for cls in ("relu", "jumprelu", "topk", "linear-gated"):
            entry[f"optimal_{cls}"] = sum(bool(r[f"optimal_{cls}"]) for r in sel)
            for key in (f"ratio_{cls}", f"ratio_cold_{cls}", f"cpu_seconds_{cls}"):
                v = np.array([r[key] for r in sel if key in r])
                if len(v):
                    entry[key] = {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}
                    if key.startswith("ratio"):  # the target
                        entry[key]["at_least_0.7"] = int((v >= 0.7).sum())
        out[f"{design}_K{K}"] = entry
    return out


def markdown(rows: list[dict], summary: dict) -> str:
    """Per-dictionary table (bounds, best and cold trained errors, ratios) and the per-class ``summary``."""
    lines = ["| design | seed | class | bound | trained (best) | trained (cold) | bound / best | bound / cold | CPU s (bound) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for cls in ("jumprelu", "topk"):
            lines.append(f"| {r['design']}:{r['K']} | {r['seed']} | {cls} | {r[f'bound_{cls}']:.3f} | "
                         f"{r[f'trained_best_{cls}']:.3f} | {r[f'trained_cold_{cls}']:.3f} | {r[f'ratio_{cls}']:.3f} | "
                         f"{r[f'ratio_cold_{cls}']:.3f} | {r[f'cpu_seconds_{cls}']:.1f} |")
    lines += ["", "| design | class | bound / best: mean (min - max) | >= 0.7 | bound / cold: mean (min - max) | optimal |",
              "|---|---|---|---|---|---|"]

    def spread(stat: dict | None) -> str:
        return "-" if stat is None else f"{stat['mean']:.3f} ({stat['min']:.3f} - {stat['max']:.3f})"

    for panel, entry in summary.items():
        design = panel.replace("_K", ":")
        for cls in ("relu", "jumprelu", "topk", "linear-gated"):
            best = entry[f"ratio_{cls}"]
            lines.append(f"| {design} | {cls} | {spread(best)} | {best['at_least_0.7']} / {entry['n']} | "
                         f"{spread(entry.get(f'ratio_cold_{cls}'))} | {entry[f'optimal_{cls}']} / {entry['n']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results/certify_tightness", help="output directory")
    p.add_argument("--n-dicts", type=int, default=20, help="dictionaries in the panel (seeds --seed onwards)")
    p.add_argument("--N", type=int, default=16)
    p.add_argument("--M", type=int, default=8)
    p.add_argument("--restarts", type=int, default=16, help="random restarts per class (cold)")
    p.add_argument("--steps", type=int, default=1500, help="full-batch Adam steps per restart")
    p.add_argument("--seed", type=int, default=0, help="first dictionary seed")
    p.add_argument("--designs", nargs="+", default=["pairs:2"],
                   help="design:K pairs to evaluate (e.g. pairs:2 exact:2 exact:3)")
    args = p.parse_args()
    for x in args.designs:
        d, _, k = x.partition(":")
        if (d, int(k) if k.isdigit() else None) not in PANEL:
            p.error(f"--designs: {x!r} is not one of {[f'{a}:{b}' for a, b in PANEL]}")
    torch.set_num_threads(1)
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if k not in ("out", "n_dicts")}
    saved = out / "config.json"
    if saved.exists() and json.loads(saved.read_text()) != config:  # resumed checkpoints must share the protocol
        p.error(f"--out {out} holds a panel made with {saved.read_text().strip()}; use another --out or the same options")
    atomic_write(saved, config)
    panel = [(d, int(k)) for d, k in (x.split(":") for x in args.designs)]
    jobs = [(s, d, K) for s in range(args.seed, args.seed + args.n_dicts) for d, K in panel]
    rows = []
    for seed, design, K in tqdm(jobs, desc="panel"):
        ck = out / "runs" / f"{design}_K{K}_seed{seed}.json"
        if ck.exists():
            rows.append(json.loads(ck.read_text()))
            continue
        r = evaluate(seed, design, K, args.N, args.M, args.restarts, args.steps)
        atomic_write(ck, r)
        rows.append(r)
    result = {"config": vars(args), "summary": summarise(rows), "runs": rows}
    atomic_write(out / "tightness.json", result)
    (out / "tightness.md").write_text(markdown(rows, result["summary"]))
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
