"""Tightness of the certified witness bound over a fixed panel of random dictionaries.

For each dictionary (N=16, M=8, seeds 0..n-1) and witness design, compute the
certified bounds of both encoder classes and the best witness-set error that
trained SAEs reach on the same codes (ReLU, JumpReLU, TopK; several restarts,
the first warm-started from the bound's own minimising rows), and report

    ratio = certified bound / best trained error   (<= 1 by validity)

for the ReLU class (vs the best ReLU), the JumpReLU class (vs the best
JumpReLU), TopK (the linear-gated bound, its only bound, vs the best TopK) and the
linear-gated class (vs the best of all three activations). The JumpReLU bound is also compared with the
best JumpReLU encoder found by any means (``ratio_jumprelu_best_found``): the trained one or the encoder
its own branch and bound returns (its rows, thresholds by exact search, error by the SAE forward pass).
Results are checkpointed per dictionary (resume by re-running) and written atomically as JSON; ``--reuse``
takes the trained errors and ReLU/linear-gated bounds of an earlier panel (same protocol) and recomputes
only the JumpReLU bound; ``--topk-only`` (with ``--reuse``) computes only the TopK class bound
(``encoder_class="topk"``, k = K) instead, and compares it with the trained TopK encoders and with the TopK
encoder the bound's own rows form (no training steps).

    python benchmarks/certify_tightness.py --out results/certify_tightness --n-dicts 20
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
from gapbound.training.witness import fit_encoder

PANEL = [("pairs", 2), ("exact", 2), ("exact", 3)]  # (design, K): 'pairs' serves every K >= 2; 'exact' has exactly K non-zeros


def atomic_write(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def evaluate_topk(seed: int, design: str, K: int, N: int, M: int, reuse: dict) -> dict:
    """One dictionary, TopK class only: the TopK bound (k = K) against ``reuse``'s trained TopK encoders and the
    TopK encoder formed by the bound's own rows (SAE forward pass, no training)."""
    D = random_dictionary(M, N, seed, dtype=torch.float64)
    codes = witness_codes(N, K, design)
    c0, t0 = time.process_time(), time.perf_counter()
    res = lower_bound(D, codes, "topk", topk_k=K)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    rows_err, _ = fit_encoder(D, codes, "topk", k=K, restarts=1, steps=0, seed=seed, init=res.weights)
    trained = reuse["trained"]["topk"]
    best = min(trained, rows_err)
    return {"seed": seed, "design": design, "K": K, "n_codes": len(codes), "reused_from": reuse["_path"],
            "bound_topk": res.bound, "bound_linear_gated": reuse["bound_linear_gated"], "trained_topk": trained,
            "topk_rows_error": rows_err, "cpu_seconds_topk_bound": cpu, "seconds_topk_bound": wall,
            "ratio_topk": res.bound / trained, "ratio_topk_best_found": res.bound / best,
            "ratio_topk_linear_gated": reuse["bound_linear_gated"] / trained, "valid": bool(res.bound <= best)}


def evaluate(seed: int, design: str, K: int, N: int, M: int, restarts: int, steps: int, reuse: dict | None) -> dict:
    """One dictionary: the bounds, the trained encoders' errors (or ``reuse``'s, same protocol) and the error
    of the JumpReLU encoder the JumpReLU bound's own rows form (evaluated by the SAE forward pass)."""
    D = random_dictionary(M, N, seed, dtype=torch.float64)
    codes = witness_codes(N, K, design)
    if reuse is None:
        t0 = time.perf_counter()
        relu_b = lower_bound(D, codes, "relu")
        t1 = time.perf_counter()
        gated_b = lower_bound(D, codes, "linear-gated")
        t2 = time.perf_counter()
        trained = {}
        for act, k in (("relu", None), ("jumprelu", None), ("topk", K)):
            err, _ = fit_encoder(D, codes, act, k=k, restarts=restarts, steps=steps, seed=seed, init=relu_b.weights)
            trained[act] = err
        base = {"bound_relu": relu_b.bound, "bound_linear_gated": gated_b.bound, "seconds_relu_bound": t1 - t0,
                "seconds_gated_bound": t2 - t1, "trained": trained, "optimal_relu": relu_b.optimal,
                "optimal_linear_gated": gated_b.optimal}
    else:
        base = {k: reuse[k] for k in ("bound_relu", "bound_linear_gated", "seconds_relu_bound", "seconds_gated_bound",
                                      "trained", "optimal_relu", "optimal_linear_gated")}
        base["reused_from"] = reuse["_path"]
    trained = base["trained"]
    c0 = time.process_time()
    t3 = time.perf_counter()
    jump_b = lower_bound(D, codes, "jumprelu")
    t4 = time.perf_counter()
    c1 = time.process_time()
    # the bound's own rows as a JumpReLU encoder: no training steps, thresholds by exact 1-D search, SAE forward
    rows_err, _ = fit_encoder(D, codes, "jumprelu", restarts=1, steps=0, seed=seed, init=jump_b.weights)
    best_jump = min(trained["jumprelu"], rows_err)
    best_all = min(min(trained.values()), rows_err)
    return {
        "seed": seed, "design": design, "K": K, "n_codes": len(codes), **base,
        "bound_jumprelu": jump_b.bound, "optimal_jumprelu": jump_b.optimal,
        "truncated_jumprelu": len(jump_b.truncated_rows), "seconds_jumprelu_bound": t4 - t3,
        "cpu_seconds_jumprelu_bound": c1 - c0, "jumprelu_rows_error": rows_err, "best_trained": min(trained.values()),
        "ratio_relu": base["bound_relu"] / trained["relu"], "ratio_linear_gated": base["bound_linear_gated"] / best_all,
        "ratio_jumprelu": jump_b.bound / trained["jumprelu"], "ratio_jumprelu_best_found": jump_b.bound / best_jump,
        "ratio_topk": base["bound_linear_gated"] / trained["topk"],
        "valid": bool(base["bound_relu"] <= trained["relu"] and base["bound_linear_gated"] <= best_all
                      and jump_b.bound <= best_jump),
    }


