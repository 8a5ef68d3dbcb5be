"""JumpReLU bound row by row on one dictionary: bound, best JumpReLU row found, nodes, and why a row is open.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/certify_jumprelu_rows.py --seed 0

Pairs design (``--K``, default 2), ``N x M`` random dictionary of ``gapbound.synthetic.data`` (default 16 x 8);
prints one JSON object: the bound, process CPU seconds, and per row ``[row, bound, upper, nodes, reason]``
(``reason`` empty for a closed row; docs/theory.md, "Why JumpReLU rows stay open").
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from gapbound.synthetic.data import random_dictionary
from gapbound.theory import lower_bound, witness_codes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--N", type=int, default=16)
    p.add_argument("--M", type=int, default=8)
    p.add_argument("--K", type=int, default=2)
    p.add_argument("--max-subproblems", type=int, default=20000, help="node budget per row")
    args = p.parse_args()
    torch.set_num_threads(1)
    D = random_dictionary(args.M, args.N, args.seed, dtype=torch.float64)
    codes = witness_codes(args.N, args.K, "pairs")
    c0 = time.process_time()
    res = lower_bound(D, codes, "jumprelu", max_subproblems=args.max_subproblems)
    rows = [[r.row, r.bound, r.upper, r.n_subproblems, r.truncated or ""] for r in res.rows]
    print(json.dumps({"seed": args.seed, "bound": res.bound, "best_rows_found": sum(r.upper for r in res.rows),
                      "open_rows": len(res.truncated_rows), "cpu_seconds": time.process_time() - c0, "rows": rows}))


if __name__ == "__main__":
    main()
