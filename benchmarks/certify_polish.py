"""Ablation, side by side in one process: certified bounds with and without the multiplier correction.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/certify_polish.py --encoder-class jumprelu --cases 16:8:2:pairs:0

Each case ``N:M:K:design:seed`` (random dictionary of ``gapbound.synthetic.data``) is bounded twice by
``lower_bound``: as shipped, and with ``duality._polish`` (the float correction of the multipliers towards
``g = 0``) replaced by the identity. Prints one JSON line per case: bound, optimal, open rows, nodes,
process CPU seconds and the best rows' error (``upper``) of each variant.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from gapbound.synthetic.data import random_dictionary
from gapbound.theory import duality, lower_bound, witness_codes
from gapbound.theory.certificate import default_max_partners


def _identity(Aa, L, Bi, keep, sw, lam, mu, nu, rounds=2):
    return lam, mu, nu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder-class", default="jumprelu", choices=["linear-gated", "relu", "jumprelu"])
    p.add_argument("--cases", nargs="+", default=["16:8:2:pairs:0"], help="N:M:K:design:seed")
    args = p.parse_args()
    torch.set_num_threads(1)
    shipped = duality._polish
    for case in args.cases:
        N, M, K, design, seed = case.split(":")
        N, M, K, seed = int(N), int(M), int(K), int(seed)
        D = random_dictionary(M, N, seed, dtype=torch.float64)
        codes = witness_codes(N, K, design, default_max_partners(N, M, None))
        out = {"case": case, "class": args.encoder_class}
        try:
            for name, fn in (("polish", shipped), ("no_polish", _identity)):
                duality._polish = fn
                c0 = time.process_time()
                r = lower_bound(D, codes, args.encoder_class)
                out[name] = {"bound": r.bound, "optimal": r.optimal, "open_rows": len(r.truncated_rows),
                             "nodes": int(sum(x.n_subproblems for x in r.rows)),
                             "cpu_s": round(time.process_time() - c0, 1), "upper": sum(x.upper for x in r.rows)}
        finally:
            duality._polish = shipped
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