def summarise(rows: list[dict]) -> dict:
    out = {}
    for design, K in PANEL:
        sel = [r for r in rows if r["design"] == design and r["K"] == K]
        if not sel:
            continue
        entry = {"n": len(sel), "all_valid": all(r["valid"] for r in sel),
                 "jumprelu_optimal": sum(bool(r.get("optimal_jumprelu")) for r in sel)}
        for key in ("ratio_relu", "ratio_jumprelu", "ratio_jumprelu_best_found", "ratio_topk", "ratio_linear_gated",
                    "ratio_topk_best_found", "ratio_topk_linear_gated", "cpu_seconds_topk_bound"):
            v = np.array([r[key] for r in sel if key in r])  # runs from before the JumpReLU bound lack it
            if len(v) == 0:
                continue
            entry[key] = {"n": len(v), "mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}
        out[f"{design}_K{K}"] = entry
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results/certify_tightness", help="output directory")
    p.add_argument("--n-dicts", type=int, default=20, help="dictionaries in the panel (seeds 0..n-1)")
    p.add_argument("--N", type=int, default=16)
    p.add_argument("--M", type=int, default=8)
    p.add_argument("--restarts", type=int, default=4, help="encoder restarts per activation")
    p.add_argument("--steps", type=int, default=2000, help="full-batch Adam steps per restart")
    p.add_argument("--seed", type=int, default=0, help="first dictionary seed")
    p.add_argument("--reuse", default=None,
                   help="earlier panel folder: take its trained errors and ReLU/linear-gated bounds (same protocol), "
                   "recompute the JumpReLU bound")
    p.add_argument("--designs", nargs="+", default=[f"{d}:{k}" for d, k in PANEL],
                   help="design:K pairs to evaluate (default: pairs:2 exact:2 exact:3)")
    p.add_argument("--topk-only", action="store_true",
                   help="with --reuse: compute only the TopK class bound (k = K) against the reused trained TopK errors")
    args = p.parse_args()
    if args.topk_only and args.reuse is None:
        p.error("--topk-only needs --reuse (the trained TopK errors of an earlier panel)")
    torch.set_num_threads(1)
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    panel = [(d, int(k)) for d, k in (x.split(":") for x in args.designs)]
    jobs = [(s, d, K) for s in range(args.seed, args.seed + args.n_dicts) for d, K in panel]
    rows = []
    for seed, design, K in tqdm(jobs, desc="panel"):
        ck = out / "runs" / f"{design}_K{K}_seed{seed}.json"
        if ck.exists():
            rows.append(json.loads(ck.read_text()))
            continue
        reuse = None
        if args.reuse is not None:
            old = Path(args.reuse) / "runs" / ck.name
            reuse = dict(json.loads(old.read_text()), _path=str(old)) if old.exists() else None
        if args.topk_only and reuse is None:
            print(f"skipping {ck.name}: not in --reuse {args.reuse}")
            continue
        r = (evaluate_topk(seed, design, K, args.N, args.M, reuse) if args.topk_only
             else evaluate(seed, design, K, args.N, args.M, args.restarts, args.steps, reuse))
        atomic_write(ck, r)
        rows.append(r)
    result = {"config": vars(args), "summary": summarise(rows), "runs": rows}
    atomic_write(out / "tightness.json", result)
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
