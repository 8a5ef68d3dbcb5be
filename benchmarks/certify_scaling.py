"""Wall time of `certify` (linear-gated bound, pairs design, M = 8) as N grows.

    python benchmarks/certify_scaling.py --out results/certify_scaling --Ns 16 32 64
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from gapbound.synthetic.data import random_dictionary
from gapbound.theory import certify


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results/certify_scaling")
    p.add_argument("--Ns", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--M", type=int, default=8)
    p.add_argument("--K", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoder-class", default="linear-gated", choices=["linear-gated", "relu"])
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for N in args.Ns:
        D = random_dictionary(args.M, N, args.seed)
        t0 = time.perf_counter()
        res = certify(D, args.K, encoder_class=args.encoder_class)
        dt = time.perf_counter() - t0
        rows.append({"N": N, "seconds": dt, "n_codes": len(res.witness_codes), "lower_bound": res.lower_bound,
                     "hypotheses_hold": res.hypotheses_hold})
        print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "scaling.json.tmp"
    tmp.write_text(json.dumps({"config": vars(args), "rows": rows}, indent=1))
    os.replace(tmp, out / "scaling.json")


if __name__ == "__main__":
    main()
