"""JumpReLU-class certified bound on the tightness panel, against the trained JumpReLU errors already there.

Reads the per-dictionary checkpoints of ``benchmarks/certify_tightness.py``
(``<panel>/runs/<design>_K<K>_seed<s>.json``: trained ReLU/JumpReLU/TopK
errors and the free-gate bound), computes ``lower_bound(D, codes, "jumprelu")``
for the same dictionary and codes, and reports

    ratio = JumpReLU-class bound / best trained JumpReLU error   (<= 1 by validity)

next to the free-gate ratio. Checkpointed per dictionary, atomic JSON writes.

    python benchmarks/certify_jumprelu.py --panel results/certify_tightness --out results/certify_jumprelu
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gapbound.synthetic.data import random_dictionary
from gapbound.theory import lower_bound, witness_codes

from certify_tightness import atomic_write


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--panel", default="results/certify_tightness", help="certify_tightness output directory")
    p.add_argument("--out", default="results/certify_jumprelu", help="output directory")
    p.add_argument("--N", type=int, default=16)
    p.add_argument("--M", type=int, default=8)
    p.add_argument("--design", default="pairs:2", help="design:K of the panel runs to use")
    p.add_argument("--n-dicts", type=int, default=None, help="only the first n panel dictionaries (default all)")
    p.add_argument("--budget", type=int, default=40, help="jumprelu_budget (branch-and-bound refinements per row)")
    args = p.parse_args()
    torch.set_num_threads(1)
    design, K = args.design.split(":")
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    runs = sorted(Path(args.panel, "runs").glob(f"{design}_K{K}_seed*.json"), key=lambda q: int(q.stem.split("seed")[1]))
    runs = runs[: args.n_dicts]
    if not runs:
        raise SystemExit(f"no panel checkpoints {design}_K{K}_seed*.json under {args.panel}/runs")
    rows = []
    for path in tqdm(runs, desc="jumprelu bounds"):
        ck = out / "runs" / path.name
        if ck.exists():
            rows.append(json.loads(ck.read_text()))
            continue
        prev = json.loads(path.read_text())
        D = random_dictionary(args.M, args.N, prev["seed"], dtype=torch.float64)
        t0 = time.perf_counter()
        b = lower_bound(D, witness_codes(args.N, int(K), design), "jumprelu", jumprelu_budget=args.budget).bound
        r = {"seed": prev["seed"], "bound_jumprelu": b, "seconds": time.perf_counter() - t0,
             "bound_linear_gated": prev["bound_linear_gated"], "bound_relu": prev["bound_relu"],
             "trained": prev["trained"], "ratio_jumprelu": b / prev["trained"]["jumprelu"],
             "ratio_linear_gated": prev["ratio_linear_gated"], "valid": bool(b <= prev["trained"]["jumprelu"])}
        atomic_write(ck, r)
        rows.append(r)
    summary = {"n": len(rows), "all_valid": all(r["valid"] for r in rows)}
    for key in ("ratio_jumprelu", "ratio_linear_gated", "seconds"):
        v = np.array([r[key] for r in rows])
        summary[key] = {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}
    gain = np.array([r["bound_jumprelu"] / r["bound_linear_gated"] for r in rows])
    summary["jumprelu_over_free_gate"] = {"mean": float(gain.mean()), "min": float(gain.min()), "max": float(gain.max())}
    atomic_write(out / "jumprelu.json", {"config": vars(args), "summary": summary, "runs": rows})
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
