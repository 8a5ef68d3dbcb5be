"""Wall time of `certify` per encoder class (pairs design, M = 8) as N grows; one thread.

    python benchmarks/certify_scaling.py --out results/certify_scaling --Ns 16 32 64 --encoder-class relu

Writes ``OUT/scaling_<class>.json`` (rows written as each N finishes) with the bound,
whether it is the class optimum (``optimal``), how many rows were truncated, the wall and
process CPU time (the fairer figure on a shared machine) and the load average.
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
    p.add_argument("--encoder-class", default="linear-gated", choices=["linear-gated", "relu", "jumprelu", "topk"])
    p.add_argument("--max-subproblems", type=int, default=20000, help="per-row budget (drop sets; relu/jumprelu: branch-and-bound nodes)")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for N in args.Ns:
        D = random_dictionary(args.M, N, args.seed)
        t0, c0 = time.perf_counter(), time.process_time()
        res = certify(D, args.K, encoder_class=args.encoder_class, max_subproblems=args.max_subproblems)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        rows.append({"N": N, "seconds": dt, "cpu_seconds": cpu, "load_average_1min": os.getloadavg()[0],
                     "n_codes": len(res.witness_codes), "lower_bound": res.lower_bound,
                     "hypotheses_hold": res.hypotheses_hold, "optimal": res.optimal,
                     "n_truncated_rows": len(res.truncated_rows)})
        print(json.dumps(rows[-1]), flush=True)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f"scaling_{args.encoder_class}.json.tmp"
        tmp.write_text(json.dumps({"config": vars(args), "rows": rows}, indent=1))
        os.replace(tmp, out / f"scaling_{args.encoder_class}.json")


if __name__ == "__main__":
    main()
